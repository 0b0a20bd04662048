"""Indexed reader: a recording (one file or split parts) as channels and time-ordered messages."""

from __future__ import annotations

import glob as _glob
import heapq
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from dora_replay._chunk import data_type_of, decode_batch, decompress
from dora_replay._index import ChunkEntry, Header
from dora_replay._pieces import parse_taken
from dora_replay._reader import PartFile, Problem
from dora_replay._records import unpack
from dora_replay._writer import part_path
from dora_replay.errors import RecordingError, RecordingNotFoundError


class Message(NamedTuple):
    """One recorded message. Times in ns since the Unix epoch; ``data`` is the array that was sent;
    ``metadata`` is ``{}`` when none was sent; ``taken``: ``{source: seq}``, the last message the
    sender had taken on each of its inputs when it sent this one, ``took`` what it had taken
    since its previous recorded output, in order, as ``(source, seq)`` (``None``: not
    recorded)."""

    channel: str
    data: pa.Array
    log_time_ns: int
    publish_time_ns: int
    seq: int
    cause: str | None
    metadata: dict[str, Any]
    taken: dict[str, int] | None = None
    took: list[tuple[str, int]] | None = None


@dataclass(slots=True)
class ChannelInfo:
    """Statistics of one channel. ``types``: its Arrow data types in order of appearance (more
    than one when the type changed); byte counts are data, compressed chunk and IPC sizes."""

    name: str
    types: list[pa.DataType] = field(default_factory=list)
    message_count: int = 0
    chunk_count: int = 0
    data_bytes: int = 0
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    first_log_time_ns: int | None = None
    last_log_time_ns: int | None = None
    drops: int = 0

    @property
    def type(self) -> pa.DataType | None:
        """The first Arrow data type of the channel."""
        return self.types[0] if self.types else None

    @property
    def rate_hz(self) -> float:
        """Mean message rate between the first and last message (Hz); 0 below two messages."""
        if self.message_count < 2 or self.first_log_time_ns is None:
            return 0.0
        span = (self.last_log_time_ns or 0) - self.first_log_time_ns
        return (self.message_count - 1) / (span / 1e9) if span > 0 else 0.0


@dataclass(slots=True)
class _ChunkRef:
    part: PartFile
    entry: ChunkEntry
    name: str
    version: int
    schema: pa.Schema
    order: int

    @property
    def start(self) -> int:
        return self.entry.meta.start_log_time_ns

    @property
    def end(self) -> int:
        return self.entry.meta.end_log_time_ns


class Recording:
    """A readable recording; use :func:`open`. ``bytes_read`` counts bytes read from disk."""

    def __init__(self, paths: list[Path]) -> None:
        self.parts: list[PartFile] = []
        try:
            for p in paths:
                self.parts.append(PartFile(p))
        except BaseException:
            self.close()
            raise
        self.header: Header = self.parts[0].header
        self._extra_problems: list[Problem] = []
        #: files given or found beside this recording that were not read (parts of another one)
        self.warnings: list[str] = self._leave_out_other_recordings()
        self.channels: dict[str, ChannelInfo] = {}
        self._refs: list[_ChunkRef] = []
        self._index()

    def _leave_out_other_recordings(self) -> list[str]:
        """Close and drop the parts whose ``recording_id`` differs from the first part's (parts
        are found by name, so a part left by an earlier recording under the same name would
        otherwise read as this one's tail); a warning per other recording."""
        rid = self.header.recording_id
        others: dict[str, list[str]] = {}
        for part in [p for p in self.parts if p.header.recording_id != rid]:
            others.setdefault(part.header.recording_id, []).append(str(part.path))
            part.close()
            self.parts.remove(part)
        first = self.parts[0].path
        return [
            f"left out {', '.join(files)}: from another recording (recording_id "
            f"{other or '(none)'}, not {rid or '(none)'} as in {first}); delete "
            f"{'it' if len(files) == 1 else 'them'}, or record with --overwrite, which replaces "
            "every part"
            for other, files in others.items()
        ]

    @property
    def paths(self) -> list[Path]:
        return [p.path for p in self.parts]

    @property
    def dataflow_yaml(self) -> str:
        return self.header.dataflow_yaml

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.header.metadata)

    @property
    def start_time_ns(self) -> int:
        """Wall clock when recording started (ns since the Unix epoch)."""
        return self.header.start_time_ns

    @property
    def end_time_ns(self) -> int:
        """Last log time, or the close time from the footer if later (ns since the epoch)."""
        ends = [r.end for r in self._refs] + [p.end_time_ns or 0 for p in self.parts]
        return max([self.start_time_ns, *ends])

    @property
    def clean(self) -> bool:
        """True when every part was closed with a footer (not recovered by scanning)."""
        return all(p.has_footer for p in self.parts)

    @property
    def footer_damaged(self) -> bool:
        """True when a part was closed with a footer, but the footer or the 16-byte end marker
        after it is damaged or cut off (the index was rebuilt by scanning)."""
        return any(p.footer_damaged for p in self.parts)

    @property
    def end_marker_damaged(self) -> bool:
        """True when a part's footer is intact but its 16-byte end marker is missing or
        damaged: nothing in the file is unaccounted for, and ``dora record repair`` rewrites
        the marker."""
        return any(p.end_marker_damaged for p in self.parts)

    @property
    def problems(self) -> list[Problem]:
        """Everything found damaged or lost so far (grows as chunks are read)."""
        return [q for p in self.parts for q in p.problems] + self._extra_problems

    @property
    def bytes_read(self) -> int:
        return sum(p.bytes_read for p in self.parts)

    @property
    def message_count(self) -> int:
        return sum(c.message_count for c in self.channels.values())

    def _index(self) -> None:
        schemas: dict[bytes, pa.Schema] = {}
        for part in self.parts:
            for name, n in part.drops.items():
                self._info(name).drops += n
            for entry in part.chunks:
                ch = part.channels.get(entry.meta.channel_id)
                if ch is None:
                    name = part.lost_channel_names.get(entry.meta.channel_id)
                    why = "its channel record is lost and no intact copy is left"
                    self._lost(part, entry, why, "no-channel", name)
                    continue
                schema = schemas.get(ch.schema)
                if schema is None:
                    try:
                        schema = schemas[ch.schema] = pa.ipc.read_schema(pa.py_buffer(ch.schema))
                    except (pa.ArrowInvalid, OSError):
                        self._lost(part, entry, "its channel schema is unreadable")
                        continue
                info = self._info(ch.name)
                dtype = data_type_of(schema)
                if dtype not in info.types:
                    info.types.append(dtype)
                version = info.types.index(dtype) + 1
                self._refs.append(_ChunkRef(part, entry, ch.name, version, schema, len(self._refs)))
                m = entry.meta
                info.message_count += m.message_count
                info.chunk_count += 1
                info.data_bytes += m.data_bytes
                info.compressed_bytes += entry.compressed_size
                info.uncompressed_bytes += m.uncompressed_size
                first, last = info.first_log_time_ns, info.last_log_time_ns
                info.first_log_time_ns = (
                    m.start_log_time_ns if first is None else min(first, m.start_log_time_ns)
                )
                info.last_log_time_ns = (
                    m.end_log_time_ns if last is None else max(last, m.end_log_time_ns)
                )
        self._refs.sort(key=lambda r: (r.start, r.order))

    def _info(self, name: str) -> ChannelInfo:
        info = self.channels.get(name)
        if info is None:
            info = self.channels[name] = ChannelInfo(name)
        return info

    def _lost(
        self,
        part: PartFile,
        entry: ChunkEntry,
        why: str,
        kind: str = "bad-chunk",
        channel: str | None = None,
    ) -> None:
        if any(p.offset == entry.offset and p.path == part.path for p in self._extra_problems):
            return  # read before: reported once
        n = entry.meta.message_count
        what = f"{channel} ({n} messages)" if channel else f"{n} messages"
        self._extra_problems.append(
            Problem(
                part.path,
                entry.offset,
                kind,
                f"chunk of {what} skipped: {why}",
                n,
                entry.size,
                channel,
            )
        )

    def _select(
        self, channels: str | Iterable[str] | None, start: int | None, end: int | None
    ) -> list[_ChunkRef]:
        names = (
            None if channels is None else {channels} if isinstance(channels, str) else set(channels)
        )
        if names is not None:
            unknown = names - set(self.channels)
            if unknown:
                raise RecordingError(
                    f"{self.paths[0]}: no channel {', '.join(sorted(unknown))}; "
                    f"recorded: {', '.join(sorted(self.channels)) or '(none)'}"
                )
        return [
            r
            for r in self._refs
            if (names is None or r.name in names)
            and (start is None or r.end >= start)
            and (end is None or r.start < end)
        ]

    def read_batch(self, ref: _ChunkRef) -> pa.RecordBatch | None:
        """Decode one chunk; ``None`` (and a problem) when it is damaged."""
        body = ref.part.read_chunk(ref.entry, ref.name)
        if body is None:
            return None
        m = ref.entry.meta
        try:
            return decode_batch(decompress(m.compression, body, m.uncompressed_size), ref.schema)
        except Exception as exc:  # zstd, lz4 and Arrow raise unrelated types
            self._lost(ref.part, ref.entry, f"it passes its CRC but cannot be decoded ({exc})")
            return None

    def iter_messages(
        self,
        channels: str | Iterable[str] | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> Iterator[Message]:
        """Messages in log-time order (ties: recording order). ``start`` (inclusive) and ``end``
        (exclusive) are log times in ns since the epoch. Reads only the chunks it needs."""
        refs = self._select(channels, start, end)
        return _merge(refs, lambda r: self._messages(r, start, end))

    def _messages(self, ref: _ChunkRef, start: int | None, end: int | None) -> Iterator[Message]:
        batch = self.read_batch(ref)
        if batch is None:
            return iter(())
        n = batch.num_rows
        log = batch.column(0).to_numpy()
        lo = 0 if start is None else int(np.searchsorted(log, start, "left"))
        hi = n if end is None else int(np.searchsorted(log, end, "left"))
        m = hi - lo
        if m <= 0:
            return iter(())
        if m < n:
            batch = batch.slice(lo, m)
            log = log[lo:hi]
        cause = batch.column(3)
        causes = repeat(None) if cause.null_count == m else cause.to_pylist()
        md = batch.column(4)
        if md.null_count == m:
            metas: Iterable[dict[str, Any]] = [{} for _ in range(m)]
        else:
            metas = [{} if b is None else unpack(b) for b in md.to_pylist()]
        taken_col = batch.column(6) if batch.num_columns > 6 else None  # older files: none
        if taken_col is None or taken_col.null_count == m:
            takens: Iterable[Any] = repeat(None)
            tooks: Iterable[Any] = repeat(None)
        else:
            pairs = [parse_taken(t) for t in taken_col.to_pylist()]
            takens = [p[0] for p in pairs]
            tooks = [p[1] for p in pairs]
        data = batch.column(5)
        offsets = data.offsets.to_numpy()
        values = data.values
        datas = map(values.slice, offsets[:-1].tolist(), np.diff(offsets).tolist())
        rows = zip(
            repeat(ref.name),
            datas,
            log.tolist(),
            batch.column(1).to_numpy().tolist(),
            batch.column(2).to_numpy().tolist(),
            causes,
            metas,
            takens,
            tooks,
        )
        return map(tuple.__new__, repeat(Message), rows)

    def to_table(self, channel: str, version: int | None = None) -> pa.Table:
        """All messages of ``channel`` as a table sorted by log time: ``log_time_ns``,
        ``publish_time_ns``, ``seq``, ``cause``, ``metadata`` (JSON text), ``data``
        (``large_list`` of the channel's type, one row per message) and, in files that have it,
        ``taken`` (see the format). Pass ``version`` (1-based)
        when the channel changed type during the recording."""
        refs = self._select(channel, None, None)
        info = self.channels[channel]
        if version is None:
            if len(info.types) > 1:
                listed = ", ".join(f"{i + 1}: {t}" for i, t in enumerate(info.types))
                raise RecordingError(
                    f"channel {channel} changed type during the recording; pass version= ({listed})"
                )
            version = 1
        refs = [r for r in refs if r.version == version]
        if not refs:
            raise RecordingError(f"channel {channel} has no version {version}")
        batches = [b for b in map(self.read_batch, refs) if b is not None]
        table = pa.Table.from_batches(batches, schema=refs[0].schema)
        log = table.column(0).to_numpy()
        if len(log) > 1 and bool(np.any(log[1:] < log[:-1])):
            table = table.sort_by("log_time_ns")
        return table.set_column(4, "metadata", _metadata_json(table.column(4)))

    def verify(self) -> list[Problem]:
        """Read every chunk and check its CRC and decoding, and check every CHANNEL record;
        returns all problems, damage that lost no message included (``lost_messages`` 0: a
        damaged record whose content an intact copy still holds)."""
        self.readable_counts()
        return self.problems

    def readable_counts(self) -> dict[str, int]:
        """Read (and check) every chunk and record, as :meth:`verify` does; the messages that
        could be read, per channel."""
        readable = dict.fromkeys(self.channels, 0)
        for ref in self._refs:
            batch = self.read_batch(ref)
            if batch is not None:
                readable[ref.name] += batch.num_rows
        for part in self.parts:
            part.check_records()
        return readable

    def close(self) -> None:
        for p in self.parts:
            p.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _metadata_json(col: pa.ChunkedArray) -> pa.Array:
    if col.null_count == len(col):
        return pa.nulls(len(col), pa.string())
    return pa.array(
        [None if b is None else json.dumps(unpack(b)) for b in col.to_pylist()], pa.string()
    )


def _merge(refs: list[_ChunkRef], open_chunk: Any) -> Iterator[Message]:
    """k-way merge by log time that opens a chunk only once no earlier message can be missed."""
    heap: list[tuple[int, int, Message, Iterator[Message]]] = []
    i, n = 0, len(refs)
    while i < n or heap:
        if not heap:
            ref = refs[i]
            i += 1
            if i >= n or refs[i].start > ref.end:
                yield from open_chunk(ref)
                continue
            _push(heap, ref.order, open_chunk(ref))
            continue
        while i < n and refs[i].start <= heap[0][0]:
            _push(heap, refs[i].order, open_chunk(refs[i]))
            i += 1
        _, order, msg, it = heapq.heappop(heap)
        yield msg
        _push(heap, order, it)


def _push(heap: list[Any], order: int, it: Iterator[Message]) -> None:
    msg = next(it, None)
    if msg is not None:
        heapq.heappush(heap, (msg.log_time_ns, order, msg, it))


_PART_RE = re.compile(r"^(?P<base>.*)_(?P<n>\d{3,})$")


def _paths_of(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if not isinstance(source, str | os.PathLike):
        paths = [Path(p) for p in source]
        if not paths:
            raise RecordingError("no recording files given")
        return paths
    text = os.fspath(source)
    if any(c in text for c in "*?["):
        found = sorted(Path(p) for p in _glob.glob(text))
        if not found:
            raise RecordingNotFoundError(f"{text}: no recording matches this pattern")
        return found
    path = Path(text)
    if not path.exists() and part_path(path, 1).exists():
        path = part_path(path, 1)
    return [path]


def _with_siblings(rec_paths: list[Path]) -> list[Path]:
    """For a single first part of a split recording, every part of it in order."""
    first = PartFile(rec_paths[0])
    try:
        if first.header.part != 1:
            return rec_paths
        m = _PART_RE.match(first.path.stem)
        if m is None:
            return rec_paths
        paths = [first.path]
        n = 2
        while True:
            nxt = first.path.with_name(f"{m['base']}_{n:03d}{first.path.suffix}")
            if not nxt.exists():
                return paths
            paths.append(nxt)
            n += 1
    finally:
        first.close()


def open(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Recording:  # noqa: A001
    """Open a recording for reading: a ``.dora`` file, the first part of a split recording (all
    parts are read, in order), ``run.dora`` when only ``run_001.dora``... exist, a glob pattern or
    a list of parts. Parts of another recording (another ``recording_id`` than the first part's)
    are left out and named in ``warnings``. Raises :class:`RecordingError` (or
    ``RecordingCorruptError`` when a file has no readable header); any later damage is skipped
    and listed in ``problems``."""
    paths = _paths_of(source)
    if len(paths) == 1:
        paths = _with_siblings(paths)
    return Recording(paths)
