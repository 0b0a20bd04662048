"""A live node driven by a timer (a fixed-rate controller sending on each tick the newest
sensor value it received): a replay sends it the recorded ticks, among the recorded messages.

Before, its timer ran on the replay's own clock: a lockstep replay of a 3 s recording gave it
about as many ticks as the replay took tenths of a second (28 of 30 outputs missing), a replay
at half speed twice too few, and a golden update rewrote the channel to those few outputs."""

from __future__ import annotations

import json
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
        node.send_output("scan", pa.array([float(n)]))
"""

CONTROLLER = """
import pyarrow as pa
from dora import Node
node = Node()
latest, ticks = 0.0, 0
for event in node:
    if event["type"] != "INPUT":
        continue
    if event["id"] == "scan":
        latest = event["value"][0].as_py()
    else:
        ticks += 1
        node.send_output("cmd", pa.array([latest * 1000 + ticks]))
"""

DATAFLOW = """
nodes:
  - id: sensor
    path: sensor.py
    inputs: {tick: dora/timer/millis/30}
    outputs: [scan]
  - id: controller
    path: controller.py
    inputs:
      scan: sensor/scan
      tick: dora/timer/hz/10
    outputs: [cmd]
"""


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("timers")
    (d / "sensor.py").write_text(SENSOR)
    (d / "controller.py").write_text(CONTROLLER)
    (d / "dataflow.yml").write_text(DATAFLOW)
    res = run_dora("run", "dataflow.yml", "--record", "run.dora", "--stop-after", "2.5s", cwd=d)
    assert res.returncode == 0, res.stdout + res.stderr
    with dora_replay.open(d / "run.dora") as rec:
        assert 20 <= rec.channels["controller/cmd"].message_count <= 30
    return d / "run.dora"


def _report(path: Path, *args: str) -> dict:
    report = path.with_name(f"report{len(args)}.json")
    res = run_dora("replay", str(path), *args, "--report", str(report), cwd=path.parent)
    assert report.exists(), res.stdout + res.stderr
    return json.loads(report.read_text())["comparison"]["channels"]["controller/cmd"]


@pytest.mark.slow
def test_lockstep_replays_a_timer_driven_node_exactly_every_time(recording: Path) -> None:
    for _ in range(3):
        res = run_dora("replay", str(recording), "--speed", "0", "--assert", cwd=recording.parent)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "controller/cmd: ok (" in res.stdout


@pytest.mark.slow
def test_a_timed_replay_sends_the_recorded_ticks_at_the_scaled_times(recording: Path) -> None:
    for speed in ("0.5", "2"):
        cmd = _report(recording, "--speed", speed)
        # The same ticks, with the recorded seqs (a tick and a scan due together may still
        # race, as when recorded: values may differ, never the count).
        assert cmd["replayed_count"] == cmd["recorded_count"], cmd
        kinds = {d["kind"] for d in cmd["differences"]}
        assert kinds <= {"value"}, (speed, kinds)
        assert cmd["matched"] >= cmd["recorded_count"] // 2, cmd
