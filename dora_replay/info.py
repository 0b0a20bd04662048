"""``dora info``: what a recording holds, for humans (rich table in the CLI) and machines (JSON)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from dora_replay._index import REPAIRED_LOST_KEY
from dora_replay._reader import Problem
from dora_replay._recording import Recording
from dora_replay._recording import open as open_recording


@dataclass(slots=True)
class ChannelSummary:
    """Per-channel statistics; sizes in bytes, rate in Hz, times in ns since the Unix epoch.
    ``message_count`` counts the messages of the chunks in the index, ``readable_messages``
    those that can be read, ``lost_messages`` those known lost: in indexed chunks that fail
    their CRC or do not decode, and in chunks not indexed: cut off at the end of a file, or
    whose channel record is lost."""

    name: str
    message_count: int
    rate_hz: float
    data_bytes: int
    compressed_bytes: int
    arrow_types: list[str]
    drops: int
    first_log_time_ns: int | None
    last_log_time_ns: int | None
    lost_messages: int = 0
    readable_messages: int = 0


@dataclass(slots=True)
class Damage:
    """One damaged or lost range of a file. ``lost_messages`` is ``None`` when the count is
    unknown (unreadable bytes); log times (ns since the Unix epoch) are known for a chunk in the
    index; ``text`` says what was lost for people, times in seconds from the recording's
    first message."""

    path: str
    offset: int
    kind: str
    lost_messages: int | None
    lost_bytes: int
    channel: str | None
    first_log_time_ns: int | None
    last_log_time_ns: int | None
    text: str


@dataclass(slots=True)
class RecordingInfo:
    """Summary of a recording. ``compression_ratio`` = uncompressed chunk bytes / compressed;
    ``warnings``: parts left out because they belong to another recording (see
    ``Recording.warnings``).

    ``message_count`` counts the messages the index lists, including those in chunks that
    turn out unreadable but not those of a chunk cut off at the end of a file (or whose
    channel record is lost); ``readable_messages`` are the ones that can be read,
    ``lost_messages`` the ones known lost (a cut-off chunk included), a lower bound when
    ``lost_unknown`` (some damage held an unknown number); ``damage`` has one entry per
    problem (``problems`` the same as text, with times in ns), damage that lost no message
    included (``lost_messages`` 0).

    ``clean``: every part was closed with its footer and end marker intact, so its index
    was read from the footer; it says nothing about the chunks. ``footer_damaged``: a
    footer is there but it, or its end marker, is damaged or cut off (index rebuilt by
    scanning); ``end_marker_damaged``: only the end marker is. ``intact``: what a CI check
    wants: every chunk was read and checks out, nothing is lost or damaged (``clean``, no
    ``damage``) and no earlier repair lost messages (``repaired_lost`` absent or ``0`` in
    ``metadata``); false when the chunks were not read (``verify=False``)."""

    paths: list[str]
    format_version: int
    recording_id: str
    start_time_ns: int
    end_time_ns: int
    duration_s: float
    message_count: int
    chunk_count: int
    file_bytes: int
    compression: str
    compression_ratio: float
    metadata: dict[str, str]
    nodes: list[str]
    clean: bool
    intact: bool = False
    channels: list[ChannelSummary] = field(default_factory=list)
    footer_damaged: bool = False
    problems: list[str] = field(default_factory=list)
    lost_messages: int = 0
    warnings: list[str] = field(default_factory=list)
    readable_messages: int = 0
    damage: list[Damage] = field(default_factory=list)
    end_marker_damaged: bool = False
    lost_unknown: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``dora info --json`` prints)."""
        return asdict(self)


def dataflow_nodes(dataflow_yaml: str) -> list[str]:
    """Node ids of a dataflow YAML; empty when it does not parse."""
    import yaml

    try:
        doc = yaml.safe_load(dataflow_yaml)
    except yaml.YAMLError:
        return []
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, list):
        return []
    return [str(n["id"]) for n in nodes if isinstance(n, dict) and "id" in n]


Source = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def recording_info(source: Source, verify: bool = True) -> RecordingInfo:
    """Summarize a recording; ``verify`` reads every chunk to check CRCs and report losses
    (without it, ``readable_messages`` counts only the damage found by opening the files).
    Parts of another recording found beside it are left out and named in ``warnings``."""
    with open_recording(source) as rec:
        readable = rec.readable_counts() if verify else None
        chans = sorted(rec.channels.values(), key=lambda c: c.name)
        comp = sum(c.compressed_bytes for c in chans)
        unc = sum(c.uncompressed_bytes for c in chans)
        first = [c.first_log_time_ns for c in chans if c.first_log_time_ns is not None]
        last = [c.last_log_time_ns for c in chans if c.last_log_time_ns is not None]
        start = min(first) if first else rec.start_time_ns
        end = max(last) if last else start
        if readable is None:
            readable = {c.name: c.message_count for c in chans}
        problems = rec.problems
        # channel -> messages of chunks not in the index: the file ends inside them, or their
        # channel record is lost
        cut_off: dict[str, int] = {}
        for p in problems:
            if p.kind in _UNINDEXED and p.channel is not None and p.lost_messages:
                cut_off[p.channel] = cut_off.get(p.channel, 0) + p.lost_messages
        damaged = bool(problems) or not rec.clean or rec.footer_damaged
        repaired_lost = rec.metadata.get(REPAIRED_LOST_KEY, "0")
        return RecordingInfo(
            paths=[str(p) for p in rec.paths],
            format_version=rec.header.format_version,
            recording_id=rec.header.recording_id,
            start_time_ns=start,
            end_time_ns=end,
            duration_s=(end - start) / 1e9,
            message_count=rec.message_count,
            chunk_count=sum(c.chunk_count for c in chans),
            file_bytes=sum(p.size for p in rec.parts),
            compression=rec.header.compression,
            compression_ratio=unc / comp if comp else 1.0,
            metadata=rec.metadata,
            nodes=dataflow_nodes(rec.dataflow_yaml),
            clean=rec.clean,
            intact=verify and not damaged and repaired_lost == "0",
            footer_damaged=rec.footer_damaged,
            end_marker_damaged=rec.end_marker_damaged,
            channels=[
                ChannelSummary(
                    c.name,
                    c.message_count,
                    c.rate_hz,
                    c.data_bytes,
                    c.compressed_bytes,
                    [str(t) for t in c.types],
                    c.drops,
                    c.first_log_time_ns,
                    c.last_log_time_ns,
                    c.message_count - readable[c.name] + cut_off.get(c.name, 0),
                    readable[c.name],
                )
                for c in chans
            ]
            + [  # a channel whose only chunks were cut off (or lost their channel record)
                ChannelSummary(name, 0, 0.0, 0, 0, [], 0, None, None, lost, 0)
                for name, lost in sorted(cut_off.items())
                if name not in rec.channels
            ],
            problems=[str(p) for p in problems],
            lost_messages=sum(p.lost_messages or 0 for p in problems),
            warnings=list(rec.warnings),
            readable_messages=sum(readable.values()),
            damage=[_damage(rec, p, start) for p in problems],
            lost_unknown=any(p.lost_messages is None for p in problems),
        )


_UNINDEXED = frozenset({"truncated", "no-channel"})


_LOG_TIME = re.compile(r"log time -?\d+\.\.-?\d+ ns")


def seconds_span(first_ns: int, last_ns: int, origin_ns: int) -> str:
    """``12.345-12.789 s``: log times (ns since the Unix epoch) as seconds after ``origin_ns``."""
    # + 0.0: a chunk starting a hair before the origin prints 0.000, not -0.000
    a, b = (round((t - origin_ns) / 1e9, 3) + 0.0 for t in (first_ns, last_ns))
    return f"{a:.3f} s" if first_ns == last_ns else f"{a:.3f}-{b:.3f} s"


def problem_text(rec: Recording, p: Problem) -> str:
    """What ``p`` says, its log times in seconds from the start of ``rec`` (as ``dora info``
    prints them) rather than in epoch nanoseconds."""
    return _timed(rec, p, rec.start_time_ns)[0]


def _timed(rec: Recording, p: Problem, origin_ns: int) -> tuple[str, int | None, int | None]:
    """``p``'s message with the log times of its chunk (when the index has it) in seconds from
    ``origin_ns`` rather than in epoch nanoseconds, and those log times."""
    entry = next(
        (
            e
            for part in rec.parts
            if part.path == p.path
            for e in part.chunks
            if e.offset == p.offset
        ),
        None,
    )
    if entry is None:
        return p.message, None, None
    first, last = entry.meta.start_log_time_ns, entry.meta.end_log_time_ns
    span = seconds_span(first, last, origin_ns)
    text, n = _LOG_TIME.subn(f"at {span}", p.message)
    return (text if n else f"{text} (at {span})"), first, last


def _damage(rec: Recording, p: Problem, origin_ns: int) -> Damage:
    """``p`` as ``dora info`` lists it: its chunk's log times, and a text that gives them in
    seconds from ``origin_ns``."""
    text, first, last = _timed(rec, p, origin_ns)
    return Damage(
        str(p.path),
        p.offset,
        p.kind,
        p.lost_messages,
        p.lost_bytes,
        p.channel,
        first,
        last,
        f"{p.path}@{p.offset}: {text}",
    )


def damage_warning(rec: Recording) -> str | None:
    """One line for an export of ``rec`` (after all its chunks were read): how many messages
    could not be read, and how to see and fix the damage; ``None`` when there is none."""
    problems = rec.problems
    if not problems:
        return None
    known = sum(p.lost_messages or 0 for p in problems)
    unknown = any(p.lost_messages is None for p in problems)
    count = f"{known} message(s)"
    if unknown:
        count = f"at least {count}" if known else "an unknown number of messages"
    files = list(dict.fromkeys(str(p.path) for p in problems))
    damaged = f"{files[0]} is" if len(files) == 1 else f"{', '.join(files)} are"
    fix = files[0] if len(files) == 1 else "FILE"
    return (
        f"{damaged} damaged: {count} could not be read and are not in the export; "
        f"`dora info {rec.paths[0]}` lists what was lost, `dora record repair {fix}` rewrites "
        "a damaged file with a fresh index, keeping what is readable"
    )
