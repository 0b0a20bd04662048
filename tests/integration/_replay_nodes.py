"""Node scripts shared by the replay tests: a timer-driven sensor and a node that scales what
it receives (``FACTOR``; tests that need a changed node rewrite that line)."""

SENSOR = """
import pyarrow as pa
from dora import Node

node = Node()
i = 0
for event in node:
    if event["type"] == "INPUT":
        node.send_output("value", pa.array([float(i), i / 2]), {"i": i})
        i += 1
"""

SCALE = """
import pyarrow as pa
from dora import Node

FACTOR = 3.0
node = Node()
for event in node:
    if event["type"] == "INPUT":
        v = [x * FACTOR for x in event["value"].to_pylist()]
        node.send_output("scaled", pa.array(v), {"i": event["metadata"]["i"]})
"""
