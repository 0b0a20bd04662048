"""Forwards its inputs, then after CRASH_AFTER of them prints a line and exits with code 3."""

import sys
import time

from _util import env_int, save

from dora import Node

node = Node()
after = env_int("CRASH_AFTER", 3)
n = 0
for event in node:
    if event["type"] == "INPUT":
        node.send_output("out", event["value"])
        n += 1
        if n >= after:
            print("about to crash", flush=True)
            save("crash", {"time": time.time()})
            sys.exit(3)
