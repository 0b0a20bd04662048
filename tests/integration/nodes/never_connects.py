"""Starts but never creates ``Node()`` (a node stuck loading something): the daemon must say
which node it waits for, start without it, and end it when the dataflow stops."""

import time

from _util import signal_file

signal_file("never_connects.started")
time.sleep(120)
