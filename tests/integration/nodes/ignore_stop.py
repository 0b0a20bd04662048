"""Never reads its events, so it never sees STOP: the daemon must kill it after the grace period."""

import time

from _util import signal_file

from dora import Node

node = Node()
signal_file("ignore_stop.ready")
time.sleep(120)
