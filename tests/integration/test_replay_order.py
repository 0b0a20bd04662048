"""Lockstep replay order when one replayed node sends on several outputs that reach different
live nodes: each live node must get its inputs in the order it handled them when recorded."""

from pathlib import Path

from _replay_nodes import record_project

import dora_replay

SENSOR = """
import pyarrow as pa
from dora import Node

node = Node()
i = 0
for event in node:
    if event["type"] == "INPUT":
        node.send_output("scan", pa.array([float(i), i + 0.5, i + 1.0]), {"i": i})
        node.send_output("status", pa.array([f"ok frame {i}"]))
        i += 1
"""

FILTER = """
import time

import pyarrow as pa
from dora import Node

node = Node()
for event in node:
    if event["type"] == "INPUT":
        time.sleep(0.002)  # smoothing takes a while; the sink has its status by then
        v = event["value"].to_pylist()
        node.send_output("smoothed", pa.array([sum(v) / len(v)]), event["metadata"])
"""

SINK = """
import pyarrow as pa
from dora import Node

node = Node()
status = "none"
for event in node:
    if event["type"] != "INPUT":
        continue
    if event["id"] == "status":
        status = event["value"][0].as_py()
    else:
        node.send_output("summary", pa.array([f"{status}: {event['value'][0].as_py():.2f}"]))
"""

DATAFLOW = """
nodes:
  - id: sensor
    path: nodes/sensor.py
    inputs:
      tick: dora/timer/millis/20
    outputs: [scan, status]
  - id: filter
    path: nodes/filter.py
    inputs:
      scan: sensor/scan
    outputs: [smoothed]
  - id: sink
    path: nodes/sink.py
    inputs:
      smoothed: filter/smoothed
      status: sensor/status
    outputs: [summary]
"""


def test_lockstep_delivers_a_nodes_outputs_in_the_order_their_receivers_took_them(
    tmp_path: Path,
) -> None:
    """Recorded, the sink takes status i (sent right after scan i) before smoothed i, which the
    filter sends 2 ms later. A replay that sent status i only once scan i's effects were over
    gave the sink smoothed i with the status of frame i - 1: every summary differed."""
    proj = tmp_path / "proj"
    rec = record_project(proj, {"sensor": SENSOR, "filter": FILTER, "sink": SINK}, DATAFLOW)
    for _ in range(2):
        result = dora_replay.replay(rec, speed=0, log_dir=tmp_path / "logs", timeout_s=60)
        recorded = [m.data.to_pylist()[0] for m in result.recorded["sink/summary"]]
        assert len(recorded) > 20
        assert recorded[5].startswith("ok frame 5:")  # as recorded, live
        assert result.ok, result.report()
        assert [m.data.to_pylist()[0] for m in result.replayed["sink/summary"]] == recorded
