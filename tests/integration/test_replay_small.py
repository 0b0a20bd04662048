"""``dora replay`` on a small dataflow: speed scaling, start/end, channels, node selection, loop,
step-through, lockstep under a CPU hog."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli import run_dora

import dora_replay

REPO = Path(__file__).resolve().parents[2]

SENSOR = """
import pyarrow as pa
from dora import Node
node = Node()
i = 0
for event in node:
    if event["type"] == "STOP":
        break
    if event["type"] == "INPUT":
        node.send_output("value", pa.array([float(i), i * 0.5]), {"i": i})
        i += 1
"""

SLOW_DOUBLER = """
import os, time
import pyarrow as pa
from dora import Node
node = Node()
for event in node:
    if event["type"] == "INPUT":
        time.sleep(float(os.environ.get("WORK_S", "0")))
        v = event["value"].to_numpy() * 2
        node.send_output("doubled", pa.array(v), {"i": event["metadata"]["i"]})
"""

DATAFLOW = """
nodes:
  - id: sensor
    path: sensor.py
    inputs:
      tick: dora/timer/millis/20
    outputs: [value]
  - id: other
    path: sensor.py
    inputs:
      tick: dora/timer/millis/50
    outputs: [value]
  - id: doubler
    path: doubler.py
    inputs:
      value: {source: sensor/value, queue_size: 1}
      other: other/value
    outputs: [doubled]
"""

pytestmark = pytest.mark.timeout(120)


def _dora(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 60):
    return run_dora(*args, cwd=cwd, stdin=stdin, timeout=timeout)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, guarded) -> Path:
    """A 1.5 s recording: sensor at 50 Hz, other at 20 Hz, doubler live."""
    tmp = tmp_path_factory.mktemp("small")
    (tmp / "sensor.py").write_text(SENSOR)
    (tmp / "doubler.py").write_text(SLOW_DOUBLER)
    (tmp / "dataflow.yml").write_text(DATAFLOW)
    with guarded():
        r = _dora(
            "record",
            "dataflow.yml",
            "-o",
            "small.dora",
            "--stop-after",
            "1.5",
            "--log-dir",
            "logs",
            cwd=tmp,
        )
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp / "small.dora"


def _scheduled_span_s(rec: Path) -> float:
    with dora_replay.open(rec) as r:
        pubs = [m.publish_time_ns for m in r.iter_messages(["sensor/value", "other/value"])]
    return (max(pubs) - min(pubs)) / 1e9


@pytest.mark.slow
@pytest.mark.parametrize("speed", [0.5, 1.0, 4.0])
def test_speed_scales_the_recorded_schedule(small: Path, tmp_path: Path, speed: float) -> None:
    t0 = time.monotonic()
    result = dora_replay.replay(small, speed=speed, log_dir=tmp_path / "logs")
    elapsed = time.monotonic() - t0
    span = _scheduled_span_s(small)
    assert result.ok, result.report()
    assert result.timing.count == result.messages_sent > 50
    # bench/replay_timing.py measures the 2 ms p99 target on a quiet machine; here other tests
    # share the cores (a loaded CI machine saw p50 1.1 ms), so only gross scheduling errors
    # fail: a schedule off by a timer tick or a wrong speed factor is far above these.
    assert result.timing.p50_ns < 5_000_000 and result.timing.p99_ns < 50_000_000, (
        result.timing.line()
    )
    assert span / speed < elapsed < span / speed + 6.0


def test_start_end_channels_and_node_selection(small: Path, tmp_path: Path) -> None:
    with dora_replay.open(small) as r:
        lo, hi = r.start_time_ns + int(0.5e9), r.start_time_ns + int(1.0e9)
        in_window = sum(1 for _ in r.iter_messages(["sensor/value"], lo, hi))
    result = dora_replay.replay(
        small, speed=0, start=0.5, end=1.0, channels=["sensor/value"], log_dir=tmp_path / "l"
    )
    assert result.messages_sent == in_window > 0
    assert result.ok, result.report()
    ch = result.comparison.channels["doubler/doubled"]
    assert 0 < ch.matched <= in_window and ch.skipped > 0
    # `other` live instead of replayed; `--replace a,b` without `=` means replay (dora-rs).
    live = dora_replay.replay(
        small, speed=0, live_nodes=["other"], end=0.6, timeout_s=20, log_dir=tmp_path / "l2"
    )
    assert live.replayed_nodes == ["sensor"] and "other" in live.live_nodes
    r = _dora(
        "replay",
        str(small),
        "--speed",
        "0",
        "--replace",
        "sensor,other",
        "--end",
        "0.5",
        "-q",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replayed nodes: sensor, other" in r.stdout


def test_loop_replays_until_stopped(small: Path, tmp_path: Path) -> None:
    result = dora_replay.replay(
        small, speed=4, loop=True, end=0.5, timeout_s=2.0, log_dir=tmp_path / "l"
    )
    with dora_replay.open(small) as r:
        end = r.start_time_ns + int(0.5e9)
        per_pass = sum(1 for _ in r.iter_messages(["sensor/value", "other/value"], None, end))
    assert result.messages_sent > per_pass
    assert not result.failures, result.failures
    assert result.timed_out


def test_step_shows_each_message_and_waits(small: Path, tmp_path: Path) -> None:
    r = _dora(
        "replay",
        str(small),
        "--step",
        "--end",
        "0.4",
        "--channels",
        "sensor/value",
        "-q",
        cwd=tmp_path,
        stdin="\n\nq\n",
    )
    assert "next: sensor/value seq 0 at t=" in r.stdout, r.stdout + r.stderr
    assert "next: sensor/value seq 2" in r.stdout and "seq 3" not in r.stdout
    assert "2 message(s) sent" in r.stdout


@pytest.mark.slow
def test_lockstep_is_independent_of_load(small: Path, tmp_path: Path) -> None:
    """A slow live node (queue_size 1) under a CPU hog still sees every message in lockstep."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.environ["WORK_S"] = "0.01"
        result = dora_replay.replay(small, speed=0, log_dir=tmp_path / "l")
    finally:
        os.environ.pop("WORK_S", None)
        hog.kill()
        hog.wait()
    assert result.ok, result.report()
    assert not result.drops
    sent = result.messages_sent
    got = len(result.replayed["doubler/doubled"])
    with dora_replay.open(small) as r:
        fed = r.channels["sensor/value"].message_count + r.channels["other/value"].message_count
    assert sent == fed and got == sent


def test_golden_seq_map_metadata_round_trip(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep.dora"
    dora_replay.replay(small, speed=0, start=0.3, out=out, log_dir=tmp_path / "l")
    cmp = dora_replay.compare_recordings(small, out)
    assert cmp.ok, cmp.report()
    assert list(cmp.channels) == ["doubler/doubled"]
