"""Stream writer layer: appends frames to one ``.dora`` file and keeps its index for the footer;
when an output file may replace an existing one (:func:`check_output`, :func:`replacing`)."""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dora_replay._index import ChannelDef, ChunkEntry, Footer, Header
from dora_replay._records import (
    MAGIC,
    OP_CHANNEL,
    OP_CHUNK,
    OP_DROPS,
    OP_FOOTER,
    OP_HEADER,
    ChunkMeta,
    encode_frame_parts,
    encode_tail,
    frame_size,
    pack,
)
from dora_replay.errors import OutputRefusedError

WRITEBACK_WINDOW_BYTES = 64 << 20
"""Every this many bytes written, a recording starts their disk write and drops the earlier
windows that are on disk from the page cache (see :meth:`PartSink._write_back`)."""

_SFR_WRITE = 2  # SYNC_FILE_RANGE_WRITE: start writeback, do not wait


def check_output(
    path: str | os.PathLike[str],
    overwrite: bool,
    *,
    reading: Iterable[str | os.PathLike[str]] = (),
    folder: bool = False,
) -> None:
    """Refuse to write ``path`` where that would silently destroy something: an existing file
    (unless ``overwrite``; for a ``folder`` output, an existing folder that is not empty), or
    one of the files being read (``reading``; even with ``overwrite``). Raises
    ``OutputRefusedError`` (a ``RecordingError``) with the fix; its ``output`` is the refused
    path."""
    out = Path(path)
    for src in reading:
        if out.exists() and Path(src).exists() and os.path.samefile(out, src):
            raise OutputRefusedError(
                out, "is the file being read; write the output to another name"
            )
    if not out.parent.is_dir():  # a file or a folder to create: where it goes must exist
        raise OutputRefusedError(out, f"cannot be written: folder {out.parent} does not exist")
    if folder:
        if out.exists() and not out.is_dir():
            raise OutputRefusedError(out, "is a file; name a folder for the output")
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise OutputRefusedError(
                out,
                "already exists and is not empty; choose another folder or pass --overwrite "
                "to replace what this export writes there",
            )
        return
    if out.is_dir():
        raise OutputRefusedError(out, "is a folder; name a file for the output")
    why = unwritable(out.parent)
    if why is not None:
        raise OutputRefusedError(
            out, f"cannot be written: no file can be created in {out.parent} ({why})"
        )
    if out.exists() and not overwrite:
        raise OutputRefusedError(
            out, "already exists; choose another name or pass --overwrite to replace it"
        )


def unwritable(folder: Path) -> str | None:
    """Why no new file can be created in ``folder``, or None when one can. Permissions,
    read-only mounts, immutable folders and special file systems (``/proc``) answer only to an
    attempt, so a probe file is created and removed."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".dora-probe-")
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(probe)
    return None


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; it replaces ``path`` (atomically) when
    the block succeeds and is deleted when it fails, so a failed write neither leaves half a
    file at ``path`` nor destroys the file that was there."""
    final = Path(path)
    tmp = final.with_name(final.name + ".partial")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)


def _load_sync_file_range() -> Any:
    """libc's ``sync_file_range`` (Linux), or ``None`` where there is none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()


def _write_all(fd: int, parts: list[Any]) -> int:
    """Write every part (bytes-like) in order; returns the byte count. Handles short writes."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    total = sum(len(v) for v in views)
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]
    return total


class PartSink:
    """Appends frames to a new file; the file is readable by a fresh reader after every call.

    Frames go straight to the OS with ``writev`` (no user-space buffering), so a killed process
    loses nothing that a call returned for; :meth:`sync` adds ``fsync`` for power loss. The file's
    pages do not pile up in the page cache: every :data:`WRITEBACK_WINDOW_BYTES` the sink starts
    the disk write of the newest window and drops the windows before it from the cache once they
    are on disk, so a long recording neither evicts the robot's other cached files nor piles up
    dirty pages until the kernel throttles it, and the kernel reuses the same pages instead of
    finding fresh memory.
    """

    def __init__(self, path: Path, header: Header) -> None:
        self.path = Path(path)
        self.header = header
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.offset = 0
        self.channels: list[ChannelDef] = []
        self.chunks: list[ChunkEntry] = []
        self.message_count = 0
        self.last_log_time_ns = header.start_time_ns
        self._wb_started = 0  # writeback was started for [.., _wb_started)
        self._wb_dropped = 0  # [0, _wb_dropped) is on disk and out of the page cache
        self._write([MAGIC, *encode_frame_parts(OP_HEADER, header.encode(), b"")])

    def _write(self, parts: list[Any]) -> None:
        self.offset += _write_all(self._fd, parts)
        if self.offset - self._wb_started >= WRITEBACK_WINDOW_BYTES:
            self._write_back()

    def _write_back(self) -> None:
        """Start writing the newest window to disk and drop from the page cache what earlier
        windows left there once written (pages still being written stay; the next call retries
        them). Never waits for the disk. Raises ``OSError`` if the disk reports an error."""
        sfr = _sync_file_range
        if sfr is None:
            return
        fd, new, old = self._fd, self._wb_started, self._wb_dropped
        if sfr(fd, new, self.offset - new, _SFR_WRITE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(self.path))
        if new > old:
            lo = max(0, old - WRITEBACK_WINDOW_BYTES)
            os.posix_fadvise(fd, lo, new - lo, os.POSIX_FADV_DONTNEED)
            self._wb_dropped = new
        self._wb_started = self.offset

    def add_channel(self, channel: ChannelDef) -> None:
        """Write a CHANNEL frame (before the first chunk that uses it)."""
        self._write(encode_frame_parts(OP_CHANNEL, channel.encode_meta(), channel.schema))
        self.channels.append(channel)

    def add_chunk(self, meta: ChunkMeta, body: Any) -> ChunkEntry:
        """Write a CHUNK frame with a compressed ``body``; returns its index entry."""
        raw_meta = meta.encode()
        entry = ChunkEntry(self.offset, frame_size(len(raw_meta), len(body)), meta, len(body))
        self._write(encode_frame_parts(OP_CHUNK, raw_meta, body))
        self._note(entry)
        return entry

    def add_raw_chunk(self, frame: bytes, meta: ChunkMeta, compressed_size: int) -> ChunkEntry:
        """Copy an already-verified CHUNK frame verbatim (used by repair)."""
        entry = ChunkEntry(self.offset, len(frame), meta, compressed_size)
        self._write([frame])
        self._note(entry)
        return entry

    def _note(self, entry: ChunkEntry) -> None:
        self.chunks.append(entry)
        self.message_count += entry.meta.message_count
        self.last_log_time_ns = max(self.last_log_time_ns, entry.meta.end_log_time_ns)

    def add_drops(self, drops: dict[str, int]) -> None:
        """Write a DROPS frame with the running totals per channel (the last one wins)."""
        self._write(encode_frame_parts(OP_DROPS, pack({"drops": drops}), b""))

    def sync(self) -> None:
        """``fsync`` the file: what was written survives a power cut."""
        os.fsync(self._fd)

    def finish(self, drops: dict[str, int], end_time_ns: int, fsync: bool = True) -> None:
        """Write the FOOTER frame and the tail, then close the file."""
        footer = Footer(self.channels, self.chunks, dict(drops), end_time_ns, self.message_count)
        start = self.offset
        meta = pack({"chunk_count": len(self.chunks), "message_count": self.message_count})
        self._write([*encode_frame_parts(OP_FOOTER, meta, footer.encode()), encode_tail(start)])
        if fsync:
            self.sync()
        self.close()

    def close(self) -> None:
        """Close without a footer (readers then scan the file)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
