"""A node fusing "the newest IMU sample" with detections that come from another live node
(camera -> detector -> fuser, IMU -> fuser): the recording keeps which IMU sample the fuser had
taken when it sent each output, and a lockstep replay sends the IMU samples and the camera
frames in the order that makes it take the same ones. Without it, 5 of 99 outputs differed in
every replay (samples arriving while the detector worked on a frame)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import run_dora

import dora_replay

SENSOR = """
import pyarrow as pa
from dora import Node
node = Node()
n = 0
for event in node:
    if event["type"] == "INPUT":
        n += 1
        node.send_output("{output}", pa.array([float(n)]))
"""

DETECTOR = """
import time
import pyarrow as pa
from dora import Node
node = Node()
for event in node:
    if event["type"] == "INPUT":
        time.sleep(0.004)  # a detector's work: IMU samples arrive at the fuser meanwhile
        node.send_output("det", pa.array([event["value"][0].as_py() * 10]))
"""

FUSER = """
import pyarrow as pa
from dora import Node
node = Node()
latest = 0.0
for event in node:
    if event["type"] != "INPUT":
        continue
    if event["id"] == "imu":
        latest = event["value"][0].as_py()
    else:
        node.send_output("out", pa.array([event["value"][0].as_py() * 1000 + latest]))
"""

DATAFLOW = """
nodes:
  - id: cam
    path: cam.py
    inputs: {tick: dora/timer/millis/30}
    outputs: [frame]
  - id: imu
    path: imu.py
    inputs: {tick: dora/timer/millis/2}
    outputs: [imu]
  - id: det
    path: det.py
    inputs: {frame: cam/frame}
    outputs: [det]
  - id: fuse
    path: fuse.py
    inputs:
      det: det/det
      imu: {source: imu/imu, queue_size: 1000}
    outputs: [out]
"""


@pytest.mark.slow
def test_a_fusing_node_behind_a_live_node_replays_exactly(tmp_path: Path) -> None:
    (tmp_path / "cam.py").write_text(SENSOR.replace("{output}", "frame"))
    (tmp_path / "imu.py").write_text(SENSOR.replace("{output}", "imu"))
    (tmp_path / "det.py").write_text(DETECTOR)
    (tmp_path / "fuse.py").write_text(FUSER)
    (tmp_path / "dataflow.yml").write_text(DATAFLOW)
    res = run_dora(
        "run", "dataflow.yml", "--record", "run.dora", "--stop-after", "2s", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    with dora_replay.open(tmp_path / "run.dora") as rec:
        outs = list(rec.iter_messages(channels="fuse/out"))
    assert len(outs) >= 40
    for m in outs:  # the IMU sample it had taken is the one its value holds
        assert m.data.to_pylist()[0] % 1000 == m.taken.get("imu/imu", -1) + 1, (m, m.taken)
    for _ in range(2):
        res = run_dora("replay", "run.dora", "--speed", "0", "--assert", "-q", cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
