"""A recording does not pile up in the page cache: checked with mincore(2) on the real file
(Linux, on a disk-backed file system)."""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import dora_replay
from dora_replay import _sink

pytestmark = pytest.mark.skipif(
    not hasattr(os, "posix_fadvise") or _sink._sync_file_range is None,
    reason="needs Linux sync_file_range and posix_fadvise",
)

PAGE = mmap.PAGESIZE
MIB = 1 << 20


def _fs_type(path: Path) -> str:
    """File system type of the mount holding ``path`` (from /proc/self/mountinfo)."""
    best, fstype = "", ""
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mount_point = left.split()[4]
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best):
                best, fstype = mount_point, right.split()[0]
    return fstype


def resident(path: Path, start: int, end: int) -> float:
    """Fraction of the pages of ``path`` in [start, end) that are in the page cache."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    start -= start % PAGE
    length = end - start
    npages = (length + PAGE - 1) // PAGE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * npages)()
            assert libc.mincore(addr, length, vec) == 0, os.strerror(ctypes.get_errno())
            return sum(v & 1 for v in vec) / npages
        finally:
            libc.munmap(addr, length)
    finally:
        os.close(fd)


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    if _fs_type(tmp_path) in ("tmpfs", "ramfs", "overlay"):
        pytest.skip(f"{tmp_path} is on {_fs_type(tmp_path)}: pages are the storage there")
    return tmp_path


def _frames(n: int) -> list[pa.Array]:
    rng = np.random.default_rng(7)  # incompressible: file size ~ data size
    return [pa.array(rng.integers(0, 256, MIB, dtype=np.uint8)) for _ in range(n)]


def _record(path: Path, frames: list[pa.Array]) -> None:
    """Write 40 x 1 MiB; once the writer thread has put each frame in the file, the test
    flushes the file to disk itself (through its own descriptor), so what the sink finds
    written back depends neither on how fast the disk is nor on how far the writer thread lags
    behind ``write()`` on a busy machine (it did, once, in a full CI run)."""
    with dora_replay.open_writer(
        path, "nodes: []\n", compression="none", chunk_size_bytes=MIB, fsync=False
    ) as w:
        fd = os.open(path, os.O_RDONLY)
        try:
            for i in range(40):
                w.write("cam/image", frames[i % 4], log_time_ns=i, publish_time_ns=i, seq=i)
                deadline = time.monotonic() + 10
                while os.fstat(fd).st_size < (i + 1) * MIB and time.monotonic() < deadline:
                    time.sleep(0.002)
                os.fsync(fd)
        finally:
            os.close(fd)


@pytest.mark.parametrize("window_mib", [4, 1 << 20])
def test_recording_leaves_written_data_out_of_the_page_cache(
    disk_dir: Path, monkeypatch: pytest.MonkeyPatch, window_mib: int
) -> None:
    monkeypatch.setattr(_sink, "WRITEBACK_WINDOW_BYTES", window_mib * MIB)
    path = disk_dir / "big.dora"
    frames = _frames(4)
    _record(path, frames)
    size = path.stat().st_size
    assert size > 40 * MIB
    cached = resident(path, 0, size - 16 * MIB)
    if window_mib == 4:
        # everything but the last windows was on disk when the sink dropped it from the cache
        assert cached < 0.05
    else:
        # control: with a window larger than the file the sink drops nothing and the file's
        # pages stay cached (the test machine has plenty of memory), so the check above can fail
        assert cached > 0.9
    with dora_replay.open(path) as r:
        got = [m for m in r.iter_messages()]
    assert [m.seq for m in got] == list(range(40))
    assert all(m.data.equals(frames[m.seq % 4]) for m in got)
