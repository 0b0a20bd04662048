"""Running sum of ``scale/scaled``: outputs ``sum`` as a one-row struct {total, count}."""

import pyarrow as pa

from dora import Node

node = Node()
total, count = 0.0, 0
for event in node:
    if event["type"] == "STOP":
        break
    if event["type"] == "INPUT":
        total += sum(event["value"].to_pylist())
        count += 1
        node.send_output("sum", pa.array([{"total": total, "count": count}]))
