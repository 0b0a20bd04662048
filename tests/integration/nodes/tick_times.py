"""Takes ``START_S`` seconds (default 0) before it creates ``Node()``, then saves
``<NAME>.json``: the wall-clock time (ns) it connected and the wall-clock time of each of its
first ``MAX_TICKS`` (default 5) timer ticks."""

import os
import time

from _util import env_float, env_int, save

time.sleep(env_float("START_S", 0.0))

from dora import Node  # noqa: E402

node = Node()
connected_ns = time.time_ns()
ticks: list[int] = []
for event in node:
    if event["type"] == "INPUT":
        ticks.append(time.time_ns())
        if len(ticks) >= env_int("MAX_TICKS", 5):
            break
    elif event["type"] == "STOP":
        break
save(os.environ.get("NAME", "tick_times"), {"connected_ns": connected_ns, "ticks": ticks})
