"""Sensor: on every timer tick sends ``[i, i / 2]`` (float64), metadata ``i``; a function of
the tick count only, so recordings of it are deterministic."""

import pyarrow as pa

from dora import Node

node = Node()
i = 0
for event in node:
    if event["type"] == "STOP":
        break
    if event["type"] == "INPUT":
        node.send_output("value", pa.array([float(i), i / 2]), {"i": i})
        i += 1
