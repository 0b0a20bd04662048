"""``dora replay`` on a recording of examples/robot: lockstep, golden flow, substitution, crashes."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from _cli import run_dora

import dora_replay
from dora_replay import ReplayError
from dora_replay._reader import PartFile

REPO = Path(__file__).resolve().parents[2]
ROBOT = REPO / "examples" / "robot"
LOOSE = {"default": {"atol": 1e-3}}  # margin for tests about other behaviour than exactness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _dora(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 120):
    return run_dora(*args, cwd=cwd, stdin=stdin, timeout=timeout)


@pytest.fixture(scope="module")
def robot(tmp_path_factory: pytest.TempPathFactory, guarded) -> Path:
    """A 2 s recording of the robot example."""
    tmp = tmp_path_factory.mktemp("robot")
    with guarded():
        r = _dora(
            "record",
            str(ROBOT / "dataflow.yml"),
            "-o",
            str(tmp / "robot.dora"),
            "--stop-after",
            "2",
            "--log-dir",
            str(tmp / "rec-logs"),
            cwd=ROBOT,
        )
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp / "robot.dora"


def _detector_variant(tmp: Path, name: str, patch: str) -> Path:
    """A copy of the robot detector with ``patch`` applied to each box before sending."""
    src = (ROBOT / "detector.py").read_text()
    src = src.replace(
        "        boxes = pa.array(detect(image), type=SCHEMA)",
        f"        found = detect(image)\n        for b in found:\n            {patch}\n"
        "        boxes = pa.array(found, type=SCHEMA)",
    )
    path = tmp / name
    path.write_text(src)
    return path


def test_lockstep_replay_matches_and_golden_update_is_exact(robot: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden.dora"
    shutil.copy(robot, golden)
    # A fresh recording replays exactly: every live output depends only on its inputs.
    first = dora_replay.replay(golden, speed=0, log_dir=tmp_path / "l1")
    assert first.ok, first.report()
    assert all(c.max_abs == 0 for c in first.comparison.channels.values())
    assert first.replayed_nodes == ["camera", "imu"]
    assert first.live_nodes == ["detector", "planner", "controller"]
    bboxes = first.comparison.channels["detector/bboxes"]
    assert bboxes.max_abs == 0 and bboxes.matched == len(first.recorded["detector/bboxes"])
    summary = dora_replay.update_golden(golden, first)
    assert "detector/bboxes" in summary.rewritten and summary.copied["camera/image"] > 0
    # Replays of a golden written by a lockstep replay are exactly identical, every time.
    runs = [
        dora_replay.replay(golden, speed=0, log_dir=tmp_path / f"l{i}", out=tmp_path / f"r{i}.dora")
        for i in (2, 3)
    ]
    for r in runs:
        r.assert_matches()
        assert all(c.max_abs == 0 for c in r.comparison.channels.values())
    assert dora_replay.compare_recordings(golden, tmp_path / "r2.dora").ok
    assert dora_replay.compare_recordings(tmp_path / "r2.dora", tmp_path / "r3.dora").ok


def test_changed_detector_is_caught_with_a_precise_report(robot: Path, tmp_path: Path) -> None:
    new = _detector_variant(
        tmp_path, "det_shift.py", 'b["x_min"] += 4 if b["label"] == "red" else 0'
    )
    result = dora_replay.replay(
        robot,
        speed=0,
        replace={"detector": str(new)},
        log_dir=tmp_path / "logs",
        tolerances=LOOSE,
    )
    assert not result.failures
    bboxes = result.comparison.channels["detector/bboxes"]
    assert not bboxes.ok
    d = bboxes.differences[0]
    assert d.kind == "value" and d.cause and d.cause.startswith("camera/image#")
    assert any("x_min" in c for c in d.changes) and d.max_abs == 4
    with pytest.raises(AssertionError) as info:
        result.assert_matches()
    text = str(info.value)
    assert "detector/bboxes message #0" in text
    assert "reproduce with:" in text and f"--replace detector={new}" in text
    assert f"live nodes: detector (replaced by {new}), planner, controller;" in text
    assert result.to_dict()["replaced"] == {"detector": str(new)}
    assert text.rstrip().endswith(" --assert")  # the CLI then fails as this did


def test_change_within_tolerance_passes(robot: Path, tmp_path: Path) -> None:
    new = _detector_variant(tmp_path, "det_score.py", 'b["score"] = b["score"] * 0.99995')
    tol = {"default": {"atol": 1e-3}, "detector/bboxes": {"atol": 1e-3}}
    ok = dora_replay.replay(
        robot, speed=0, replace={"detector": str(new)}, log_dir=tmp_path / "l1", tolerances=tol
    )
    assert ok.ok, ok.report()
    assert 0 < ok.comparison.channels["detector/bboxes"].max_abs <= 1e-3
    strict = dora_replay.replay(
        robot,
        speed=0,
        replace={"detector": str(new)},
        log_dir=tmp_path / "l2",
        tolerances=LOOSE | {"detector/bboxes": {}},
    )
    assert not strict.comparison.channels["detector/bboxes"].ok


def test_crashing_live_node_is_reported_with_its_log(robot: Path, tmp_path: Path) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text(
        textwrap.dedent("""
        from dora import Node
        node = Node()
        for event in node:
            if event["type"] == "INPUT":
                print("about to fail on the first image", flush=True)
                raise RuntimeError("detector exploded")
    """)
    )
    r = _dora(
        "replay",
        str(robot),
        "--speed",
        "0",
        "--replace",
        f"detector={crash}",
        "-q",
        "--log-dir",
        str(tmp_path / "logs"),
        "--report",
        str(tmp_path / "r.json"),
        cwd=tmp_path,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED: node `detector` exit 1" in r.stdout
    assert "detector exploded" in r.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["ok"] and "detector" in report["failures"]


def test_cli_assert_out_report_and_bad_input(robot: Path, tmp_path: Path) -> None:
    out, rep = tmp_path / "replayed.dora", tmp_path / "report.json"
    r = _dora(
        "replay",
        str(robot),
        "--speed",
        "0",
        "--assert",
        "-q",
        "--tolerance",
        "*:atol=1e-3",
        "--out",
        str(out),
        "--report",
        str(rep),
        "--log-dir",
        str(tmp_path / "l"),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all 3 channel(s) match" in r.stdout
    assert json.loads(rep.read_text())["ok"] is True
    with dora_replay.open(out) as rec:
        assert {"camera/image", "imu/imu", "detector/bboxes"} <= set(rec.channels)
    bad = _dora("replay", str(robot), "--replace", "nosuch=x.py", cwd=tmp_path)
    assert bad.returncode == 1 and "unknown node(s) nosuch" in bad.stderr
    assert "detector" in bad.stderr and "Traceback" not in bad.stderr
    data_file = tmp_path / "frames.bin"
    data_file.write_bytes(b"\0" * 16)
    unrunnable = _dora("replay", str(robot), "--replace", f"detector={data_file}", cwd=tmp_path)
    assert unrunnable.returncode == 1
    assert (
        f"is neither a .py file nor executable; name the node's .py file, or run `chmod +x {data_file}`"
        in unrunnable.stderr
    )
    missing = _dora("replay", str(tmp_path / "nope.dora"), cwd=tmp_path)
    assert missing.returncode == 1 and "nope.dora" in missing.stderr
    with pytest.raises(ReplayError, match="speed 500"):
        dora_replay.replay(robot, speed=500)


def test_truncated_recording_replays_what_is_readable(robot: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.dora"
    data = robot.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    result = dora_replay.replay(cut, speed=0, log_dir=tmp_path / "l", tolerances=LOOSE)
    assert any("ends inside a chunk" in w for w in result.warnings), result.warnings
    assert "warning: file ends inside a chunk" in result.report()
    assert result.messages_sent > 0 and not result.failures


def test_golden_update_keeps_the_recorded_times(robot: Path, tmp_path: Path) -> None:
    """Rewritten outputs paired with recorded ones keep their recorded log/publish times, also
    when only one channel is rewritten (its causes then point at a copied channel)."""
    golden = tmp_path / "golden.dora"
    shutil.copy(robot, golden)
    with dora_replay.open(golden) as rec:
        before = {c: (i.rate_hz, i.first_log_time_ns) for c, i in rec.channels.items()}
        target_times = [m.log_time_ns for m in rec.iter_messages(["planner/target"])]
    result = dora_replay.replay(golden, speed=0, log_dir=tmp_path / "l1", tolerances=LOOSE)
    assert result.ok, result.report()
    dora_replay.update_golden(golden, result, channels=["planner/target"])
    with dora_replay.open(golden) as rec:
        rate = rec.channels["planner/target"].rate_hz
        assert abs(rate - before["planner/target"][0]) < 0.2 * before["planner/target"][0]
        times = [m.log_time_ns for m in rec.iter_messages(["planner/target"])]
        assert set(target_times) <= set(times)
        # an output of a frame the recording stopped before handling is added, after its cause
        assert (
            len(times) == len(target_times) + result.comparison.channels["planner/target"].unpaired
        )
    dora_replay.update_golden(golden, result)
    with dora_replay.open(golden) as rec:
        for channel in ("detector/bboxes", "planner/target", "controller/cmd_vel"):
            rate, old = rec.channels[channel].rate_hz, before[channel][0]
            assert abs(rate - old) < 0.2 * old, (channel, rate, old)
    again = dora_replay.replay(golden, speed=0, log_dir=tmp_path / "l2")
    again.assert_matches()  # the lockstep order of the inputs is the one the update saw


def test_golden_update_places_new_outputs_just_after_their_cause(
    robot: Path, tmp_path: Path
) -> None:
    """A golden whose recording stopped before the last frames were handled: the update adds
    their outputs, each just after its cause. They used to be placed after the last message
    written so far, which for outputs of one frame arriving together put a frame's boxes ~2 s
    late, halving the channel's rate in the updated golden."""
    golden = tmp_path / "golden.dora"
    live = ("detector/bboxes", "planner/target", "controller/cmd_vel")
    with dora_replay.open(robot) as rec:
        last = rec.channels["camera/image"].message_count - 1
        cut = {f"camera/image#{last - 2}", f"camera/image#{last - 1}", f"camera/image#{last}"}
        frames = {m.seq for m in rec.iter_messages(["detector/bboxes"]) if m.cause in cut}
        rates = {c: rec.channels[c].rate_hz for c in live}
        writer = dora_replay.open_writer(golden, rec.header.dataflow_yaml, dict(rec.metadata))
        for m in rec.iter_messages():  # the last three frames' outputs were never recorded
            if m.channel in live and m.metadata.get("frame", -1) >= last - 2:
                continue
            writer.write_message(m)
        writer.close()
        image_time = {m.seq: m.publish_time_ns for m in rec.iter_messages(["camera/image"])}
    result = dora_replay.replay(golden, speed=0, log_dir=tmp_path / "l1")
    assert result.ok and result.comparison.channels["planner/target"].unpaired >= 3
    dora_replay.update_golden(golden, result)
    with dora_replay.open(golden) as rec:
        for c in live:
            assert abs(rec.channels[c].rate_hz - rates[c]) < 0.1 * rates[c], (c, rates[c])
        boxes = {m.metadata["frame"]: m for m in rec.iter_messages(["detector/bboxes"])}
        targets = {m.metadata["frame"]: m for m in rec.iter_messages(["planner/target"])}
    for frame in range(last - 2, last + 1):
        assert image_time[frame] < boxes[frame].publish_time_ns < image_time[frame] + 1000
        assert boxes[frame].publish_time_ns < targets[frame].publish_time_ns
        assert targets[frame].publish_time_ns < boxes[frame].publish_time_ns + 1000
    assert frames  # the recording did handle those frames: the cut is this test's


def test_a_lockstep_replay_held_by_a_node_names_it(robot: Path, tmp_path: Path) -> None:
    """A live node that never asks for input holds a lockstep replay: the replay says which
    node it waits for (in the status, once after 10 s, and in the timeout failure), and the
    nodes upstream of it are not blamed for the frames that were never sent."""
    stuck = tmp_path / "stuck.py"  # takes a few inputs, then hangs inside its loop
    stuck.write_text(
        "import time\nfrom dora import Node\nnode = Node()\n"
        "for i, event in enumerate(node):\n    if i == 40:\n        time.sleep(13)\n"
    )
    r = _dora(
        "replay", str(robot), "--speed", "0", "--replace", f"planner={stuck}", "-q",
        "--stop-after", "11s", "--log-dir", str(tmp_path / "logs"), cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "planner busy (the replay waits for it)" in r.stdout, r.stdout
    assert (
        "s for node `planner`: a lockstep replay goes on only once every live node" in r.stdout
    ), r.stdout
    assert "FAILED: the replay did not finish within 11 s (it was waiting for node " in r.stdout
    bboxes = next(line for line in r.stdout.splitlines() if "detector/bboxes:" in line)
    assert re.search(r"detector/bboxes: ok \([1-9]\d* message\(s\) match, ", bboxes), r.stdout
    assert (
        "skipped: their inputs were not replayed, or not handled yet (the replay stopped before "
        "they were sent or handled)"
    ) in bboxes


def test_inputs_lost_to_damage_are_named_beside_the_differences_they_cause(
    tmp_path: Path,
) -> None:
    """An IMU chunk of the golden fails its CRC: the planner, whose state follows the IMU,
    differs; the report says the damage took that input, not that the code changed."""
    damaged = tmp_path / "damaged.dora"
    shutil.copy(REPO / "golden" / "run1.dora", damaged)
    part = PartFile(damaged)
    try:
        imu = next(c.id for c in part.channels.values() if c.name == "imu/imu")
        chunk = [c for c in part.chunks if c.meta.channel_id == imu][3]
    finally:
        part.close()
    raw = bytearray(damaged.read_bytes())
    raw[chunk.offset + chunk.size // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    result = dora_replay.replay(
        damaged, speed=0, dataflow=ROBOT / "dataflow.yml", log_dir=tmp_path / "logs"
    )
    assert not result.ok and not result.comparison.ok
    assert any(
        n.startswith("the damage took recorded input(s) of the live nodes (imu/imu): ")
        for n in result.comparison.notes
    ), result.comparison.notes
