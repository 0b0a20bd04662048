"""``dora info --json`` for CI scripts: ``intact`` is true only when nothing is lost or damaged
(``clean`` only says the file was closed with its footer), and ``lost_unknown`` says when
``lost_messages`` is a lower bound."""

from __future__ import annotations

import json
from pathlib import Path

from _small_recording import TOTAL, chunks, make

from dora_replay.info import recording_info
from dora_replay.repair import repair


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x5A
    path.write_bytes(bytes(raw))


def doc(path: Path) -> dict:
    """What ``dora info --json`` prints, parsed back."""
    return json.loads(json.dumps(recording_info(path).to_dict()))


def test_an_intact_recording(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    d = doc(path)
    assert d["intact"] and d["clean"] and not d["lost_unknown"] and d["lost_messages"] == 0


def test_a_chunk_failing_its_crc_is_clean_but_not_intact(tmp_path: Path) -> None:
    """``clean`` means closed with a footer: it stays true when a chunk is lost."""
    path = tmp_path / "run.dora"
    make(path)
    victim = chunks(path)[4]
    flip(path, victim.offset + victim.size - 10)
    d = doc(path)
    assert d["clean"] and not d["intact"]
    assert d["lost_messages"] == victim.meta.message_count and not d["lost_unknown"]


def test_a_damaged_end_marker_loses_nothing_but_is_not_intact(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    path.write_bytes(path.read_bytes()[:-3])
    d = doc(path)
    assert not d["intact"] and not d["clean"] and d["footer_damaged"] and d["end_marker_damaged"]
    assert d["lost_messages"] == 0 and d["readable_messages"] == TOTAL and d["damage"] == []


def test_a_damaged_channel_record_is_not_intact(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    first = chunks(path)[0]
    flip(path, first.offset - 30)  # the schema of the CHANNEL record written just before it
    d = doc(path)
    assert not d["intact"] and d["clean"] and d["lost_messages"] == 0
    assert [x["lost_messages"] for x in d["damage"]] == [0]


def test_an_unknown_loss_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    last = chunks(path)[-1]
    path.write_bytes(path.read_bytes()[: last.offset + 10])  # inside the last chunk's head
    d = doc(path)
    assert not d["intact"] and d["lost_unknown"] and d["lost_messages"] == 0


def test_a_repair_that_lost_messages_leaves_a_file_that_is_not_intact(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    victim = chunks(path)[4]
    flip(path, victim.offset + victim.size - 10)
    repair(path)
    d = doc(path)
    assert d["clean"] and d["damage"] == [] and d["readable_messages"] == d["message_count"]
    assert not d["intact"]  # an earlier repair lost messages: repaired_lost says how many
    assert d["metadata"]["repaired_lost"] == str(victim.meta.message_count)


def test_a_repair_that_lost_nothing_leaves_an_intact_file(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    path.write_bytes(path.read_bytes()[:-3])
    repair(path)
    assert doc(path)["intact"]


def test_without_reading_the_chunks_nothing_is_called_intact(tmp_path: Path) -> None:
    path = tmp_path / "run.dora"
    make(path)
    assert not recording_info(path, verify=False).intact


def test_seconds_span_never_prints_a_negative_zero() -> None:
    """A chunk whose first message was logged a hair before the recording's start printed
    ``-0.000-0.711 s``."""
    from dora_replay.info import seconds_span

    origin = 1_700_000_000_000_000_000
    assert seconds_span(origin - 40_000, origin + 711_000_000, origin) == "0.000-0.711 s"
    assert seconds_span(origin + 2_500_000_000, origin + 2_500_000_000, origin) == "2.500 s"
