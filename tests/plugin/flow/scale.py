"""Scales every ``source/value`` by FACTOR (argument, default 3): outputs ``scaled``
(float64) with the input's metadata ``i``."""

import sys

import pyarrow as pa

from dora import Node

FACTOR = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0

node = Node()
for event in node:
    if event["type"] == "STOP":
        break
    if event["type"] == "INPUT":
        values = [v * FACTOR for v in event["value"].to_pylist()]
        node.send_output("scaled", pa.array(values), {"i": event["metadata"]["i"]})
