"""Prints ``tick N`` and sends N on ``out`` at every timer tick; saves ``<NAME>.json`` with the
count so far (tests watch it grow). Exits on STOP or after MAX_TICKS ticks (default: never)."""

import os

from _util import env_int, save

from dora import Node

node = Node()
name = os.environ.get("NAME", "talker")
limit = env_int("MAX_TICKS", 0)
n = 0
for event in node:
    if event["type"] == "INPUT":
        n += 1
        print(f"tick {n}", flush=True)
        node.send_output("out", [n])
        save(name, {"count": n, "pid": os.getpid()})
        if limit and n >= limit:
            break
    elif event["type"] == "STOP":
        print("got STOP", flush=True)
        break
