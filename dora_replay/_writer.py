"""Writer: ``write()`` only appends to a list; a writer thread builds, compresses and writes chunks."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from dora_replay._chunk import (
    Compressor,
    Piece,
    build_batch,
    chunk_schema,
    encode_batch,
    parse_compression,
)
from dora_replay._index import ChannelDef, Header
from dora_replay._pieces import FIELDS as _FIELDS
from dora_replay._pieces import make_pieces, pack_metadata, taken_text
from dora_replay._records import (
    MAGIC,
    OP_HEADER,
    PREFIX_SIZE,
    ChunkMeta,
    check_head,
    parse_prefix,
)
from dora_replay._sink import PartSink
from dora_replay.errors import RecordingError


def part_path(base: Path, part: int) -> Path:
    """Path of part ``part`` (1-based) of a split recording: ``run.dora`` -> ``run_001.dora``."""
    return base.with_name(f"{base.stem}_{part:03d}{base.suffix}")


def existing_parts(base: Path) -> list[Path]:
    """Parts of a split recording ``base`` already on disk (``run_001.dora``, ``run_002.dora``,
    ..., ``run_1000.dora``), in part order; not ``base`` itself. A file named like part *n* is
    left out when its header says it is something else (``run_2024.dora`` recorded unsplit)."""
    base = Path(base)
    pattern = re.compile(rf"{re.escape(base.stem)}_(\d{{3,}}){re.escape(base.suffix)}")
    try:
        names = os.listdir(base.parent)
    except OSError:
        return []
    found = sorted((int(m[1]), n) for n in names if (m := pattern.fullmatch(n)))
    return [
        base.with_name(name) for n, name in found if _header_part(base.with_name(name)) in (n, None)
    ]


def _header_part(path: Path) -> int | None:
    """``part`` from the header of ``path``; ``None`` if it has no readable header."""
    try:
        with path.open("rb") as f:
            head = f.read(len(MAGIC) + PREFIX_SIZE)
            pre = parse_prefix(head[len(MAGIC) :], len(MAGIC))
            if head[: len(MAGIC)] != MAGIC or pre is None or pre.opcode != OP_HEADER:
                return None
            rest = f.read(pre.meta_len + 4)
        if not check_head(head[len(MAGIC) :], rest):
            return None
        return Header.decode(rest[:-4]).part
    except (OSError, ValueError, TypeError):
        return None


def remove_recording(base: Path) -> list[Path]:
    """Delete ``base`` and every part of it that is on disk (see :func:`existing_parts`), so a
    new split recording does not share its name with parts of an older one; returns what was
    removed. Raises ``RecordingError`` naming a file that cannot be removed."""
    removed = []
    for path in [Path(base), *existing_parts(Path(base))]:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise RecordingError(
                f"cannot remove {path} of an earlier recording: {exc.strerror}"
            ) from None
        removed.append(path)
    return removed


@dataclass(slots=True)
class WriterStats:
    """Counters of a writer. ``bytes_in``: Arrow data bytes of the messages written;
    ``bytes_written``: file bytes (all parts); ``errors``: why messages were dropped, if any."""

    messages: int = 0
    bytes_in: int = 0
    bytes_written: int = 0
    chunks: int = 0
    pending: int = 0
    channels: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    parts: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Chan:
    name: str
    pending: list[Any]
    staged: list[Piece] = field(default_factory=list)
    staged_bytes: int = 0
    staged_since: float = 0.0
    avg_bytes: float = 0.0


@dataclass(slots=True)
class _Inflight:
    """A chunk being encoded; ``body`` is (or will be) ``(raw_size, compressed)``. Chunks are
    written to the file in emission order."""

    body: Future[Any] | Any
    name: str
    dtype: pa.DataType
    count: int
    start_ns: int
    end_ns: int
    data_bytes: int


def _encode(pieces: list[Piece], schema: pa.Schema, comp: Compressor) -> tuple[int, Any]:
    """(uncompressed size, compressed body) of a chunk; runs on the pool for large chunks."""
    raw = encode_batch(build_batch(pieces, schema))
    return raw.size, comp.compress(raw)


_MT_MIN_BYTES = 1 << 20
"""Chunks with at least this many data bytes are built and compressed on the thread pool."""


class Writer:
    """Records messages into a ``.dora`` file; see :func:`open_writer`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        dataflow_yaml: str,
        metadata: dict[str, str] | None = None,
        *,
        compression: str = "zstd",
        chunk_size_bytes: int = 4 << 20,
        flush_interval_s: float = 1.0,
        split_size_bytes: int | None = None,
        split_duration_s: float | None = None,
        fsync: bool = True,
        max_buffer_bytes: int | None = 512 << 20,
        compression_threads: int | None = None,
        start_time_ns: int | None = None,
    ) -> None:
        codec, level = parse_compression(compression)
        threads = compression_threads if compression_threads is not None else os.cpu_count() or 1
        self._comp = Compressor(codec, level)
        self._pool = ThreadPoolExecutor(threads, "dora-record-zstd") if threads > 1 else None
        self._max_inflight = threads + 1
        self._inflight: deque[_Inflight] = deque()
        self._base = Path(path)
        self._split = split_size_bytes is not None or split_duration_s is not None
        self._split_size = split_size_bytes
        self._split_ns = None if split_duration_s is None else int(split_duration_s * 1e9)
        self._chunk_size = max(1, int(chunk_size_bytes))
        self._flush_s = float(flush_interval_s)
        self._poll_s = min(0.05, self._flush_s / 10)
        self._flush_age_s = max(self._flush_s / 2, self._flush_s - 4 * self._poll_s - 0.05)
        self._fsync = fsync
        self._max_buffer = max_buffer_bytes
        self._header = Header(
            dataflow_yaml=dataflow_yaml,
            start_time_ns=time.time_ns() if start_time_ns is None else int(start_time_ns),
            start_monotonic_ns=time.monotonic_ns(),
            metadata={str(k): str(v) for k, v in (metadata or {}).items()},
            recording_id=uuid.uuid4().hex,
            part=1 if self._split else 0,
            compression=f"{codec}:{level}" if codec == "zstd" else codec,
        )
        self._converted = start_time_ns is not None
        self._pending: dict[str, list[Any]] = {}
        self._chans: dict[str, _Chan] = {}
        self._versions: dict[str, list[pa.DataType]] = {}
        self._schemas: dict[pa.DataType, tuple[pa.Schema, bytes]] = {}
        self._part_ids: dict[tuple[str, int], int] = {}
        self._drops: dict[str, int] = {}
        self._drops_written: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stats = WriterStats()
        self._refuse = False
        self._closing = False
        self._error: BaseException | None = None
        self._part_start_ns: int | None = None
        self._last_sync = time.monotonic()
        self._dirty = False
        path0 = part_path(self._base, 1) if self._split else self._base
        try:
            self._sink = PartSink(path0, self._header)
        except OSError as exc:
            raise RecordingError(f"cannot create recording {path0}: {exc.strerror}") from None
        self._stats.parts.append(path0)
        self._bytes_done = 0
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dora-record-writer", daemon=True)
        self._thread.start()

    def _end_time_ns(self) -> int:
        """When the recording (part) ends: now, or for a file converted from another one
        (opened with ``start_time_ns``), its last message's log time."""
        return self._sink.last_log_time_ns if self._converted else time.time_ns()

    # -- caller side: cheap, never touches the disk ------------------------------------------

    def write(
        self,
        channel: str,
        data: pa.Array,
        *,
        log_time_ns: int,
        publish_time_ns: int,
        seq: int,
        cause: str | None = None,
        metadata: dict[str, Any] | None = None,
        taken: dict[str, int] | None = None,
        took: list[tuple[str, int]] | None = None,
    ) -> None:
        """Queue one message of ``channel`` (``node/output``).

        ``data``: the Arrow array that was sent (bytes, numpy arrays and lists are converted as the
        node API does); ``log_time_ns``: ns since the Unix epoch when recorded;
        ``publish_time_ns``: ns since the epoch when sent; ``cause``: ``source#seq`` of the input
        the sender was handling; ``taken``: ``{source: seq}``, the last message the sender had
        taken on each of its inputs; ``took``: ``[(source, seq), ...]``, what it had taken since
        its previous recorded output, in order. Never blocks on disk or compression;
        when the writer falls more than ``max_buffer_bytes`` behind, the message is counted as a
        drop instead. Raises :class:`RecordingError` after ``close()`` or a write failure.
        """
        pending = self._pending.get(channel)
        if pending is None:
            pending = self._open_channel(channel)
        if self._refuse:
            self._refused(channel)
            return
        if metadata is not None:
            metadata = pack_metadata(metadata)  # type: ignore[assignment]
        pending.extend(
            (data, log_time_ns, publish_time_ns, seq, cause, metadata, taken_text(taken, took))
        )

    def write_message(self, m: Any) -> None:
        """Queue a message read from a recording (a ``Message``) as it was recorded."""
        self.write(
            m.channel,
            m.data,
            log_time_ns=m.log_time_ns,
            publish_time_ns=m.publish_time_ns,
            seq=m.seq,
            cause=m.cause,
            metadata=m.metadata or None,
            taken=m.taken,
            took=m.took,
        )

    def add_drops(self, channel: str, n: int) -> None:
        """Count ``n`` messages of ``channel`` the recorder could not keep (kept in statistics)."""
        with self._lock:
            self._drops[channel] = self._drops.get(channel, 0) + int(n)

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        s = self._stats
        with self._lock:
            drops = dict(self._drops)
        pending = sum(len(p) for p in list(self._pending.values())) // _FIELDS
        pending += sum(sum(x.count for x in c.staged) for c in list(self._chans.values()))
        pending += sum(c.count for c in list(self._inflight))
        return WriterStats(
            s.messages,
            s.bytes_in,
            self._bytes_done + self._sink.offset,
            s.chunks,
            pending,
            dict(s.channels),
            drops,
            list(s.parts),
            list(s.errors),
        )

    @property
    def paths(self) -> list[Path]:
        """Files written so far (one, or the parts of a split recording)."""
        return list(self._stats.parts)

    def close(self) -> None:
        """Write everything queued, the footer, and close. Raises :class:`RecordingError` if the
        writer thread failed (the file then still holds every chunk written before the failure)."""
        if not self._closing:
            self._closing = True
            self._refuse = True
            self._wake.set()
            self._thread.join()
        if self._error is not None:
            err, self._error = self._error, None
            raise RecordingError(f"recording {self._sink.path} failed: {err}") from err

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_channel(self, channel: str) -> list[Any]:
        if not isinstance(channel, str) or "/" not in channel:
            raise ValueError(f"channel {channel!r} must be 'node/output'")
        with self._lock:
            pending = self._pending.get(channel)
            if pending is None:
                pending = []
                self._chans[channel] = _Chan(channel, pending)
                self._pending[channel] = pending
        return pending

    def _refused(self, channel: str) -> None:
        if self._closing:
            raise RecordingError(f"recording {self._base} is closed; open a new writer")
        if self._error is not None:
            raise RecordingError(f"recording {self._base} failed: {self._error}")
        self.add_drops(channel, 1)

    # -- writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                closing = self._closing
                self._pump(final=closing)
                if closing:
                    break
                self._wake.wait(self._poll_s)
                self._wake.clear()
            with self._lock:
                drops = dict(self._drops)
            self._sink.finish(drops, self._end_time_ns(), fsync=self._fsync)
        except BaseException as exc:  # reported by close() and write()
            self._error = exc
            self._refuse = True
            self._sink.close()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    def _pump(self, final: bool) -> None:
        now = time.monotonic()
        for ch in list(self._chans.values()):
            self._drain(ch, now)
            if ch.staged and (final or now - ch.staged_since >= self._flush_age_s):
                self._emit(ch)
        self._reap(all_=True)
        with self._lock:
            drops = dict(self._drops)
        if drops != self._drops_written:
            self._sink.add_drops(drops)
            self._drops_written = drops
            self._dirty = True
        if self._fsync and self._dirty and now - self._last_sync >= self._flush_s:
            self._sink.sync()
            self._last_sync, self._dirty = now, False
        self._update_backlog()

    def _update_backlog(self) -> None:
        if self._max_buffer is None or self._closing:
            return
        backlog = sum(
            len(c.pending) // _FIELDS * c.avg_bytes + c.staged_bytes
            for c in list(self._chans.values())
        )
        if backlog > self._max_buffer:
            self._refuse = True
        elif backlog < self._max_buffer / 2 and self._error is None:
            self._refuse = False

    def _drain(self, ch: _Chan, now: float) -> None:
        pending = ch.pending
        while pending:
            room = self._chunk_size - ch.staged_bytes
            k = 1 if ch.avg_bytes <= 0 else max(1, int(room / ch.avg_bytes))
            take = min(len(pending) // _FIELDS, k) * _FIELDS
            items = pending[:take]
            del pending[:take]
            for piece in self._pieces(ch.name, items):
                if ch.staged and piece.data_type != ch.staged[0].data_type:
                    self._emit(ch)
                if not ch.staged:
                    ch.staged_since = now - self._poll_s
                ch.staged.append(piece)
                ch.staged_bytes += piece.nbytes
                per = piece.nbytes / piece.count
                ch.avg_bytes = per if ch.avg_bytes <= 0 else 0.7 * ch.avg_bytes + 0.3 * per
                if ch.staged_bytes >= self._chunk_size:
                    self._emit(ch)
            self._update_backlog()

    def _pieces(self, name: str, items: list[Any]) -> list[Piece]:
        pieces, bad = make_pieces(items)
        for n, why in bad:
            self._stats.errors.append(f"{name}: {why}")
            self.add_drops(name, n)
        return pieces

    def _emit(self, ch: _Chan) -> None:
        pieces, ch.staged, ch.staged_bytes = ch.staged, [], 0
        dtype = pieces[0].data_type
        schema = self._schema(dtype)[0]
        n = sum(p.count for p in pieces)
        start = min(int(p.log.min()) for p in pieces)
        end = max(int(p.log.max()) for p in pieces)
        data_bytes = sum(p.values.nbytes for p in pieces)
        if self._pool is not None and data_bytes >= _MT_MIN_BYTES:
            body: Any = self._pool.submit(_encode, pieces, schema, self._comp)
        else:
            body = _encode(pieces, schema, self._comp)
        self._inflight.append(_Inflight(body, ch.name, dtype, n, start, end, data_bytes))
        self._reap(wait=len(self._inflight) > self._max_inflight)

    def _reap(self, wait: bool = False, all_: bool = False) -> None:
        """Write finished chunks in order; wait for the oldest (``wait``) or for all (``all_``)."""
        q = self._inflight
        while q:
            head = q[0]
            if isinstance(head.body, Future):
                if not (wait or all_ or head.body.done()):
                    return
                head.body = head.body.result()
            q.popleft()
            wait = False
            self._write_chunk(head)

    def _write_chunk(self, c: _Inflight) -> None:
        cid = self._channel_id(c.name, c.dtype, self._schema(c.dtype)[1])
        raw_size, body = c.body
        meta = ChunkMeta(
            cid, c.count, c.start_ns, c.end_ns, self._comp.code, raw_size, c.data_bytes
        )
        self._sink.add_chunk(meta, body)
        self._dirty = True
        s = self._stats
        s.messages += c.count
        s.bytes_in += c.data_bytes
        s.chunks += 1
        s.channels[c.name] = s.channels.get(c.name, 0) + c.count
        if self._part_start_ns is None:
            self._part_start_ns = meta.start_log_time_ns
        self._maybe_split(meta.end_log_time_ns)

    def _schema(self, dtype: pa.DataType) -> tuple[pa.Schema, bytes]:
        got = self._schemas.get(dtype)
        if got is None:
            schema = chunk_schema(dtype)
            got = self._schemas[dtype] = (schema, schema.serialize().to_pybytes())
        return got

    def _channel_id(self, name: str, dtype: pa.DataType, schema_bytes: bytes) -> int:
        versions = self._versions.setdefault(name, [])
        try:
            version = versions.index(dtype) + 1
        except ValueError:
            versions.append(dtype)
            version = len(versions)
        cid = self._part_ids.get((name, version))
        if cid is None:
            cid = self._part_ids[(name, version)] = len(self._part_ids)
            self._sink.add_channel(ChannelDef(cid, name, version, schema_bytes))
        return cid

    def _maybe_split(self, last_ns: int) -> None:
        if not self._split:
            return
        big = self._split_size is not None and self._sink.offset >= self._split_size
        long = (
            self._split_ns is not None
            and self._part_start_ns is not None
            and last_ns - self._part_start_ns >= self._split_ns
        )
        if not (big or long):
            return
        with self._lock:
            drops = dict(self._drops)
        self._sink.finish(drops, self._end_time_ns(), fsync=self._fsync)
        self._bytes_done += self._sink.offset
        self._header.part += 1
        path = part_path(self._base, self._header.part)
        self._sink = PartSink(path, self._header)
        self._stats.parts.append(path)
        self._part_ids.clear()
        self._part_start_ns = None
        self._drops_written = {}


def open_writer(
    path: str | os.PathLike[str],
    dataflow_yaml: str,
    metadata: dict[str, str] | None = None,
    *,
    compression: str = "zstd",
    chunk_size_bytes: int = 4 << 20,
    flush_interval_s: float = 1.0,
    split_size_bytes: int | None = None,
    split_duration_s: float | None = None,
    fsync: bool = True,
    max_buffer_bytes: int | None = 512 << 20,
    compression_threads: int | None = None,
    start_time_ns: int | None = None,
) -> Writer:
    """Start recording to ``path``; the header is on disk when this returns.

    ``compression``: ``"zstd"`` (level 1), ``"zstd:LEVEL"``, ``"lz4"`` or ``"none"``;
    ``chunk_size_bytes``: uncompressed bytes per chunk (chunks are also cut at each flush); ``flush_interval_s``:
    queued messages are in the file, with their CRC, at most this long after ``write()``;
    ``split_size_bytes`` / ``split_duration_s``: start a new part (``run_001.dora``,
    ``run_002.dora``...) past this file size (bytes) or log-time span (s); ``fsync``: also fsync
    at most once per flush interval, so data survives a power cut; ``max_buffer_bytes``: how far
    (bytes) the writer may fall behind before ``write()`` counts drops instead (``None``: no
    limit); ``compression_threads``: threads compressing chunks of at least 1 MiB in parallel
    (default: CPU count; 1 compresses on the writer thread); ``start_time_ns``: the recording's
    start (ns since the epoch) when it is not now, for a file converted from another one.
    """
    return Writer(
        path,
        dataflow_yaml,
        metadata,
        compression=compression,
        chunk_size_bytes=chunk_size_bytes,
        flush_interval_s=flush_interval_s,
        split_size_bytes=split_size_bytes,
        split_duration_s=split_duration_s,
        fsync=fsync,
        max_buffer_bytes=max_buffer_bytes,
        compression_threads=compression_threads,
        start_time_ns=start_time_ns,
    )
