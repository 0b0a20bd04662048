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
    """What a repair kept and lost. ``lost_messages`` counts messages of chunks that were cut off
    or failed their CRC; ``unknown_loss`` is true when some damaged bytes held an unknown count."""

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
    intact: bool = False
    """Nothing to repair: the file was left as it is (a repair in place only)."""

    def summary(self) -> str:
        """One line for humans."""
        if self.intact:
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
        return (
            f"recovered {self.messages_recovered} message(s) in {self.chunks_recovered} chunk(s) "
            f"into {self.output}; lost {' and '.join(lost)}"
        )


def repair(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    overwrite: bool = False,
) -> RepairReport:
    """Scan ``path`` frame by frame, keep every intact chunk and write them with a fresh footer to
    ``output`` (default, or when ``output`` is ``path`` itself: replace ``path``). The result
    replaces its target atomically once complete. ``progress(done, total)`` is called with byte
    counts. Raises ``RecordingCorruptError`` when the file has no readable header, and
    ``RecordingError`` when ``output`` is another file that exists, unless ``overwrite``."""
    if output is not None and Path(output).exists() and os.path.samefile(output, path):
        output = None  # writing it directly would truncate the file being read
    if output is not None:
        check_output(output, overwrite)
    src = PartFile(path, force_scan=True)
    target = Path(output) if output is not None else src.path
    report = RepairReport(src.path, target)
    try:
        report.had_footer, indexed_whole = _footer_state(src)
        intact = [_intact(src.pread(e.size, e.offset)) for e in src.chunks]
        if output is None and not src.problems and all(intact) and indexed_whole:
            report.intact = True  # rewriting it would only stamp "repaired" on a good file
            report.chunks_recovered = len(src.chunks)
            report.messages_recovered = sum(e.meta.message_count for e in src.chunks)
            return report
        with replacing(target) as out:
            _copy(src, _marked(src, intact), intact, out, report, progress)
    finally:
        src.close()
    for p in src.problems:
        report.problems.append(p)
        report.lost_bytes += p.lost_bytes
        if p.lost_messages is None:
            report.unknown_loss = True
        elif p.lost_messages:
            report.lost_messages += p.lost_messages
            report.lost_chunks += 1
    return report


def _marked(src: PartFile, intact: list[bool]) -> Header:
    """``src``'s header with what the repair loses in its metadata, so a repaired file says so
    (``dora info``, and a replay notes it: a repaired golden checks only what survived):
    ``repaired`` (UTC date and a summary) and ``repaired_lost`` (messages lost, ``N+`` when
    damaged bytes held an unknown number more). ``intact``: per chunk, whether it checks out
    (the header is written before the chunks are copied, so they are checked first)."""
    bad = [e for e, ok in zip(src.chunks, intact, strict=True) if not ok]
    damaged = len(bad)
    lost = sum(e.meta.message_count for e in bad)
    lost += sum(p.lost_messages or 0 for p in src.problems)
    unknown = any(p.lost_messages is None for p in src.problems)
    cut = any(p.kind == "truncated" for p in src.problems)
    parts = ["cut off: what was recorded after the cut is lost"] if cut else []
    if lost:
        parts.append(f"{lost} message(s) lost")
    if damaged:
        parts.append(f"{damaged} chunk(s) failed their CRC")
    if unknown and not cut:
        parts.append("unreadable bytes held an unknown number more")
    what = "; ".join(parts) or "nothing lost (index rebuilt)"
    count = f"{lost}+" if unknown or cut else str(lost)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    metadata = {**src.header.metadata, REPAIRED_KEY: f"{now}: {what}", REPAIRED_LOST_KEY: count}
    return dataclasses.replace(src.header, metadata=metadata)


def _copy(
    src: PartFile,
    header: Header,
    intact: list[bool],
    out: Path,
    report: RepairReport,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Copy the chunks of ``src`` flagged ``intact`` into a new file ``out`` with a fresh
    footer."""
    sink = PartSink(out, header)
    try:
        for ch in sorted(src.channels.values(), key=lambda c: c.id):
            sink.add_channel(ch)
        total = len(src.chunks)
        for i, (entry, ok) in enumerate(zip(src.chunks, intact, strict=True)):
            if ok:
                frame = src.pread(entry.size, entry.offset)
                sink.add_raw_chunk(frame, entry.meta, entry.compressed_size)
                report.messages_recovered += entry.meta.message_count
                report.chunks_recovered += 1
            else:
                src.read_chunk(entry, _name(src, entry.meta.channel_id))  # records problem
            if progress is not None:
                progress(i + 1, total)
        if src.drops:
            sink.add_drops(src.drops)
        sink.finish(src.drops, src.end_time_ns or sink.last_log_time_ns)
    except BaseException:
        sink.close()
        raise


def _footer_state(src: PartFile) -> tuple[bool, bool]:
    """For ``src`` (opened scanning): whether the file has a footer, and whether that footer is
    sound and indexes every chunk the scan found. The file is opened once more, by its index."""
    if not src.size:
        return False, False
    indexed = PartFile(src.path)
    try:
        whole = (
            indexed.has_footer
            and not indexed.footer_damaged
            and not indexed.problems
            and len(indexed.chunks) == len(src.chunks)
        )
        return indexed.has_footer, whole
    finally:
        indexed.close()


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
