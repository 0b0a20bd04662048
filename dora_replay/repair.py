"""``dora record repair``: rewrite a crashed or damaged recording with a fresh index."""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dora_replay._index import REPAIRED_KEY, REPAIRED_LOST_KEY, Header
from dora_replay._reader import PartFile, Problem
from dora_replay._records import OP_CHUNK, check_body, check_head, parse_prefix
from dora_replay._sink import PartSink, check_output, replacing


@dataclass(slots=True)
class RepairReport:
    """What a repair kept and lost. ``lost_messages`` counts messages of chunks that were cut off,
    failed their CRC or lost their channel record with no intact copy left; ``unknown_loss`` is
    true when some damaged bytes held an unknown count; ``restored``: damage that lost no
    message (a damaged CHANNEL record, unreadable bytes where the footer index lists no chunk);
    ``restored_channels``: channels whose damaged record was rebuilt from an intact copy;
    ``had_footer``: the file had an intact footer (its index then tells what damaged bytes
    held)."""

    source: Path
    output: Path
    messages_recovered: int = 0
    chunks_recovered: int = 0
    lost_messages: int = 0
    lost_chunks: int = 0
    lost_bytes: int = 0
    unknown_loss: bool = False
    had_footer: bool = False
    problems: list[Problem] = field(default_factory=list)
    restored: list[Problem] = field(default_factory=list)
    restored_channels: list[str] = field(default_factory=list)
    intact: bool = False
    """Nothing to repair: the file was left as it is (a repair in place only)."""
    earlier_loss: str = ""
    """For a file left as it is: ``repaired_lost`` of the earlier repair that wrote it, when
    that repair lost messages (``""`` otherwise)."""

    def summary(self) -> str:
        """One line for humans."""
        if self.intact:
            if self.earlier_loss:
                return (
                    f"{self.source} needs no repair (every chunk checks out and its index is in "
                    f"place), but it is not whole: an earlier repair lost {self.earlier_loss} "
                    f"message(s) ({REPAIRED_LOST_KEY}={self.earlier_loss}); the file is left "
                    "as it is"
                )
            return (
                f"{self.source} is intact (every chunk checks out and its index is in place): "
                "nothing to repair, the file is left as it is"
            )
        lost = []
        if any(p.kind == "truncated" for p in self.problems):
            lost.append("what was recorded after the cut (the file was cut off)")
        if self.lost_messages or not lost:
            lost.append(f"{self.lost_messages} message(s) in {self.lost_chunks} damaged chunk(s)")
        garbage = [p for p in self.problems if p.lost_messages is None and p.kind != "truncated"]
        if garbage:
            size = sum(p.lost_bytes for p in garbage)
            lost.append(f"{size} unreadable byte(s) holding an unknown number of messages")
        orphaned = sorted({p.channel or "?" for p in self.problems if p.kind == "no-channel"})
        if orphaned:
            lost[-1] += (
                f" (the channel record of {', '.join(orphaned)} is lost and no intact copy is left)"
            )
        text = (
            f"recovered {self.messages_recovered} message(s) in {self.chunks_recovered} chunk(s) "
            f"into {self.output}; lost {' and '.join(lost)}"
        )
        if self.restored_channels:
            text += (
                f"; restored the damaged channel record of {', '.join(self.restored_channels)} "
                "from an intact copy (no message lost)"
            )
        harmless = sum(p.lost_bytes for p in self.restored if p.kind == "garbage" and not p.channel)
        if harmless:
            text += f"; skipped {harmless} unreadable byte(s) where the index lists no chunk"
        return text


def repair(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    overwrite: bool = False,
) -> RepairReport:
    """Scan ``path`` frame by frame, keep every intact chunk and write them with a fresh footer to
    ``output`` (default, or when ``output`` is ``path`` itself: replace ``path``). The result
    replaces its target atomically once complete. A damaged CHANNEL record is rebuilt from the
    footer's copy, or from the schema in its chunks; chunks whose channel cannot be rebuilt are
    counted as lost. ``progress(done, total)`` is called with byte counts. Raises
    ``RecordingCorruptError`` when the file has no readable header, and ``RecordingError`` when
    ``output`` is another file that exists, unless ``overwrite``."""
    if output is not None and Path(output).exists() and os.path.samefile(output, path):
        output = None  # writing it directly would truncate the file being read
    if output is not None:
        check_output(output, overwrite)
    src = PartFile(path, force_scan=True)
    target = Path(output) if output is not None else src.path
    report = RepairReport(src.path, target)
    try:
        report.had_footer = src.footer is not None
        keep = [
            e.meta.channel_id in src.channels and _intact(src.pread(e.size, e.offset))
            for e in src.chunks
        ]
        whole = not src.problems and not src.record_damage and all(keep) and _indexed(src)
        if output is None and whole:
            report.intact = True  # rewriting it would only stamp "repaired" on a good file
            report.chunks_recovered = len(src.chunks)
            report.messages_recovered = sum(e.meta.message_count for e in src.chunks)
            earlier = src.header.metadata.get(REPAIRED_LOST_KEY, "0")
            report.earlier_loss = "" if earlier == "0" else earlier
            return report
        _lose(src, keep)
        with replacing(target) as out:
            _copy(src, _marked(src), keep, out, report, progress)
    finally:
        src.close()
    report.restored = list(src.record_damage)
    report.restored_channels = sorted(src.restored_channels)
    for p in src.problems:
        report.problems.append(p)
        report.lost_bytes += p.lost_bytes
        if p.lost_messages is None:
            report.unknown_loss = True
        elif p.lost_messages:
            report.lost_messages += p.lost_messages
            report.lost_chunks += 1
    return report


def _lose(src: PartFile, keep: list[bool]) -> None:
    """A problem in ``src.problems`` for every chunk that is not kept: it fails its CRC, or
    its channel record is lost with no intact copy left."""
    for entry, ok in zip(src.chunks, keep, strict=True):
        if ok:
            continue
        m = entry.meta
        if m.channel_id in src.channels:
            src.read_chunk(entry, _name(src, m.channel_id))  # records the CRC problem
            continue
        name = src.lost_channel_names.get(m.channel_id)
        src.problems.append(
            Problem(
                src.path,
                entry.offset,
                "no-channel",
                f"chunk of {name or f'channel #{m.channel_id}'} ({m.message_count} messages, "
                f"log time {m.start_log_time_ns}..{m.end_log_time_ns} ns) skipped: its "
                "channel record is lost and no intact copy is left",
                m.message_count,
                entry.size,
                name,
            )
        )


def _marked(src: PartFile) -> Header:
    """``src``'s header with what the repair loses in its metadata, so a repaired file says so
    (``dora info``, and a replay notes it: a repaired golden checks only what survived):
    ``repaired`` (UTC date and a summary) and ``repaired_lost`` (messages lost, ``N+`` when
    damaged bytes held an unknown number more). Every loss is in ``src.problems`` by now (the
    header is written before the chunks are copied)."""
    problems = src.problems
    lost = sum(p.lost_messages or 0 for p in problems)
    damaged = sum(p.kind == "crc" for p in problems)
    orphaned = sum(p.kind == "no-channel" for p in problems)
    unknown = any(p.lost_messages is None for p in problems)
    cut = any(p.kind == "truncated" for p in problems)
    parts = ["cut off: what was recorded after the cut is lost"] if cut else []
    if lost:
        parts.append(f"{lost} message(s) lost")
    if damaged:
        parts.append(f"{damaged} chunk(s) failed their CRC")
    if orphaned:
        parts.append(f"{orphaned} chunk(s) lost their channel record")
    if unknown and not cut:
        parts.append("unreadable bytes held an unknown number more")
    what = "; ".join(parts) or "nothing lost (index rebuilt)"
    if src.restored_channels:
        names = ", ".join(sorted(src.restored_channels))
        what += f"; the damaged channel record of {names} restored from an intact copy"
    count = f"{lost}+" if unknown or cut else str(lost)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    metadata = {**src.header.metadata, REPAIRED_KEY: f"{now}: {what}", REPAIRED_LOST_KEY: count}
    return dataclasses.replace(src.header, metadata=metadata)


def _copy(
    src: PartFile,
    header: Header,
    keep: list[bool],
    out: Path,
    report: RepairReport,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Copy the chunks of ``src`` flagged in ``keep`` into a new file ``out`` with a fresh
    footer."""
    sink = PartSink(out, header)
    try:
        for ch in sorted(src.channels.values(), key=lambda c: c.id):
            sink.add_channel(ch)
        total = len(src.chunks)
        for i, (entry, ok) in enumerate(zip(src.chunks, keep, strict=True)):
            if ok:
                frame = src.pread(entry.size, entry.offset)
                sink.add_raw_chunk(frame, entry.meta, entry.compressed_size)
                report.messages_recovered += entry.meta.message_count
                report.chunks_recovered += 1
            if progress is not None:
                progress(i + 1, total)
        if src.drops:
            sink.add_drops(src.drops)
        sink.finish(src.drops, src.end_time_ns or sink.last_log_time_ns)
    except BaseException:
        sink.close()
        raise


def _indexed(src: PartFile) -> bool:
    """Whether ``src`` (opened scanning) ends with an intact footer and end marker whose index
    lists exactly the chunks and channels the scan found."""
    footer = src.footer
    if footer is None or src.footer_damaged:
        return False
    listed = [(e.offset, e.meta) for e in footer.chunks]
    return listed == [(e.offset, e.meta) for e in src.chunks] and {
        c.id for c in footer.channels
    } == set(src.channels)


def _intact(frame: bytes) -> bool:
    pre = parse_prefix(frame, 0)
    if pre is None or pre.opcode != OP_CHUNK or pre.size != len(frame):
        return False
    head_end = 20 + pre.meta_len + 4
    return check_head(frame[:20], frame[20:head_end]) and check_body(
        memoryview(frame)[head_end:-4], frame[-4:]
    )


def _name(src: PartFile, channel_id: int) -> str:
    ch = src.channels.get(channel_id)
    return ch.name if ch else f"channel #{channel_id}"
