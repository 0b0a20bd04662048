"""What the recording commands print: export counts and damage warnings, `dora info` on damaged
files when piped, where a split `dora record` writes, refusing a name split parts already use,
and the export format taken from the output name.

Every test runs the real `dora` command line in a subprocess on real files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _cli import NODES, TICKER, one_error_line, run_dora

import dora_replay
from dora_replay._reader import PartFile

CHANNELS = 3
PER_CHANNEL = 40
TOTAL = CHANNELS * PER_CHANNEL
STEP_NS = 50_000_000  # 50 ms between messages of a channel


def _env() -> dict[str, str]:
    """The user's environment without a terminal width: rich then assumes 80 columns."""
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def _make(path: Path) -> int:
    """A recording of ``TOTAL`` messages in many small chunks; returns its first log time."""
    t0 = 1_700_000_000_000_000_000
    with dora_replay.open_writer(path, "nodes: []\n", chunk_size_bytes=300, fsync=False) as w:
        for i in range(PER_CHANNEL):
            for c in range(CHANNELS):
                t = t0 + i * STEP_NS
                w.write(f"cam{c}/x", pa.array([i] * 8), log_time_ns=t, publish_time_ns=t, seq=i)
    return t0


def _flip_a_chunk(path: Path):
    """Damage the body of a chunk in the middle (its CRC fails); returns its index entry."""
    part = PartFile(path)
    victim = part.chunks[len(part.chunks) // 2]
    part.close()
    raw = bytearray(path.read_bytes())
    raw[victim.offset + victim.size - 10] ^= 0x10
    path.write_bytes(bytes(raw))
    return victim


def _warnings(stderr: str) -> list[str]:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert all(ln.startswith("warning: ") for ln in lines), stderr
    return lines


def _mcap_count(path: Path) -> int:
    from mcap.reader import make_reader

    with path.open("rb") as f:
        return sum(1 for _ in make_reader(f).iter_messages())


@pytest.mark.timeout(60)
def test_export_of_a_chunk_failing_its_crc_counts_what_it_wrote_and_warns_once(
    tmp_path: Path,
) -> None:
    src = tmp_path / "flip.dora"
    _make(src)
    lost = _flip_a_chunk(src).meta.message_count
    readable = TOTAL - lost

    mcap = run_dora("export", str(src), "-f", "mcap", "-o", str(tmp_path / "flip.mcap"))
    assert mcap.returncode == 0, mcap.stderr
    assert mcap.stdout.strip() == f"wrote {readable} messages to {tmp_path / 'flip.mcap'}"
    assert _mcap_count(tmp_path / "flip.mcap") == readable
    (warning,) = _warnings(mcap.stderr)
    assert f"{lost} message(s) could not be read" in warning, warning
    assert "dora record repair" in warning and str(src) in warning

    pq_dir = tmp_path / "pq"
    par = run_dora("export", str(src), "-f", "parquet", "-o", str(pq_dir))
    assert par.returncode == 0, par.stderr
    rows = sum(pq.read_metadata(f).num_rows for f in pq_dir.glob("*/*.parquet"))
    assert rows == readable
    assert f"wrote {readable} messages to {CHANNELS} Parquet file(s)" in par.stdout
    (warning,) = _warnings(par.stderr)
    assert f"{lost} message(s) could not be read" in warning and "dora record repair" in warning


@pytest.mark.timeout(60)
def test_export_of_a_cut_off_file_warns_once_and_a_sound_file_not_at_all(tmp_path: Path) -> None:
    src = tmp_path / "cut.dora"
    _make(src)
    part = PartFile(src)
    last = part.chunks[-1]
    part.close()
    src.write_bytes(src.read_bytes()[: last.offset + last.size // 2])  # inside the last chunk

    r = run_dora("export", str(src), "-f", "mcap", "-o", str(tmp_path / "cut.mcap"))
    assert r.returncode == 0, r.stderr
    n = TOTAL - last.meta.message_count
    assert r.stdout.strip() == f"wrote {n} messages to {tmp_path / 'cut.mcap'}"
    assert _mcap_count(tmp_path / "cut.mcap") == n
    (warning,) = _warnings(r.stderr)
    assert f"{last.meta.message_count} message(s) could not be read" in warning, warning

    sound = tmp_path / "sound.dora"
    _make(sound)
    ok = run_dora("export", str(sound), "-f", "mcap", "-o", str(tmp_path / "sound.mcap"))
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    assert ok.stdout.strip() == f"wrote {TOTAL} messages to {tmp_path / 'sound.mcap'}"


@pytest.mark.timeout(60)
def test_info_of_a_damaged_file_piped_prints_whole_lines_seconds_and_the_lost_count(
    tmp_path: Path,
) -> None:
    # a long path: the lost line is far wider than the 80 columns rich assumes without a tty
    deep = tmp_path / ("robot_field_test_" * 3) / "session_2024_06_01"
    deep.mkdir(parents=True)
    src = deep / "flip.dora"
    t0 = _make(src)
    victim = _flip_a_chunk(src)
    lost = victim.meta.message_count
    a = (victim.meta.start_log_time_ns - t0) / 1e9
    b = (victim.meta.end_log_time_ns - t0) / 1e9

    r = run_dora("info", str(src), env=_env())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.startswith(f"{TOTAL - lost} messages readable, {lost} lost,") for ln in lines), (
        r.stdout
    )
    (lost_line,) = [ln for ln in lines if ln.startswith("lost: ")]
    assert lost_line.startswith(f"lost: {src}@{victim.offset}: ") and "fails its CRC" in lost_line
    assert f"at {a:.3f}-{b:.3f} s" in lost_line, lost_line
    assert not re.search(r"\d{15,}", r.stdout), r.stdout  # no epoch nanoseconds
    summary = [ln for ln in lines if "message(s) lost" in ln]
    assert len(summary) == 1 and f"dora record repair {src}" in summary[0], r.stdout
    assert max(len(ln) for ln in lines) > 80  # whole lines, not wrapped at 80 columns
    for head in ("channel", "cam1/x", "cam0/x"):  # the table: readable counts, a lost column
        assert sum(ln.startswith(head) for ln in lines) == 1, r.stdout
    (table_head,) = [ln for ln in lines if ln.startswith("channel")]
    assert table_head.split()[-3:] == ["lost", "arrow", "type"], table_head

    doc = json.loads(run_dora("info", str(src), "--json").stdout)
    assert doc["message_count"] == TOTAL  # what the index lists: unchanged meaning
    assert doc["readable_messages"] == TOTAL - lost and doc["lost_messages"] == lost
    assert sum(c["message_count"] - c["lost_messages"] for c in doc["channels"]) == TOTAL - lost
    (damage,) = doc["damage"]
    assert damage["kind"] == "crc" and damage["lost_messages"] == lost
    assert damage["first_log_time_ns"] == victim.meta.start_log_time_ns
    assert "log time" in doc["problems"][0]  # the raw text stays for scripts that read it


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_split_record_says_where_its_parts_go_and_an_unsplit_one_refuses_their_name(
    tmp_path: Path,
) -> None:
    df = tmp_path / "ticker.yml"
    df.write_text(TICKER.format(nodes=NODES, ticks=60), encoding="utf-8")
    out = tmp_path / "split.dora"
    r = run_dora("record", str(df), "-o", str(out), "--split-duration", "1s")
    assert r.returncode == 0, r.stdout + r.stderr
    (first,) = [ln for ln in r.stdout.splitlines() if "recording 1 channel(s) to" in ln]
    assert first.endswith(
        f"to {tmp_path / 'split_001.dora'}, split_002.dora, ... (a new part every 1 s)"
    ), first
    assert not out.exists()
    parts = sorted(p.name for p in tmp_path.glob("split_*.dora"))
    assert parts[0] == "split_001.dora"
    before = {n: (tmp_path / n).read_bytes() for n in parts}
    unrelated = tmp_path / "split_2024.dora"  # an unsplit recording named like a part
    _make(unrelated)

    df.write_text(TICKER.format(nodes=NODES, ticks=5), encoding="utf-8")
    refused = run_dora("record", str(df), "-o", str(out))
    assert refused.returncode == 1
    line = one_error_line(refused.stderr)
    assert "split_001.dora" in line and "--overwrite" in line and "another name" in line, line
    assert "split_2024.dora" not in line
    assert not out.exists()
    assert {n: (tmp_path / n).read_bytes() for n in parts} == before

    done = run_dora("record", str(df), "-o", str(out), "--overwrite")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"recording 1 channel(s) to {out}" in done.stdout
    assert sorted(p.name for p in tmp_path.glob("split_*.dora")) == ["split_2024.dora"]
    with dora_replay.open(out) as rec:
        assert rec.message_count == 5 and rec.paths == [out]

    # `dora run --record` follows the same rule: --overwrite replaces the parts too
    again = run_dora("record", str(df), "-o", str(out), "--split-duration", "1s", "--overwrite")
    assert again.returncode == 0 and (tmp_path / "split_001.dora").exists(), again.stderr
    refused = run_dora("run", str(df), "--record", str(out))
    assert refused.returncode == 1 and "--overwrite" in one_error_line(refused.stderr)
    ran = run_dora("run", str(df), "--record", str(out), "--overwrite")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert sorted(p.name for p in tmp_path.glob("split_*.dora")) == ["split_2024.dora"]
    with dora_replay.open(out) as rec:
        assert rec.message_count == 5 and rec.paths == [out]


@pytest.mark.timeout(60)
def test_export_takes_the_format_from_the_output_name(tmp_path: Path) -> None:
    src = tmp_path / "run.dora"
    _make(src)

    r = run_dora("export", str(src), "-o", str(tmp_path / "run.mcap"))
    assert r.returncode == 0, r.stderr
    assert _mcap_count(tmp_path / "run.mcap") == TOTAL

    r = run_dora("export", str(src), "-o", str(tmp_path / "tables"))  # no suffix: a folder
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "tables").glob("*/*.parquet"))) == CHANNELS

    existing = tmp_path / "out.d"
    existing.mkdir()
    r = run_dora("export", str(src), "-o", str(existing))
    assert r.returncode == 0, r.stderr
    assert len(list(existing.glob("*/*.parquet"))) == CHANNELS

    for name in ("run.json", "run.parquet"):
        r = run_dora("export", str(src), "-o", str(tmp_path / name))
        assert r.returncode == 2
        line = one_error_line(r.stderr)
        assert name in line and "-f mcap" in line and "-f parquet" in line, line
        assert not (tmp_path / name).exists()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_replay_out_beside_the_parts_it_replays_keeps_them(tmp_path: Path) -> None:
    # `--out` is replaced on every replay without --overwrite; it must not take the parts of
    # the split recording of the same name with it: here they are the recording replayed
    df = tmp_path / "ticker.yml"
    df.write_text(TICKER.format(nodes=NODES, ticks=30), encoding="utf-8")
    r = run_dora("record", str(df), "-o", str(tmp_path / "run.dora"), "--split-duration", "300ms")
    assert r.returncode == 0, r.stdout + r.stderr
    parts = sorted(tmp_path.glob("run_*.dora"))
    assert len(parts) >= 2, parts
    before = [p.read_bytes() for p in parts]

    out = tmp_path / "run.dora"
    rep = run_dora("replay", str(parts[0]), "--out", str(out), "--speed", "10")
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert [p.read_bytes() for p in parts] == before
    with dora_replay.open(out) as rec:
        assert rec.message_count == 30 and rec.paths == [out]
