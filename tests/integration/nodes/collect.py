"""Receives until the stream ends and records every event.

Env: NAME (collect), FIRST_SLEEP_S (sleep after the first input, to let a queue fill),
SLEEP_S (sleep after every input). Touches ``<NAME>.ready`` after the first event.
Saves ``{"events": [[type, id, value[0], time, metadata], ...], "after_end": <next() after the
end>}``; metadata without its timestamp.
"""

import os
import time

from _util import env_float, save, signal_file

from dora import Node

node = Node()
name = os.environ.get("NAME", "collect")
first_sleep = env_float("FIRST_SLEEP_S", 0.0)
per_msg = env_float("SLEEP_S", 0.0)
events = []
inputs = 0
for event in node:
    value = None
    md = None
    if event["type"] == "INPUT":
        md = {k: v for k, v in event["metadata"].items() if k != "timestamp"}
        inputs += 1
        v = event["value"]
        value = v[0].as_py() if len(v) else None
        if inputs == 1 and first_sleep:
            time.sleep(first_sleep)
        if per_msg:
            time.sleep(per_msg)
    events.append([event["type"], event["id"], value, time.time(), md])
    if len(events) == 1:
        signal_file(f"{name}.ready")
after_end = node.next(timeout=0.2)
save(name, {"events": events, "after_end": after_end})
