"""A damaged CHANNEL record: found by ``verify`` / ``dora info``, restored by repair from an
intact copy (the footer's, or the schema inside the channel's chunks), and counted as lost, in
the repair's report and in ``repaired_lost``, when no copy is left. Nothing is lost silently."""

from __future__ import annotations

from pathlib import Path

import pytest
from _small_recording import TOTAL, make

import dora_replay
from dora_replay._index import Footer
from dora_replay._reader import PartFile
from dora_replay._records import (
    OP_CHANNEL,
    OP_FOOTER,
    TAIL_SIZE,
    decode_tail,
    encode_frame_parts,
    encode_tail,
    pack,
    parse_prefix,
)
from dora_replay.info import recording_info
from dora_replay.repair import repair

CHANNELS = 3
PER_CHANNEL = 40


def frames(path: Path) -> list[tuple[int, int, int, int]]:
    """(offset, opcode, meta_len, size) of every frame of an undamaged file."""
    raw = path.read_bytes()
    out, pos = [], 8
    end = len(raw) - TAIL_SIZE if decode_tail(raw[-TAIL_SIZE:]) is not None else len(raw)
    while pos < end:
        pre = parse_prefix(raw[pos : pos + 20], pos)
        assert pre is not None
        out.append((pos, pre.opcode, pre.meta_len, pre.size))
        pos += pre.size
    return out


def first_channel(path: Path) -> tuple[int, int, int]:
    """(offset, meta_len, size) of the first CHANNEL frame."""
    off, _, meta_len, size = next(f for f in frames(path) if f[1] == OP_CHANNEL)
    return off, meta_len, size


def footer_start(path: Path) -> int:
    return next(f[0] for f in frames(path) if f[1] == OP_FOOTER)


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x5A
    path.write_bytes(bytes(raw))


def count_of(path: Path, channel: str) -> int:
    with dora_replay.open(path) as rec:
        return rec.channels[channel].message_count


# where in the first CHANNEL frame a byte goes bad: its meta (the head CRC fails, so a scan
# sees unreadable bytes) or its Arrow schema (the body CRC fails, the meta is still readable)
WHERE = {"meta": lambda off, meta_len, size: off + 20 + 5, "schema": lambda o, m, s: o + s - 40}


@pytest.mark.parametrize("where", WHERE)
def test_verify_and_info_report_a_damaged_channel_record(tmp_path: Path, where: str) -> None:
    path = tmp_path / "run.dora"
    make(path)
    flip(path, WHERE[where](*first_channel(path)))
    with dora_replay.open(path) as rec:
        assert len(list(rec.iter_messages())) == TOTAL  # the footer's copy is used
        problems = rec.verify()
    assert problems, "verify must report the damaged channel record"
    assert all(p.lost_messages == 0 for p in problems), problems  # nothing is lost
    info = recording_info(path)
    assert info.readable_messages == TOTAL and info.lost_messages == 0
    assert info.damage and not info.lost_unknown
    assert any("channel record" in d.text or "no chunk there" in d.text for d in info.damage)


@pytest.mark.parametrize("where", WHERE)
def test_repair_restores_a_damaged_channel_record_from_the_footer(
    tmp_path: Path, where: str
) -> None:
    path = tmp_path / "run.dora"
    make(path)
    flip(path, WHERE[where](*first_channel(path)))
    report = repair(path)
    assert not report.intact
    assert report.messages_recovered == TOTAL
    assert report.lost_messages == 0 and not report.unknown_loss, report.summary()
    assert "unknown" not in report.summary() and "restored" in report.summary()
    with dora_replay.open(path) as rec:
        assert rec.clean and rec.verify() == []
        assert len(list(rec.iter_messages())) == TOTAL
        assert rec.metadata["repaired_lost"] == "0"
    assert recording_info(path).readable_messages == TOTAL


def test_repair_restores_a_channel_from_its_chunks_when_there_is_no_footer(
    tmp_path: Path,
) -> None:
    """A crashed file (no footer) whose channel record's schema is damaged: the meta still
    names the channel, and every chunk holds its Arrow schema."""
    path = tmp_path / "run.dora"
    make(path)
    off, meta_len, size = first_channel(path)
    path.write_bytes(path.read_bytes()[: footer_start(path)])
    flip(path, off + size - 40)
    with dora_replay.open(path) as rec:  # a reader restores it too
        assert len(list(rec.iter_messages())) == TOTAL and rec.problems == []
        assert [p.lost_messages for p in rec.verify()] == [0]
    report = repair(path)
    assert report.messages_recovered == TOTAL and report.lost_messages == 0
    assert not report.unknown_loss, report.summary()
    with dora_replay.open(path) as rec:
        assert rec.verify() == [] and len(list(rec.iter_messages())) == TOTAL
        assert rec.metadata["repaired_lost"] == "0"


def test_a_channel_that_cannot_be_restored_is_counted_as_lost(tmp_path: Path) -> None:
    """A crashed file whose channel record's meta is damaged: nothing names the channel any
    more, so its chunks are lost. The repair says how many messages, so does
    ``repaired_lost``, and a later repair or ``dora info`` never calls the result whole."""
    path = tmp_path / "run.dora"
    make(path)
    n0 = count_of(path, "n0/o")
    off, _, _ = first_channel(path)
    path.write_bytes(path.read_bytes()[: footer_start(path)])
    flip(path, off + 25)
    with dora_replay.open(path) as rec:
        assert len(list(rec.iter_messages())) == TOTAL - n0
        assert sum(p.lost_messages or 0 for p in rec.problems) == n0
    report = repair(path)
    assert report.messages_recovered == TOTAL - n0
    assert report.lost_messages == n0, report.summary()
    assert f"{n0} message(s)" in report.summary()
    with dora_replay.open(path) as rec:
        assert rec.verify() == [] and len(list(rec.iter_messages())) == TOTAL - n0
        assert rec.metadata["repaired_lost"] in (str(n0), f"{n0}+")
        assert "n0/o" not in rec.channels
    again = repair(path)  # nothing left to repair, but the file is not called intact
    assert again.intact and "is intact" not in again.summary()
    assert f"an earlier repair lost {rec.metadata['repaired_lost']} message(s)" in again.summary()


def test_chunks_without_a_channel_record_are_not_called_intact(tmp_path: Path) -> None:
    """A file an earlier repair wrote without one channel's record (but with its chunks): a
    repair drops those chunks and counts them as lost rather than calling the file intact."""
    path = tmp_path / "run.dora"
    make(path)
    n0 = count_of(path, "n0/o")
    part = PartFile(path)
    footer = Footer(
        [c for c in part.channels.values() if c.name != "n0/o"],
        part.chunks,
        part.drops,
        part.end_time_ns or 0,
        TOTAL,
    )
    part.close()
    raw = path.read_bytes()
    off, _, size = first_channel(path)
    assert part.channels[0].name == "n0/o"  # the first channel record is n0/o's
    start = footer_start(path)
    body = raw[:start]
    footer_frame = b"".join(
        bytes(x) for x in encode_frame_parts(OP_FOOTER, pack({"chunk_count": 0}), footer.encode())
    )
    # blank the channel record's sync marker: a scan sees unreadable bytes there
    damaged = body[:off] + b"\0" * 4 + body[off + 4 :]
    path.write_bytes(damaged + footer_frame + encode_tail(len(damaged)))
    with dora_replay.open(path) as rec:
        assert sum(p.lost_messages or 0 for p in rec.verify()) == n0
    report = repair(path)
    assert not report.intact and report.lost_messages == n0, report.summary()
    with dora_replay.open(path) as rec:
        assert rec.verify() == [] and rec.message_count == TOTAL - n0
        assert rec.metadata["repaired_lost"].rstrip("+") == str(n0)
