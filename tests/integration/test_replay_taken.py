"""A node fusing "the newest IMU sample" with detections that come from another live node
(camera -> detector -> fuser, IMU -> fuser): the recording keeps which IMU sample the fuser had
taken when it sent each output, and a lockstep replay sends the IMU samples and the camera
frames in the order that makes it take the same ones. Without it, 5 of 99 outputs differed in
every replay (samples arriving while the detector worked on a frame)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _cli import run_dora
from _replay_nodes import counter

import dora_replay

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
    (tmp_path / "cam.py").write_text(counter("frame"))
    (tmp_path / "imu.py").write_text(counter("imu"))
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


INTEGRATOR = """
import math
import pyarrow as pa
from dora import Node
node = Node()
x = th = 0.0
n = 0
for event in node:
    if event["type"] != "INPUT":
        continue
    v = event["value"][0].as_py()
    if event["id"] == "imu":
        th += v * 0.005  # heading from the gyro
    else:
        x += (1.0 + v) * math.cos(th) * 0.02  # position from the wheel speed, at that heading
    n += 1
    if n % 10 == 0:  # one pose every 10 inputs
        node.send_output("pose", pa.array([x, th]))
"""

ODOMETRY = """
nodes:
  - id: imu
    path: imu.py
    inputs: {tick: dora/timer/hz/200}
    outputs: [imu]
  - id: wheel
    path: wheel.py
    inputs: {tick: dora/timer/hz/50}
    outputs: [speed]
  - id: odom
    path: odom.py
    inputs: {imu: imu/imu, wheel: wheel/speed}
    outputs: [pose]
"""


@pytest.mark.slow
def test_an_integrator_publishing_every_tenth_input_replays_exactly(tmp_path: Path) -> None:
    """The 200 Hz IMU and the 50 Hz wheel tick together every 20 ms, and which one the node took
    first decides the pose from there on; no output falls between them, so only the recorded
    order of everything it took (``took``) can say. Three recordings in four failed their own
    lockstep replay without it (16-67 of 75 poses differing)."""
    (tmp_path / "imu.py").write_text(counter("imu"))
    (tmp_path / "wheel.py").write_text(counter("speed"))
    (tmp_path / "odom.py").write_text(INTEGRATOR)
    (tmp_path / "dataflow.yml").write_text(ODOMETRY)
    res = run_dora(
        "run", "dataflow.yml", "--record", "run.dora", "--stop-after", "2s", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    with dora_replay.open(tmp_path / "run.dora") as rec:
        poses = list(rec.iter_messages(channels="odom/pose"))
    assert len(poses) >= 40 and all(len(m.took) == 10 for m in poses[1:]), poses[1].took
    for _ in range(2):
        res = run_dora("replay", "run.dora", "--speed", "0", "--assert", "-q", cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr


TRACKER = """
import time
import pyarrow as pa
from dora import Node
node = Node()
ema, n = None, 0
for event in node:
    if event["type"] != "INPUT":
        continue
    z = event["value"][0].as_py()
    ema = z if ema is None else 0.8 * ema + 0.2 * z  # state across frames
    n += 1
    time.sleep(0.045)  # slower than the 30 Hz camera: with queue_size 1, frames are dropped
    node.send_output("track", pa.array([ema, float(n)]))
"""

TRACKING = """
nodes:
  - id: cam
    path: cam.py
    inputs: {tick: dora/timer/hz/30}
    outputs: [image]
  - id: tracker
    path: tracker.py
    inputs:
      image: {source: cam/image, queue_size: 1}
    outputs: [track]
"""


@pytest.mark.slow
def test_a_node_that_dropped_frames_gets_the_frames_it_took(tmp_path: Path) -> None:
    """Lockstep used to deliver every recorded frame to a tracker that had dropped a third of
    them (queue_size 1, too slow): its state diverged, 42 of 44 outputs differed. What it
    took is recorded; its feeder now leaves out, for it, the frames it dropped."""
    (tmp_path / "cam.py").write_text(counter("image"))
    (tmp_path / "tracker.py").write_text(TRACKER)
    (tmp_path / "dataflow.yml").write_text(TRACKING)
    res = run_dora(
        "run", "dataflow.yml", "--record", "run.dora", "--stop-after", "2s", cwd=tmp_path
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "input `tracker/image` dropped" in res.stdout, res.stdout
    res = run_dora("replay", "run.dora", "--speed", "0", "--assert", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # Only frames after its last recorded output can still reach it (nothing says what it
    # took there): a few outputs without a recorded counterpart, not one per dropped frame.
    unpaired = re.search(r"(\d+) replayed output\(s\) for inputs the recording", res.stdout)
    assert unpaired is None or int(unpaired.group(1)) <= 3, res.stdout
