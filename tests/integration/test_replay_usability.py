"""What a new user ran into with ``dora replay``: a golden file replayed in a second clone, ``q``
while stepping, the flag named by an error, skipped messages of a truncated recording.

Checkout A holds ``flow/`` (two sensors feeding a live ``scale``) and ``golden/run.dora``
recorded there with ``dora record``; tests copy it into a second checkout B where needed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from _cli import REPO, one_error_line, run_dora
from _replay_nodes import SCALE, SENSOR, record_project

import dora_replay
from dora_replay._plan import load_dataflow
from dora_replay._reader import PartFile
from dora_replay.compare import ChannelComparison
from dora_replay.tolerances import Tolerance

DATAFLOW = """
nodes:
  - id: sensor
    path: nodes/sensor.py
    inputs:
      tick: dora/timer/millis/20
    outputs: [value]
  - id: imu
    path: nodes/sensor.py
    inputs:
      tick: dora/timer/millis/30
    outputs: [value]
  - id: scale
    path: nodes/scale.py
    inputs:
      value: sensor/value
      imu: imu/value
    outputs: [scaled]
"""

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def checkout_a(tmp_path_factory: pytest.TempPathFactory, guarded) -> Path:
    """Checkout A: ``flow/`` and a 1 s recording of it, ``golden/run.dora``."""
    a = tmp_path_factory.mktemp("checkout") / "a"
    with guarded():
        record_project(a, {"sensor": SENSOR, "scale": SCALE}, DATAFLOW)
    return a


def _pytest_gate(project: Path, golden: str) -> subprocess.CompletedProcess[str]:
    """``pytest --dora-replay GOLDEN`` run in ``project`` as a CI job runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist"]
        + ["--dora-replay", golden],
        cwd=project,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=100,
        start_new_session=True,
    )


def _second_clone(a: Path, b: Path, factor: float) -> Path:
    """Checkout B: a copy of A whose ``scale`` multiplies by ``factor``."""
    shutil.copytree(a / "flow", b / "flow", ignore=shutil.ignore_patterns("out"))
    (b / "golden").mkdir()
    shutil.copy(a / "golden" / "run.dora", b / "golden" / "run.dora")
    scale = b / "flow" / "nodes" / "scale.py"
    scale.write_text(scale.read_text().replace("FACTOR = 3.0", f"FACTOR = {factor!r}"))
    return b


def _count(recording: Path, channel: str) -> int:
    with dora_replay.open(recording) as rec:
        return rec.channels[channel].message_count


def test_golden_replayed_in_a_second_clone_runs_that_clones_nodes(
    checkout_a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded dataflow of A still exists, but from B the replay runs B's nodes (and
    writes B's logs): the dataflow nearest to where the user works wins, with a note."""
    b = _second_clone(checkout_a, tmp_path / "b", factor=4.0)
    recorded = checkout_a / "flow" / "dataflow.yml"
    r = run_dora("replay", "golden/run.dora", "--speed", "0", "--assert", "-q", cwd=b)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"note: recorded from {recorded}; using flow/dataflow.yml\n" in r.stdout
    assert "1 of 1 channel(s) differ" in r.stdout and "3.0 -> 4.0" in r.stdout, r.stdout
    assert (b / "flow" / "out").is_dir() and not (checkout_a / "flow" / "out").exists()

    # control: in A itself the recorded file is used, silently, and everything matches
    a = run_dora(
        "replay",
        "golden/run.dora",
        "--speed",
        "0",
        "--assert",
        "-q",
        "--log-dir",
        str(tmp_path / "la"),
        cwd=checkout_a,
    )
    assert a.returncode == 0, a.stdout + a.stderr
    assert "note:" not in a.stdout and "all 1 channel(s) match" in a.stdout

    # from a folder of neither checkout: the folders above the recording decide
    monkeypatch.chdir(tmp_path)
    assert dora_replay.find_dataflow(b / "golden" / "run.dora") == b / "flow" / "dataflow.yml"
    assert dora_replay.find_dataflow(checkout_a / "golden" / "run.dora") == recorded
    result = dora_replay.replay(b / "golden" / "run.dora", speed=0, log_dir=tmp_path / "lb")
    assert result.notes == [f"recorded from {recorded}; using b/flow/dataflow.yml"]
    assert not result.ok and result.comparison.channels["scale/scaled"].count("value") > 0


def test_pytest_plugin_in_a_second_clone_runs_that_clones_nodes(
    checkout_a: Path, tmp_path: Path
) -> None:
    b = _second_clone(checkout_a, tmp_path / "b", factor=4.0)
    proc = _pytest_gate(b, "golden/run.dora")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    note = f"recorded from {checkout_a / 'flow' / 'dataflow.yml'}; using flow/dataflow.yml"
    assert f"dora: note: golden/run.dora: {note}" in proc.stdout, out  # run summary
    assert f"note: {note}\n" in proc.stdout, out  # and in the failure of scale/scaled
    assert "1 failed" in proc.stdout, out


def test_q_at_a_step_stops_the_whole_replay(checkout_a: Path, tmp_path: Path) -> None:
    """Two feeders (sensor, imu): after `q` neither prompts nor sends again; only the outputs
    of what was sent are compared, and they match."""
    total = _count(checkout_a / "golden" / "run.dora", "scale/scaled")
    report = tmp_path / "r.json"
    r = run_dora(
        "replay",
        "golden/run.dora",
        "--step",
        "--assert",
        "-q",
        "--report",
        str(report),
        "--log-dir",
        str(tmp_path / "l"),
        cwd=checkout_a,
        stdin="\nx\n\nq\n",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("next: ") == 3, r.stdout  # Enter, (x, Enter), q: no prompt after q
    assert "'x'? Enter: send · c+Enter: continue · q+Enter: stop" in r.stdout  # asked again
    assert "next: sensor/value seq 0" in r.stdout and "next: imu/value seq 0" in r.stdout
    assert "stopped by user after 2 message(s): only their outputs are compared" in r.stdout
    assert (
        f"scale/scaled: ok (2 message(s) match, {total - 2} skipped: their inputs were not "
        "replayed, or not handled yet (stopped by user))" in r.stdout
    ), r.stdout
    assert "differ" not in r.stdout and "missing" not in r.stdout
    data = json.loads(report.read_text())
    assert data["stopped_by_user"] is True and data["messages_sent"] == 2 and data["ok"]


def test_a_golden_is_not_updated_from_a_replay_stopped_by_the_user(
    checkout_a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden = tmp_path / "run.dora"
    shutil.copy(checkout_a / "golden" / "run.dora", golden)
    before = golden.read_bytes()
    monkeypatch.setattr(sys, "stdin", io.StringIO("\nq\n"))  # what a user types at the prompt
    monkeypatch.chdir(checkout_a)
    result = dora_replay.replay(golden, step=True, log_dir=tmp_path / "l")
    assert result.stopped_by_user and result.messages_sent == 1
    with pytest.raises(dora_replay.RecordingError, match="stopped by the user"):
        dora_replay.update_golden(golden, result)
    assert golden.read_bytes() == before


def test_out_refuses_to_overwrite_the_recording_being_replayed(
    checkout_a: Path, tmp_path: Path
) -> None:
    golden = tmp_path / "run.dora"
    shutil.copy(checkout_a / "golden" / "run.dora", golden)
    before = golden.read_bytes()
    r = run_dora("replay", str(golden), "--speed", "0", "--out", str(golden), cwd=checkout_a)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: --out {golden} is the recording being replayed" in r.stderr
    assert golden.read_bytes() == before


def test_update_golden_refuses_a_damaged_golden(
    checkout_a: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden = tmp_path / "run.dora"
    shutil.copy(checkout_a / "golden" / "run.dora", golden)
    monkeypatch.chdir(checkout_a)
    result = dora_replay.replay(golden, speed=0, log_dir=tmp_path / "l")  # the intact file
    assert result.ok, result.report()
    part = PartFile(golden)
    victim = part.chunks[0]
    part.close()
    raw = bytearray(golden.read_bytes())
    raw[victim.offset + victim.size - 10] ^= 0xFF  # then a chunk of the golden goes bad
    golden.write_bytes(bytes(raw))
    with dora_replay.open(golden) as rec:
        assert rec.verify(), "the flipped byte must damage a chunk"
    before = golden.read_bytes()
    with pytest.raises(dora_replay.RecordingError, match="not updated: it is damaged"):
        dora_replay.update_golden(golden, result)
    assert golden.read_bytes() == before


def test_a_repaired_golden_is_noted_as_covering_less(checkout_a: Path, tmp_path: Path) -> None:
    """Repair makes a damaged golden readable, and it then passes: the replay says the file
    was repaired and checks only what survived, in the CLI and in the pytest summary."""
    golden = checkout_a / "golden" / "cut.dora"
    data = (checkout_a / "golden" / "run.dora").read_bytes()
    golden.write_bytes(data[: len(data) * 2 // 3])
    try:
        assert run_dora("record", "repair", str(golden)).returncode == 0
        r = run_dora("replay", "golden/cut.dora", "--speed", "0", "--assert", cwd=checkout_a)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "note: the recording was repaired (" in r.stdout, r.stdout
        assert "it replays and checks only what survived; record it again" in r.stdout
        proc = _pytest_gate(checkout_a, "golden/cut.dora")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "dora: note: golden/cut.dora: the recording was repaired (" in proc.stdout, (
            proc.stdout
        )
    finally:
        golden.unlink()


def test_node_errors_name_the_flag_that_was_used(checkout_a: Path, tmp_path: Path) -> None:
    golden = str(checkout_a / "golden" / "run.dora")
    known = "the dataflow has: sensor, imu, scale"
    r = run_dora("replay", golden, "--replace", "foo", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: --replace names unknown node(s) foo; {known}" in r.stderr, r.stderr
    assert "--replay-nodes" not in r.stderr
    r = run_dora("replay", golden, "--replay-nodes", "foo", cwd=tmp_path)
    assert f"error: --replay-nodes names unknown node(s) foo; {known}" in r.stderr, r.stderr
    r = run_dora("replay", golden, "--replay-nodes", "bar", "--replace", "foo", cwd=tmp_path)
    assert "error: --replace/--replay-nodes names unknown node(s) bar, foo" in r.stderr
    r = run_dora("replay", golden, "--replace", "foo=x.py", cwd=tmp_path)
    assert f"error: --replace names unknown node(s) foo; {known}" in r.stderr, r.stderr


def test_truncated_recording_report_mentions_skipped_messages(
    checkout_a: Path, tmp_path: Path
) -> None:
    """A recording whose outputs come before their inputs in the file (as can happen with
    chained nodes), cut with `head -c`: outputs whose inputs were lost are skipped, and the text
    report says how many and why, as the JSON report does."""
    whole = tmp_path / "outputs-first.dora"
    with dora_replay.open(checkout_a / "golden" / "run.dora") as rec:
        messages = list(rec.iter_messages())  # in log-time order
        # one message per chunk: the cut loses the last inputs of both sensors, nothing else
        with dora_replay.open_writer(
            whole, rec.dataflow_yaml, dict(rec.metadata), chunk_size_bytes=1
        ) as w:
            for m in sorted(messages, key=lambda m: m.channel != "scale/scaled"):
                w.write_message(m)
    cut = tmp_path / "cut.dora"
    with cut.open("wb") as f:
        size = whole.stat().st_size * 7 // 8
        subprocess.run(["head", "-c", str(size), str(whole)], stdout=f, check=True)
    report = tmp_path / "r.json"
    r = run_dora(
        "replay",
        str(cut),
        "--speed",
        "0",
        "-q",
        "--report",
        str(report),
        "--log-dir",
        str(tmp_path / "l"),
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    ch = json.loads(report.read_text())["comparison"]["channels"]["scale/scaled"]
    assert ch["skipped"] > 0 and ch["matched"] + ch["skipped"] == ch["recorded_count"], ch
    line = (
        f"scale/scaled: ok ({ch['matched']} message(s) match, {ch['skipped']} skipped: their "
        "inputs were not replayed (lost from the damaged recording))"
    )
    assert line in r.stdout, r.stdout
    assert "warning: file ends inside a chunk" in r.stdout


# -- without processes: the lookup order and the report wording ----------------------------

SMALL_YAML = (
    "nodes:\n  - {id: cam, path: cam.py, inputs: {tick: dora/timer/millis/10}, outputs: [x]}\n"
)


def _small_checkout(root: Path) -> Path:
    (root / "examples" / "robot").mkdir(parents=True)
    (root / "examples" / "robot" / "cam.py").write_text("")
    df = root / "examples" / "robot" / "dataflow.yml"
    df.write_text(SMALL_YAML)
    return df


def _small_recording(path: Path, dataflow_path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with dora_replay.open_writer(path, SMALL_YAML, {"dataflow_path": str(dataflow_path)}) as w:
        w.write("cam/x", pa.array([1.0]), log_time_ns=1, publish_time_ns=1, seq=0)
    return path


def test_the_copy_nearest_the_user_wins_over_the_recorded_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = _small_checkout(tmp_path / "a")
    clone = _small_checkout(tmp_path / "b")
    in_clone = _small_recording(tmp_path / "b" / "golden" / "r.dora", recorded)
    outside = _small_recording(tmp_path / "elsewhere" / "r.dora", recorded)
    monkeypatch.chdir(tmp_path / "b")
    assert dora_replay.find_dataflow(outside) == clone  # below the current folder
    (tmp_path / "b" / "docs").mkdir()
    monkeypatch.chdir(tmp_path / "b" / "docs")
    assert dora_replay.find_dataflow(outside) == clone  # below a folder above it
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert dora_replay.find_dataflow(in_clone) == clone  # below a folder above the recording
    assert dora_replay.find_dataflow(outside) == recorded  # nothing nearer: the recorded file
    with dora_replay.open(in_clone) as rec:
        desc, notes = load_dataflow(rec, None)
    assert desc.path == clone
    assert notes == [f"recorded from {recorded}; using {clone}"]
    with dora_replay.open(outside) as rec:
        assert load_dataflow(rec, None)[1] == []


def test_summary_counts_skipped_messages_with_the_reason() -> None:
    ch = ChannelComparison("planner/target", Tolerance(), recorded_count=49, matched=46)
    assert ch.summary() == "planner/target: ok (46 message(s) match)"
    ch.skipped, ch.skip_reason = 3, "their inputs were not replayed (outside --start/--end)"
    assert ch.summary() == (
        "planner/target: ok (46 message(s) match, 3 skipped: their inputs were not replayed "
        "(outside --start/--end))"
    )
    assert ch.to_dict()["skip_reason"] == ch.skip_reason


def test_a_recorded_channel_no_node_produces_fails_the_gate(
    checkout_a: Path, tmp_path: Path
) -> None:
    """Replaying a dataflow in which the recorded ``scale`` was renamed must not pass by
    comparing nothing: the channel fails, named with why."""
    b = _second_clone(checkout_a, tmp_path / "b", factor=3.0)
    renamed = b / "flow" / "renamed.yml"
    renamed.write_text(DATAFLOW.replace("id: scale", "id: scaler"))
    r = run_dora(
        "replay", "golden/run.dora", "--speed", "0", "--assert", "-q",
        "--dataflow", "flow/renamed.yml", cwd=b,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 of 1 channel(s) differ" in r.stdout, r.stdout
    assert "scale/scaled: 0 of " in r.stdout and " missing" in r.stdout, r.stdout
    assert (
        "note: scale/scaled: node `scale` is not in the dataflow flow/renamed.yml, so nothing "
        "produced this recorded channel" in r.stdout
    ), r.stdout

    # an output no longer declared is named as such
    (b / "flow" / "renamed.yml").write_text(DATAFLOW.replace("outputs: [scaled]", "outputs: [out]"))
    result = dora_replay.replay(
        b / "golden" / "run.dora", speed=0, dataflow=renamed, log_dir=tmp_path / "l2"
    )
    assert not result.ok
    (note,) = result.comparison.channels["scale/scaled"].notes
    assert note.startswith("node `scale` has no output `scaled` in the dataflow"), note


def test_a_dataflow_changed_since_the_recording_is_noted(checkout_a: Path, tmp_path: Path) -> None:
    b = _second_clone(checkout_a, tmp_path / "b", factor=3.0)
    flow = b / "flow" / "dataflow.yml"
    flow.write_text(flow.read_text().replace("millis/30", "millis/40"))
    r = run_dora("replay", "golden/run.dora", "--speed", "0", "--assert", "-q", cwd=b)
    assert r.returncode == 0, r.stdout + r.stderr  # the recorded dataflow ran, as before
    assert (
        "flow/dataflow.yml has changed since the recording; this replay runs the dataflow "
        "stored in the recording (pass --dataflow flow/dataflow.yml to run the changed one)"
        in r.stdout
    ), r.stdout


def test_replaying_a_folder_is_a_one_line_error(tmp_path: Path) -> None:
    r = run_dora("replay", str(tmp_path), "--speed", "0")
    assert r.returncode == 1
    assert one_error_line(r.stderr) == f"error: {tmp_path}: is a folder, not a .dora recording"


def test_only_the_live_nodes_files_must_exist(checkout_a: Path, tmp_path: Path) -> None:
    """Replayed sensors are fed from the recording: their files may be gone (a CI checkout
    without the hardware drivers); a live node's missing file is one line naming it."""
    b = _second_clone(checkout_a, tmp_path / "b", factor=3.0)
    (b / "flow" / "nodes" / "sensor.py").unlink()
    r = run_dora("replay", "golden/run.dora", "--speed", "0", "--assert", "-q", cwd=b)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all 1 channel(s) match" in r.stdout
    (b / "flow" / "nodes" / "scale.py").unlink()
    r = run_dora("replay", "golden/run.dora", "--speed", "0", "--assert", "-q", cwd=b)
    assert r.returncode == 1
    assert one_error_line(r.stderr).startswith(
        "error: node 'scale': path 'nodes/scale.py' does not exist (looked for "
    )
    assert r.stderr.rstrip().endswith("(a node that runs live needs its file)")
