"""Recording commands never silently replace or mix files: `dora record` split parts, `dora info`
of a set with a stale part, `dora export` / `import` / `record repair` outputs, the repair summary.

Every test runs the real `dora` command line in a subprocess on real files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _cli import NODES, TICKER, one_error_line, run_dora

import dora_replay
from dora_replay._reader import PartFile


def _dataflow(tmp_path: Path, ticks: int) -> Path:
    df = tmp_path / f"ticker_{ticks}.yml"
    df.write_text(TICKER.format(nodes=NODES, ticks=ticks), encoding="utf-8")
    return df


def _record_split(tmp_path: Path, ticks: int, *extra: str):
    """`dora record` a ticker that sends ``ticks`` messages (20 ms apart), split every 300 ms."""
    df = _dataflow(tmp_path, ticks)
    out = tmp_path / "split.dora"
    return run_dora("record", str(df), "-o", str(out), "--split-duration", "300ms", *extra)


def _parts(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("split_*.dora"))


def _ids(paths: list[Path]) -> set[str]:
    ids = set()
    for p in paths:
        part = PartFile(p)
        ids.add(part.header.recording_id)
        part.close()
    return ids


def _write(path: Path, n: int = 40) -> Path:
    with dora_replay.open_writer(path, "nodes: []\n", chunk_size_bytes=256, fsync=False) as w:
        for i in range(n):
            t = 1_700_000_000_000_000_000 + i * 1_000_000
            w.write("cam/x", pa.array([i] * 8), log_time_ns=t, publish_time_ns=t, seq=i)
    return path


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_split_record_refuses_parts_of_an_earlier_recording_and_overwrite_replaces_them(
    tmp_path: Path,
) -> None:
    first = _record_split(tmp_path, 60)
    assert first.returncode == 0, first.stdout + first.stderr
    old = _parts(tmp_path)
    assert len(old) >= 2, old  # 1.2 s of messages; a part ends after a chunk (flushed each 1 s)
    before = {n: (tmp_path / n).read_bytes() for n in old}

    again = _record_split(tmp_path, 10)
    assert again.returncode == 1
    line = one_error_line(again.stderr)
    assert "--overwrite" in line and "split_001.dora" in line, line
    assert {n: (tmp_path / n).read_bytes() for n in old} == before  # nothing touched

    # an unsplit recording whose name looks like a part is not part of split.dora
    unrelated = _write(tmp_path / "split_2024.dora")
    unrelated_bytes = unrelated.read_bytes()

    third = _record_split(tmp_path, 10, "--overwrite")
    assert third.returncode == 0, third.stdout + third.stderr
    new = [tmp_path / n for n in _parts(tmp_path) if n != "split_2024.dora"]
    assert 1 <= len(new) < len(old), [p.name for p in new]
    assert len(_ids(new)) == 1
    assert unrelated.read_bytes() == unrelated_bytes

    info = run_dora("info", str(tmp_path / "split.dora"), "--json")
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["warnings"] == [] and doc["message_count"] == 10
    assert [Path(p).name for p in doc["paths"]] == [p.name for p in new]


@pytest.mark.timeout(60)
def test_split_record_refuses_an_unsplit_file_of_the_same_name(tmp_path: Path) -> None:
    base = _write(tmp_path / "split.dora")
    refused = _record_split(tmp_path, 5)
    assert refused.returncode == 1 and "--overwrite" in one_error_line(refused.stderr)
    assert _parts(tmp_path) == []

    done = _record_split(tmp_path, 5, "--overwrite")
    assert done.returncode == 0, done.stdout + done.stderr
    # the old unsplit file is gone: `open("split.dora")` would otherwise read it, not the parts
    assert not base.exists() and _parts(tmp_path) == ["split_001.dora"]
    with dora_replay.open(tmp_path / "split.dora") as rec:
        assert rec.message_count == 5


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_info_and_export_leave_out_a_part_of_another_recording(tmp_path: Path) -> None:
    assert _record_split(tmp_path, 60).returncode == 0
    old = _parts(tmp_path)
    assert len(old) >= 2, old
    other = tmp_path / "other"
    other.mkdir()
    df = _dataflow(other, 8)
    r = run_dora("record", str(df), "-o", str(other / "b.dora"), "--split-duration", "300ms")
    assert r.returncode == 0, r.stdout + r.stderr
    # what a shorter rerun did before `dora record` refused: part 1 replaced, parts 2.. stale
    shutil.copyfile(other / "b_001.dora", tmp_path / "split_001.dora")
    new_id = _ids([other / "b_001.dora"]).pop()

    info = run_dora("info", str(tmp_path / "split.dora"), "--json")
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert doc["recording_id"] == new_id and doc["message_count"] == 8
    assert [Path(p).name for p in doc["paths"]] == ["split_001.dora"]
    (warning,) = doc["warnings"]
    for name in old[1:]:
        assert name in warning and name in info.stderr
    assert "another recording" in warning and new_id in warning

    with dora_replay.open(tmp_path / "split.dora") as rec:  # the library, replay included
        assert [p.name for p in rec.paths] == ["split_001.dora"] and rec.message_count == 8
        assert rec.warnings == doc["warnings"]
    given = sorted(tmp_path.glob("split_*.dora"))  # the same, parts given as a list
    with dora_replay.open(given) as rec:
        assert [p.name for p in rec.paths] == ["split_001.dora"] and rec.message_count == 8
        assert rec.warnings == doc["warnings"]

    text = run_dora("info", str(tmp_path / "split.dora"))
    assert text.returncode == 0 and "warning: left out" in text.stderr

    mcap = tmp_path / "split.mcap"
    exp = run_dora("export", str(tmp_path / "split.dora"), "-f", "mcap", "-o", str(mcap))
    assert exp.returncode == 0, exp.stderr
    assert "wrote 8 messages" in exp.stdout and "split_002.dora" in exp.stderr


@pytest.mark.timeout(90)
def test_export_import_and_repair_refuse_to_replace_existing_files(tmp_path: Path) -> None:
    run = _write(tmp_path / "run.dora")
    run_bytes = run.read_bytes()
    back = _write(tmp_path / "back.dora", n=5)
    back_bytes = back.read_bytes()

    # export: refused, then replaced with --overwrite; never over the recording itself
    r = run_dora("export", str(run), "-f", "mcap", "-o", str(back))
    assert r.returncode == 1 and "--overwrite" in one_error_line(r.stderr)
    assert back.read_bytes() == back_bytes
    r = run_dora("export", str(run), "-f", "mcap", "-o", str(back), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert back.read_bytes()[:5] == b"\x89MCAP" and not (tmp_path / "back.dora.partial").exists()
    r = run_dora("export", str(run), "-f", "mcap", "-o", str(run), "--overwrite")
    assert r.returncode == 1 and "being read" in one_error_line(r.stderr)
    assert run.read_bytes() == run_bytes

    # parquet: a folder that is not empty is refused; --overwrite replaces what dora wrote there
    pq_dir = tmp_path / "pq"
    stale = pq_dir / "gone" / "old.parquet"
    stale.parent.mkdir(parents=True)
    pq.write_table(
        pa.table({"x": [1]}).replace_schema_metadata({b"dora.channel": b"gone/old"}), stale
    )
    mine = pq_dir / "notes.parquet"
    pq.write_table(pa.table({"y": [2]}), mine)
    r = run_dora("export", str(run), "-f", "parquet", "-o", str(pq_dir))
    assert r.returncode == 1 and "--overwrite" in one_error_line(r.stderr)
    assert stale.exists()
    r = run_dora("export", str(run), "-f", "parquet", "-o", str(pq_dir), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert (pq_dir / "cam" / "x.parquet").exists() and not stale.exists() and mine.exists()
    # a missing parent folder: refused for parquet as for mcap, nothing created
    for fmt, name in (("parquet", "pq"), ("mcap", "run.mcap")):
        out = tmp_path / "missing" / name
        r = run_dora("export", str(run), "-f", fmt, "-o", str(out))
        assert r.returncode == 1
        assert one_error_line(r.stderr).endswith(f"folder {tmp_path / 'missing'} does not exist")
    assert not (tmp_path / "missing").exists()

    # import: the MCAP written above back into an existing .dora
    mcap = tmp_path / "run.mcap"
    assert run_dora("export", str(run), "-f", "mcap", "-o", str(mcap)).returncode == 0
    target = _write(tmp_path / "target.dora", n=3)
    target_bytes = target.read_bytes()
    r = run_dora("import", str(mcap), "-o", str(target))
    assert r.returncode == 1 and "--overwrite" in one_error_line(r.stderr)
    assert target.read_bytes() == target_bytes
    r = run_dora("import", str(mcap), "-o", str(target), "--overwrite")
    assert r.returncode == 0 and "imported 40 message(s)" in r.stdout, r.stderr
    with dora_replay.open(target) as rec:
        assert rec.message_count == 40

    # repair -o: another existing file needs --overwrite; the input itself is in-place repair
    fixed = _write(tmp_path / "fixed.dora", n=2)
    fixed_bytes = fixed.read_bytes()
    r = run_dora("record", "repair", str(run), "-o", str(fixed))
    assert r.returncode == 1 and "--overwrite" in one_error_line(r.stderr)
    assert fixed.read_bytes() == fixed_bytes
    r = run_dora("record", "repair", str(run), "-o", str(fixed), "--overwrite")
    assert r.returncode == 0 and "recovered 40 message(s)" in r.stdout, r.stderr
    run.write_bytes(run_bytes[:-100])  # cut off the footer, as a crash does
    (tmp_path / "sub").mkdir()
    r = run_dora("record", "repair", str(run), "-o", str(tmp_path / "sub" / ".." / "run.dora"))
    assert r.returncode == 0, r.stderr
    with dora_replay.open(run) as rec:
        assert rec.clean and rec.message_count > 0


@pytest.mark.timeout(60)
def test_repair_summary_of_unreadable_bytes_is_a_whole_sentence(tmp_path: Path) -> None:
    path = _write(tmp_path / "flip.dora")
    part = PartFile(path)
    victim, last = part.chunks[len(part.chunks) // 2], part.chunks[-1]
    part.close()
    # a crash (no footer, whose index would tell what the bytes held)
    raw = bytearray(path.read_bytes()[: last.offset + last.size])
    raw[victim.offset] ^= 0xFF  # the chunk's sync marker: its bytes can no longer be framed
    path.write_bytes(bytes(raw))
    r = run_dora("record", "repair", str(path), "-o", str(tmp_path / "fixed.dora"))
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert "unreadable byte(s)" in line
    assert line.endswith("holding an unknown number of messages"), line


@pytest.mark.timeout(90)
def test_an_output_where_no_file_can_be_created_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    """``/proc`` exists but takes no new file: found only by trying, so the commands try
    before they start the dataflow (``dora record`` used to start every node first)."""
    df = _dataflow(tmp_path, 5)
    r = run_dora("record", str(df), "-o", "/proc/run.dora", "--stop-after", "1")
    assert r.returncode == 1
    assert one_error_line(r.stderr).startswith(
        "error: cannot record to /proc/run.dora: no file can be created in /proc ("
    )
    assert "ticker" not in r.stdout  # no node was started
    run = _write(tmp_path / "run.dora")
    for args in (
        ["export", str(run), "-o", "/proc/x.mcap"],
        ["record", "repair", str(run), "-o", "/proc/x.dora"],
    ):
        r = run_dora(*args)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "cannot be written: no file can be created in /proc (" in one_error_line(r.stderr)
    ok = run_dora("export", str(run), "-o", str(tmp_path / "x.mcap"))
    assert ok.returncode == 0, ok.stderr
    assert not list(tmp_path.glob(".dora-probe-*"))  # the probe file is gone
