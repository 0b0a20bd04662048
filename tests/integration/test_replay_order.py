"""Lockstep replays of a sensor with two outputs read by different live nodes: the order each
live node gets its inputs in, and what a replay stopped early compares."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli import REPO
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
        time.sleep(0.01)  # smoothing takes a while; the sink has its status by then
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
      tick: dora/timer/millis/50
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


STUCK_FILTER = FILTER.replace(
    "time.sleep(0.01)", "time.sleep(60 if event['metadata']['i'] == 10 else 0.01)"
)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, guarded) -> Path:
    proj = tmp_path_factory.mktemp("order") / "proj"
    with guarded():
        return record_project(proj, {"sensor": SENSOR, "filter": FILTER, "sink": SINK}, DATAFLOW)


def test_lockstep_delivers_a_nodes_outputs_in_the_order_their_receivers_took_them(
    recording: Path, tmp_path: Path
) -> None:
    """Recorded, the sink takes status i (sent right after scan i) before smoothed i, which the
    filter sends 10 ms later. A replay that sent status i only once scan i's effects were over
    gave the sink smoothed i with the status of frame i - 1: every summary differed."""
    for _ in range(2):
        result = dora_replay.replay(recording, speed=0, log_dir=tmp_path / "logs", timeout_s=60)
        recorded = [m.data.to_pylist()[0] for m in result.recorded["sink/summary"]]
        assert len(recorded) > 12
        assert recorded[5].startswith("ok frame 5:")  # as recorded, live
        assert result.ok, result.report()
        got = [m.data.to_pylist()[0] for m in result.replayed["sink/summary"]]
        assert got[: len(recorded)] == recorded  # the last scan's summary may not be recorded


def test_outputs_still_on_their_way_when_a_replay_stops_are_skipped(
    recording: Path, tmp_path: Path
) -> None:
    """The filter hangs on scan 10; the replay stops while it does. smoothed 10 and summary 10
    were never produced because the stop came first, not because the nodes lost them: they
    used to be reported missing, failing the comparison of a replay that was only cut short."""
    stuck = tmp_path / "stuck_filter.py"
    stuck.write_text(STUCK_FILTER)
    result = dora_replay.replay(
        recording,
        speed=0,
        replace={"filter": str(stuck)},
        log_dir=tmp_path / "logs",
        timeout_s=8,
        grace_s=1,
    )
    assert result.timed_out
    for channel in ("filter/smoothed", "sink/summary"):
        cc = result.comparison.channels[channel]
        assert cc.count("missing") == 0, result.report()
        assert cc.matched == 10, result.report()
        assert cc.skipped == cc.recorded_count - 10, result.report()
        assert "not handled yet" in cc.skip_reason
    assert result.comparison.ok, result.report()


def test_ctrl_c_ends_a_replay_with_a_note_and_compares_what_was_sent(
    recording: Path, tmp_path: Path
) -> None:
    """Ctrl-C while the filter hangs on scan 10 of a lockstep replay: the report says the
    replay was cut and how far it got; the outputs of what was sent match, those of scan 10
    are skipped, nothing is reported missing. (The filter still fails the run: it ignored
    STOP.)"""
    stuck = tmp_path / "stuck_filter.py"
    stuck.write_text(STUCK_FILTER)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dora_cli.main", "replay", str(recording), "--speed", "0"]
        + ["--replace", f"filter={stuck}", "-q", "--assert", "--log-dir", str(tmp_path / "l")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(4)  # nodes up, ten scans handled, the filter stuck on the eleventh
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert re.search(r"note: the replay stopped after \d+ of \d+ recorded message", out), out
    assert "missing" not in out.replace("0 missing", ""), out
    assert "sink/summary: ok (10 message(s) match, " in out, out
    assert "FAILED: node `filter` killed: did not stop within" in out, out  # it hung
    assert proc.returncode == 1


def test_channels_left_out_by_the_flag_are_not_called_absent(
    recording: Path, tmp_path: Path
) -> None:
    result = dora_replay.replay(
        recording, speed=0, channels=["filter/smoothed"], log_dir=tmp_path / "logs", timeout_s=60
    )
    assert list(result.comparison.channels) == ["filter/smoothed"]
    assert "not compared (left out by --channels): sink/summary" in result.comparison.notes
    assert not any("not in the recording" in n for n in result.comparison.notes), result.report()


def test_comparing_only_a_downstream_channel_traces_causes_through_the_others(
    recording: Path, tmp_path: Path
) -> None:
    """A recording stopped after the sensor sent its last scan, before the filter answered:
    the replayed summary of that scan is unpaired whether or not filter/smoothed is compared
    too. With only sink/summary compared it used to count as "extra" (its cause could not be
    traced through the uncompared channel) and fail --assert."""
    cut = tmp_path / "cut.dora"
    with dora_replay.open(recording) as rec:
        last = rec.channels["sensor/scan"].message_count - 1
        writer = dora_replay.open_writer(cut, rec.header.dataflow_yaml, dict(rec.metadata))
        for m in rec.iter_messages():
            if m.channel in ("filter/smoothed", "sink/summary") and m.seq >= last:
                continue  # the outputs of the last scan were not recorded yet
            writer.write_message(m)
        writer.close()
    full = dora_replay.replay(cut, speed=0, log_dir=tmp_path / "l1", timeout_s=60)
    only = dora_replay.replay(
        cut, speed=0, channels=["sink/summary"], log_dir=tmp_path / "l2", timeout_s=60
    )
    assert full.comparison.channels["sink/summary"].unpaired == 1, full.report()
    a, b = full.comparison.channels["sink/summary"], only.comparison.channels["sink/summary"]
    assert (b.matched, b.unpaired, b.count("extra")) == (a.matched, a.unpaired, 0), only.report()
    assert only.ok, only.report()
