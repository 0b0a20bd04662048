"""Damaged recordings: CRC errors, truncation anywhere, garbage, kill -9 mid-write, repair."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _small_recording import YAML, chunks, make

import dora_replay
from dora_replay._reader import PartFile
from dora_replay.info import recording_info
from dora_replay.repair import repair


def seqs(rec: dora_replay.Recording) -> list[tuple[str, int]]:
    return [(m.channel, m.seq) for m in rec.iter_messages()]


def chunks_end(path: Path) -> int:
    """Where the last chunk of ``path`` ends: cutting there drops the footer only."""
    last = chunks(path)[-1]
    return last.offset + last.size


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))


def test_flipped_bit_in_a_chunk_is_reported_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    part = PartFile(path)
    victim = part.chunks[len(part.chunks) // 2]
    part.close()
    flip(path, victim.offset + victim.size - 10)  # inside the compressed body
    with dora_replay.open(path) as rec:
        got = seqs(rec)
        assert len(got) == 120 - victim.meta.message_count
        [problem] = rec.problems
        assert problem.kind == "crc" and problem.lost_messages == victim.meta.message_count
        assert "fails its CRC" in str(problem)


def test_flipped_bit_in_a_chunk_head_without_footer(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    victim, footer_at = chunks(path)[3], chunks_end(path)
    raw = path.read_bytes()[:footer_at]  # drop footer: the reader must scan
    path.write_bytes(raw)
    flip(path, victim.offset + 30)  # inside the chunk meta: head CRC fails, resync
    with dora_replay.open(path) as rec:
        assert len(seqs(rec)) == 120 - victim.meta.message_count
        kinds = [p.kind for p in rec.problems]
        assert kinds == ["garbage"] and rec.problems[0].lost_bytes == victim.size


def test_truncation_at_every_point_never_crashes(tmp_path: Path) -> None:
    src = tmp_path / "full.dora"
    make(src, channels=2, per_channel=20)
    raw = src.read_bytes()
    with dora_replay.open(src) as rec:
        total = rec.message_count
    header_end = PartFile(src).chunks[0].offset
    cut_points = sorted(set(range(0, len(raw), max(1, len(raw) // 150))) | {len(raw) - 1})
    for cut in cut_points:
        path = tmp_path / "cut.dora"
        path.write_bytes(raw[:cut])
        try:
            rec = dora_replay.open(path)
        except dora_replay.RecordingCorruptError as e:
            assert cut < header_end and str(path) in str(e)
            continue
        with rec:
            got = seqs(rec)
            lost = sum(p.lost_messages or 0 for p in rec.problems)
            assert len(got) <= total
            if cut < len(raw) - 16 - 1:
                assert not rec.clean
            assert len(got) + lost <= total


def test_truncated_header(tmp_path: Path) -> None:
    src = tmp_path / "full.dora"
    make(src)
    for cut in (0, 5, 8, 30):
        path = tmp_path / "h.dora"
        path.write_bytes(src.read_bytes()[:cut])
        with pytest.raises(dora_replay.RecordingCorruptError, match="h.dora"):
            dora_replay.open(path)


def test_truncated_footer_falls_back_to_scanning(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:-40])
    with dora_replay.open(path) as rec:
        assert not rec.clean and len(seqs(rec)) == 120 and rec.problems == []
        # its head is there: the file was being closed (or cut later), not crashed mid-write,
        # so it reads as a damaged footer, as a cut in its 16-byte end marker does
        assert rec.footer_damaged and not rec.end_marker_damaged


def test_a_damaged_footer_is_told_from_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    flip(path, chunks_end(path) + 30)  # inside the footer frame; the tail still points at it
    with dora_replay.open(path) as rec:
        assert not rec.clean and rec.footer_damaged
        assert len(seqs(rec)) == 120 and rec.problems == []  # the chunks were scanned instead
    assert recording_info(path).footer_damaged


def test_not_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "x.dora"
    path.write_bytes(b"hello world, not a recording at all")
    with pytest.raises(dora_replay.RecordingCorruptError, match="not a .dora recording"):
        dora_replay.open(path)
    with pytest.raises(dora_replay.RecordingNotFoundError):
        dora_replay.open(tmp_path / "missing.dora")


def test_repair_rewrites_with_a_fresh_index_and_reports_losses(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    part = PartFile(path)
    victim, last = part.chunks[2], part.chunks[-1]
    part.close()
    raw = bytearray(path.read_bytes()[: last.offset + last.size // 2])  # crash inside last chunk
    raw[victim.offset + victim.size - 8] ^= 1
    path.write_bytes(bytes(raw))
    report = repair(path)
    lost = victim.meta.message_count + last.meta.message_count
    assert report.lost_messages == lost and report.lost_chunks == 2
    assert report.messages_recovered == 120 - lost
    assert f"recovered {120 - lost} message(s)" in report.summary()
    with dora_replay.open(path) as rec:
        assert rec.clean and rec.problems == [] and len(seqs(rec)) == 120 - lost
        assert rec.dataflow_yaml == YAML


def test_repair_to_another_file_keeps_the_original(tmp_path: Path) -> None:
    path, out = tmp_path / "run.dora", tmp_path / "fixed.dora"
    make(path)
    before = path.read_bytes()
    report = repair(path, out)
    assert path.read_bytes() == before and report.output == out and report.lost_messages == 0
    with dora_replay.open(out) as rec:
        assert len(seqs(rec)) == 120


def test_repair_with_output_naming_the_input_repairs_in_place(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    full = path.read_bytes()
    path.write_bytes(full[:-1000])
    (tmp_path / "sub").mkdir()
    report = repair(path, tmp_path / "sub" / ".." / "run.dora")
    assert report.messages_recovered > 0
    assert report.messages_recovered + report.lost_messages == 120
    with dora_replay.open(path) as rec:
        assert rec.clean and len(seqs(rec)) == report.messages_recovered


CHILD = textwrap.dedent(
    """
    import sys, time
    import pyarrow as pa
    import dora_replay

    w = dora_replay.open_writer(sys.argv[1], "nodes: []\\n", flush_interval_s=1.0)
    seq = 0
    while True:
        now = time.time_ns()
        w.write("imu/data", pa.array([float(seq)] * 8), log_time_ns=now, publish_time_ns=now, seq=seq)
        if seq % 50 == 0:
            print(seq, now, flush=True)
        seq += 1
        time.sleep(0.0005)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_kill_9_at_a_random_moment_loses_at_most_the_last_second(
    tmp_path: Path, trial: int
) -> None:
    path = tmp_path / "run.dora"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        first = proc.stdout.readline()  # writing has started (a loaded machine starts slowly)
        time.sleep(1.5 + random.Random(trial).uniform(0, 2.5))
        kill_ns = time.time_ns()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        out, _ = proc.communicate()
    out = first + out
    progress = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    sent_before = [s for s, t in progress if t < kill_ns - 1_200_000_000]
    assert sent_before, "the child did not get going"
    with dora_replay.open(path) as rec:
        got = [m.seq for m in rec.iter_messages()]
    assert got == list(range(len(got)))  # a prefix, in order, nothing invented
    assert len(got) > max(sent_before)  # everything sent more than ~1 s before the kill
    with dora_replay.open(path) as rec:
        assert rec.verify() == [] or all(p.kind == "truncated" for p in rec.problems)


@pytest.mark.parametrize("byte", range(20))  # every byte of the frame prefix
def test_a_flipped_bit_anywhere_in_a_chunk_prefix_loses_that_chunk_only(
    tmp_path: Path, byte: int
) -> None:
    """Also when the flip makes a length field point past the end of the file: that is a
    damaged head while valid frames follow, not a truncated file."""
    path = tmp_path / "run.dora"
    make(path)
    victim, footer_at = chunks(path)[3], chunks_end(path)
    path.write_bytes(path.read_bytes()[:footer_at])  # no footer: the reader scans
    raw = bytearray(path.read_bytes())
    raw[victim.offset + byte] ^= 0x80
    path.write_bytes(bytes(raw))
    with dora_replay.open(path) as rec:
        assert len(seqs(rec)) == 120 - victim.meta.message_count, rec.problems
        assert [p.kind for p in rec.problems] == ["garbage"]
        assert rec.problems[0].lost_bytes == victim.size


def test_a_repaired_file_says_in_its_metadata_what_the_repair_lost(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    victim, footer_at = chunks(path)[3], chunks_end(path)
    crashed = tmp_path / "crashed.dora"  # no footer, nothing lost: only the index is rebuilt
    crashed.write_bytes(path.read_bytes()[:footer_at])
    repair(crashed)
    with dora_replay.open(crashed) as rec:
        assert rec.metadata["repaired_lost"] == "0"
        assert rec.metadata["repaired"].endswith(": nothing lost (index rebuilt)")
    flip(path, victim.offset + victim.size - 10)  # one chunk fails its CRC
    report = repair(path)
    with dora_replay.open(path) as rec:
        assert rec.metadata["repaired_lost"] == str(victim.meta.message_count)
        assert (
            f"{victim.meta.message_count} message(s) lost; 1 chunk(s) failed their CRC"
            in (rec.metadata["repaired"])
        )
        assert rec.message_count == report.messages_recovered
    cut = tmp_path / "cut.dora"
    cut.write_bytes(crashed.read_bytes()[: victim.offset + 40])
    report = repair(cut)
    assert "; lost what was recorded after the cut (the file was cut off)" in report.summary()
    with dora_replay.open(cut) as rec:
        assert rec.metadata["repaired_lost"].endswith("+")  # and an unknown number more


def test_reading_a_damaged_chunk_twice_reports_it_once(tmp_path: Path) -> None:
    """Iterating, then verifying (as a replay then ``dora info`` would) reads every chunk
    again: a damaged chunk is still one problem, its messages counted once."""
    path = tmp_path / "run.dora"
    make(path)
    victim = chunks(path)[4]
    flip(path, victim.offset + victim.size - 10)
    with dora_replay.open(path) as rec:
        assert len(seqs(rec)) == 120 - victim.meta.message_count
        assert len(seqs(rec)) == 120 - victim.meta.message_count
        problems = rec.verify()
        assert [p.lost_messages for p in problems] == [victim.meta.message_count]
        assert recording_info(path).lost_messages == victim.meta.message_count
