"""The robot example's planner fuses camera boxes with IMU samples: a run and its lockstep
replay must agree exactly even when the IMU's timer starts well after the camera's (as when
the two run on different machines, where each daemon starts its own timers)."""

from __future__ import annotations

import shutil
from pathlib import Path

from _cli import REPO, run_dora

import dora_replay

LATE_IMU = """
import imu
from dora import Node

node = Node()
ticks = 0
for event in node:
    if event["type"] == "STOP":
        break
    if event["type"] != "INPUT":
        continue
    ticks += 1
    if ticks > 30:  # the first 150 ms are lost: sample 0 comes 150 ms after the camera's frame 0
        i = ticks - 31
        node.send_output("imu", imu.to_arrow(imu.sample(i)), {"sample": i, "rate_hz": imu.RATE_HZ})
"""


def test_a_run_with_a_late_imu_replays_exactly(tmp_path: Path) -> None:
    robot = tmp_path / "robot"
    shutil.copytree(REPO / "examples" / "robot", robot, ignore=shutil.ignore_patterns("out"))
    (robot / "late_imu.py").write_text(LATE_IMU)
    flow = robot / "dataflow.yml"
    flow.write_text(flow.read_text().replace("path: imu.py", "path: late_imu.py"))
    rec = tmp_path / "run.dora"
    r = run_dora(
        "record", str(flow), "-o", str(rec), "--stop-after", "4s", "--log-dir", str(tmp_path / "l")
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for i in range(2):
        result = dora_replay.replay(rec, speed=0, log_dir=tmp_path / f"r{i}", timeout_s=120)
        assert result.ok, result.report()
        assert result.comparison.channels["planner/target"].matched >= 100, result.report()
