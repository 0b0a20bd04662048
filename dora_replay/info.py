"""``dora info``: what a recording holds, for humans (rich table in the CLI) and machines (JSON)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from dora_replay._recording import Recording
from dora_replay._recording import open as open_recording


@dataclass(slots=True)
class ChannelSummary:
    """Per-channel statistics; sizes in bytes, rate in Hz, times in ns since the Unix epoch."""

    name: str
    message_count: int
    rate_hz: float
    data_bytes: int
    compressed_bytes: int
    arrow_types: list[str]
    drops: int
    first_log_time_ns: int | None
    last_log_time_ns: int | None


@dataclass(slots=True)
class RecordingInfo:
    """Summary of a recording. ``compression_ratio`` = uncompressed chunk bytes / compressed;
    ``warnings``: parts left out because they belong to another recording (see
    :func:`open_checked`)."""

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
    channels: list[ChannelSummary] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lost_messages: int = 0
    warnings: list[str] = field(default_factory=list)

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


def open_checked(source: Source) -> tuple[Recording, list[str]]:
    """Open a recording like ``dora_replay.open`` (close it when done), reading only the files
    that belong to one recording; returns it and a warning for each file left out.

    Parts are found by name (``run_001.dora``, ``run_002.dora``...), so a part left behind by an
    earlier recording under the same name would be read as part of this one: the first part's
    ``recording_id`` decides which files belong. Raises ``RecordingError`` as ``open`` does."""
    rec = open_recording(source)
    rid = rec.header.recording_id
    odd = [p for p in rec.parts if p.header.recording_id != rid]
    if not odd:
        return rec, list(rec.warnings)
    first = rec.parts[0].path
    keep = [p.path for p in rec.parts if p.header.recording_id == rid]
    others: dict[str, list[str]] = {}
    for p in odd:
        others.setdefault(p.header.recording_id, []).append(str(p.path))
    warnings = [
        f"left out {', '.join(paths)}: from another recording (recording_id {other or '(none)'}, "
        f"not {rid or '(none)'} as in {first}); delete "
        f"{'it' if len(paths) == 1 else 'them'}, or record with --overwrite, which replaces "
        "every part"
        for other, paths in others.items()
    ]
    rec.close()
    return Recording(keep), warnings


def recording_info(source: Source, verify: bool = True) -> RecordingInfo:
    """Summarize a recording; ``verify`` reads every chunk to check CRCs and report losses.
    Parts of another recording found beside it are left out and named in ``warnings``."""
    rec, warnings = open_checked(source)
    with rec:
        if verify:
            rec.verify()
        chans = sorted(rec.channels.values(), key=lambda c: c.name)
        comp = sum(c.compressed_bytes for c in chans)
        unc = sum(c.uncompressed_bytes for c in chans)
        first = [c.first_log_time_ns for c in chans if c.first_log_time_ns is not None]
        last = [c.last_log_time_ns for c in chans if c.last_log_time_ns is not None]
        start = min(first) if first else rec.start_time_ns
        end = max(last) if last else start
        problems = rec.problems
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
                )
                for c in chans
            ],
            problems=[str(p) for p in problems],
            lost_messages=sum(p.lost_messages or 0 for p in problems),
            warnings=warnings,
        )
