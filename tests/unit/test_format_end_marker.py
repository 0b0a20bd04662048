"""A damaged end of a closed file: the 16-byte end marker (tail) cut or damaged, or the footer
cut off. Every chunk is still there, so no message is reported lost, whatever the offset of the
cut; the damage is reported as such (``footer_damaged``, ``end_marker_damaged``) and a repair
rewrites the end."""

from __future__ import annotations

from pathlib import Path

import pytest
from _small_recording import TOTAL, make

import dora_replay
from dora_replay._reader import PartFile
from dora_replay._records import TAIL_SIZE
from dora_replay.info import recording_info
from dora_replay.repair import repair


def footer_size(path: Path) -> int:
    """Bytes of the FOOTER frame (it starts where the last chunk ends)."""
    part = PartFile(path)
    try:
        last = part.chunks[-1]
        return part.size - TAIL_SIZE - (last.offset + last.size)
    finally:
        part.close()


def check_nothing_lost(path: Path, end_marker: bool) -> None:
    with dora_replay.open(path) as rec:
        assert len(list(rec.iter_messages())) == TOTAL
        assert rec.problems == [], rec.problems  # what a replay reports as damage
        assert rec.verify() == [], rec.problems
        assert not rec.clean and rec.footer_damaged
        assert rec.end_marker_damaged == end_marker
    info = recording_info(path)
    assert info.readable_messages == info.message_count == TOTAL
    assert info.lost_messages == 0 and not info.lost_unknown and info.damage == []
    assert info.footer_damaged and info.end_marker_damaged == end_marker
    report = repair(path)
    assert not report.intact and report.messages_recovered == TOTAL
    assert report.lost_messages == 0 and not report.unknown_loss, report.summary()
    with dora_replay.open(path) as rec:
        assert rec.clean and not rec.footer_damaged and rec.metadata["repaired_lost"] == "0"


@pytest.mark.parametrize("cut", [1, 3, 8, 9, 15, 16])
def test_a_cut_end_marker_loses_no_message(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "run.dora"
    make(path)
    path.write_bytes(path.read_bytes()[:-cut])
    check_nothing_lost(path, end_marker=True)


@pytest.mark.parametrize("back", range(1, TAIL_SIZE + 1))
def test_a_damaged_end_marker_byte_loses_no_message(tmp_path: Path, back: int) -> None:
    """Every byte of the tail: the footer offset (its first 8 bytes) or the magic."""
    path = tmp_path / "run.dora"
    make(path)
    raw = bytearray(path.read_bytes())
    raw[-back] ^= 0x5A
    path.write_bytes(bytes(raw))
    check_nothing_lost(path, end_marker=True)


def test_a_cut_footer_loses_no_message(tmp_path: Path) -> None:
    """Cut inside the FOOTER frame, at its first byte after the head and at its last byte: the
    footer was written (its head is there), so the file is told a damaged footer, not a crash."""
    path = tmp_path / "run.dora"
    make(path)
    raw = path.read_bytes()
    size = footer_size(path)
    for cut in (TAIL_SIZE + 1, TAIL_SIZE + size // 2, TAIL_SIZE + size - 40):
        path.write_bytes(raw[:-cut])
        check_nothing_lost(path, end_marker=False)


@pytest.mark.parametrize("kept", [5, 10, 19])
def test_a_cut_within_the_footer_prefix_loses_no_message(tmp_path: Path, kept: int) -> None:
    """Once its sync marker and opcode are there, the frame is a footer."""
    path = tmp_path / "run.dora"
    make(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: -(TAIL_SIZE + footer_size(path) - kept)])
    with dora_replay.open(path) as rec:
        assert len(list(rec.iter_messages())) == TOTAL and rec.verify() == []
        assert not rec.clean and rec.footer_damaged and not rec.end_marker_damaged


def test_a_cut_before_the_opcode_of_the_last_frame_is_an_unknown_loss(tmp_path: Path) -> None:
    """Four bytes of a frame head do not tell a footer from a chunk being written."""
    path = tmp_path / "run.dora"
    make(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: -(TAIL_SIZE + footer_size(path) - 4)])
    with dora_replay.open(path) as rec:
        assert len(list(rec.iter_messages())) == TOTAL
        [p] = rec.problems
        assert p.kind == "truncated" and p.lost_messages is None


def test_a_crash_before_the_footer_is_not_a_damaged_footer(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: -(TAIL_SIZE + footer_size(path))])
    with dora_replay.open(path) as rec:
        assert rec.verify() == [] and not rec.clean
        assert not rec.footer_damaged and not rec.end_marker_damaged
