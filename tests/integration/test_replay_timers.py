"""A live node driven by a timer (a fixed-rate controller sending on each tick the newest
sensor value it received): a replay sends it the recorded ticks, among the recorded messages,
and in lockstep in the order it took them (the recording keeps, with each output, the last
message its node had taken on each input: a scan sent a few microseconds before a tick may have
been taken after it).

Before, its timer ran on the replay's own clock: a lockstep replay of a 3 s recording gave it
about as many ticks as the replay took tenths of a second (28 of 30 outputs missing), a replay
at half speed twice too few, and a golden update rewrote the channel to those few outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli import run_dora
from _replay_nodes import counter

import dora_replay

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
    (d / "sensor.py").write_text(counter("scan"))
    (d / "controller.py").write_text(CONTROLLER)
    (d / "dataflow.yml").write_text(DATAFLOW)
    res = run_dora("run", "dataflow.yml", "--record", "run.dora", "--stop-after", "2.5s", cwd=d)
    assert res.returncode == 0, res.stdout + res.stderr
    with dora_replay.open(d / "run.dora") as rec:
        assert 20 <= rec.channels["controller/cmd"].message_count <= 30
        cmds = list(rec.iter_messages(channels="controller/cmd"))
    # What the controller had taken on each input when it sent each command: the tick it
    # handled, and the last scan (which a replay must hand it before that tick, no later).
    for m in cmds:
        assert m.taken is not None and set(m.taken) == {"dora/timer/hz/10", "sensor/scan"}
        assert m.cause == f"dora/timer/hz/10#{m.taken['dora/timer/hz/10']}"
        assert m.data.to_pylist() == [(m.taken["sensor/scan"] + 1) * 1000 + m.seq + 1]
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
        # the capture in a temporary file is not announced (only one asked for with --out)
        assert "dora-replay-" not in res.stdout + res.stderr, res.stdout


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


@pytest.mark.slow
def test_a_golden_update_keeps_what_the_controller_had_taken(
    recording: Path, tmp_path: Path
) -> None:
    """A replay's feeders number their messages from 0 (here from 1 s into the recording); the
    update maps the seqs in `taken` back to the recorded ones, as it does for causes, so the
    updated golden replays exactly."""
    golden = tmp_path / "golden.dora"
    golden.write_bytes(recording.read_bytes())
    with dora_replay.open(golden) as rec:
        started = rec.start_time_ns
    result = dora_replay.replay(golden, speed=0, start=1.0, log_dir=tmp_path / "logs")
    dora_replay.update_golden(golden, result)  # the controller counts ticks from 1 again
    with dora_replay.open(golden) as rec:
        # the recording's start, not the update's: --start and the ticks count from it (the
        # next update's replay sent ticks over the minutes since)
        assert rec.start_time_ns == started
        late = [m for m in rec.iter_messages(channels="controller/cmd") if m.seq >= 10]
    assert late and all(m.taken is not None for m in late)
    for m in late:  # the scan it had taken, by its recorded seq: value seq + 1
        assert m.data.to_pylist()[0] // 1000 == m.taken["sensor/scan"] + 1, (m, m.taken)
    res = run_dora("replay", str(golden), "--speed", "0", "--start", "1", "--assert", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


CRASHES_ON_TICK_5 = """
from dora import Node
node = Node()
ticks = 0
for event in node:
    if event["type"] == "INPUT" and event["id"] == "tick":
        ticks += 1
        if ticks == 5:
            raise SystemExit(3)
"""


@pytest.mark.slow
def test_a_lockstep_replay_ends_when_the_timer_driven_node_crashes(
    recording: Path, tmp_path: Path
) -> None:
    """Both nodes live (no feeder): once the controller was gone, the next tick of its timer
    went to nobody, so nothing ever woke the daemon again and the replay hung until its time
    limit."""
    crash = tmp_path / "crash.py"
    crash.write_text(CRASHES_ON_TICK_5)
    res = run_dora(
        "replay", str(recording), "--speed", "0", "--live-nodes", "sensor",
        "--replace", f"controller={crash}", "--stop-after", "40s",
        cwd=recording.parent, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED: node `controller` exit 3" in res.stdout, res.stdout
    assert "did not finish within" not in res.stdout, res.stdout


SLOW_SINK = """
import time
from dora import Node
node = Node()
for event in node:
    if event["type"] == "INPUT":
        time.sleep(0.15)  # a mapper: its last output comes after the dataflow was stopped
        node.send_output("map", event["value"])
"""


@pytest.mark.slow
def test_no_ticks_after_the_last_one_recorded(recording: Path, tmp_path: Path) -> None:
    """A slow node's last output, logged after the stop, made the replay run the controller's
    timer on to that time: ticks that never fired when recorded, their outputs "extra"."""
    d = recording.parent
    (tmp_path / "sink.py").write_text(SLOW_SINK)
    flow = tmp_path / "slow.yml"
    flow.write_text(
        DATAFLOW.replace("sensor.py", str(d / "sensor.py")).replace(
            "controller.py", str(d / "controller.py")
        )
        + "  - id: mapper\n    path: sink.py\n"
        "    inputs: {scan: {source: sensor/scan, queue_size: 1}}\n    outputs: [map]\n"
    )
    res = run_dora("run", str(flow), "--record", "slow.dora", "--stop-after", "2s", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    with dora_replay.open(tmp_path / "slow.dora") as rec:
        last_cmd = max(m.log_time_ns for m in rec.iter_messages(channels="controller/cmd"))
        last_map = max(m.log_time_ns for m in rec.iter_messages(channels="mapper/map"))
    assert last_map > last_cmd + 100_000_000, "the mapper's last output came well after"
    res = run_dora("replay", "slow.dora", "--speed", "0", "--assert", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
