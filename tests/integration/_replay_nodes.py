"""Node scripts shared by the replay tests: a timer-driven sensor, a counting one, and a node
that scales what it receives (``FACTOR``; tests that need a changed node rewrite that line), and the dataflow
that joins them (tests that need more nodes append to it)."""

from pathlib import Path

from _cli import run_dora

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

COUNTER = """
import pyarrow as pa
from dora import Node
node = Node()
n = 0
for event in node:
    if event["type"] == "INPUT":
        n += 1
        node.send_output("{output}", pa.array([float(n)]))
"""


def counter(output: str) -> str:
    """A sensor sending 1.0, 2.0, 3.0... on ``output``, one per input (a timer tick): the value
    of a message is its seq + 1."""
    return COUNTER.replace("{output}", output)


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

SENSOR_SCALE = """
nodes:
  - id: sensor
    path: nodes/sensor.py
    inputs:
      tick: dora/timer/millis/20
    outputs: [value]
  - id: scale
    path: nodes/scale.py
    inputs:
      value: sensor/value
    outputs: [scaled]
"""


def record_project(proj: Path, nodes: dict[str, str], dataflow: str) -> Path:
    """A project folder as a team keeps it: ``flow/dataflow.yml`` with ``flow/nodes/<name>.py``
    for each of ``nodes`` (name -> script), and ``golden/run.dora``, a 1 s ``dora record`` of
    it run from ``proj``. Returns the recording. Call it inside the ``guarded()`` fixture."""
    (proj / "flow" / "nodes").mkdir(parents=True)
    (proj / "golden").mkdir()
    for name, text in nodes.items():
        (proj / "flow" / "nodes" / f"{name}.py").write_text(text)
    (proj / "flow" / "dataflow.yml").write_text(dataflow)
    r = run_dora(
        "record",
        "flow/dataflow.yml",
        "-o",
        "golden/run.dora",
        "--stop-after",
        "1",
        "--log-dir",
        str(proj.parent / "rec-logs"),
        cwd=proj,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return proj / "golden" / "run.dora"
