"""Counts timer ticks per input over WINDOW_S seconds from the first tick, then exits."""

import time

from _util import env_float, save

from dora import Node

node = Node()
window = env_float("WINDOW_S", 1.0)
counts: dict[str, int] = {}
values = []
start = None
while True:
    event = node.next(timeout=2.0)
    if event is None or event["type"] != "INPUT":
        break
    now = time.monotonic()
    if start is None:
        start = now
    if now - start > window:
        break
    counts[event["id"]] = counts.get(event["id"], 0) + 1
    values.append([len(event["value"]), str(event["value"].type), "timestamp" in event["metadata"]])
save("count_ticks", {"counts": counts, "values": values[:3]})
