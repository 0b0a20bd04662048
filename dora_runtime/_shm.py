"""Shared-memory segments for large payloads.

Each segment is a file under ``/dev/shm`` created by the sending node with mode 0600 and mapped with
``mmap`` (not ``multiprocessing.shared_memory``, whose resource tracker unlinks segments behind our
back). A segment holds one region: a 256-byte header, then the payload at ``DATA_OFFSET``.

Header layout: ``magic`` (8 bytes, ``DORASHM1``), 8 reserved bytes, then one release byte per receiver
slot. The sender sets a slot byte to 1 for each receiver it hands the region to; the receiver writes 0
when it has dropped every reference to the payload. The region returns to the pool when every byte is
0. Single writer per byte, so no atomics are needed.

Segments are never unlinked by nodes: a receiver may still have to map a segment after its sender
exited. The daemon unlinks every segment of a dataflow (by name prefix) when the dataflow ends, also
after a node crashed.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

SHM_DIR = "/dev/shm"
MAGIC = b"DORASHM1"
HEADER_SIZE = 256
SLOTS_OFFSET = 16
MAX_SLOTS = HEADER_SIZE - SLOTS_OFFSET
DATA_OFFSET = HEADER_SIZE
MIN_CAPACITY = 64 * 1024


def _address_of(mm: mmap.mmap) -> tuple[int, ctypes.c_char]:
    anchor = ctypes.c_char.from_buffer(mm)
    return ctypes.addressof(anchor), anchor


@dataclass(eq=False)
class Region:
    """A sender-side region: one segment with room for ``capacity`` payload bytes."""

    name: str
    mm: mmap.mmap
    capacity: int
    address: int
    anchor: ctypes.c_char
    owners: list[str] = field(default_factory=list)

    def is_released(self) -> bool:
        n = len(self.owners)
        return n == 0 or self.mm.find(b"\x01", SLOTS_OFFSET, SLOTS_OFFSET + n) == -1

    def slot_released(self, slot: int) -> bool:
        return self.mm[SLOTS_OFFSET + slot] == 0

    def payload(self, length: int) -> memoryview:
        """Writable view of the first ``length`` payload bytes."""
        return memoryview(self.mm)[DATA_OFFSET : DATA_OFFSET + length]


class ShmPool:
    """The pool of regions a sending node owns. Not thread-safe; the node serialises sends."""

    def __init__(self, prefix: str) -> None:
        if "/" in prefix:
            raise ValueError(f"shared-memory prefix must not contain '/': {prefix!r}")
        self._prefix = prefix
        self._free: list[Region] = []
        self._busy: list[Region] = []
        self._counter = 0
        self.created = 0

    @property
    def bytes_mapped(self) -> int:
        return sum(r.capacity for r in self._free) + sum(r.capacity for r in self._busy)

    def acquire(self, size: int, owners: list[str]) -> Region:
        """A region with at least ``size`` payload bytes, handed to ``owners`` (one slot each)."""
        if len(owners) > MAX_SLOTS:
            raise ValueError(f"a region can be shared by at most {MAX_SLOTS} receivers")
        self.reclaim()
        region = self._take_free(size) or self._create(size)
        region.owners = list(owners)
        if owners:
            region.mm[SLOTS_OFFSET : SLOTS_OFFSET + len(owners)] = b"\x01" * len(owners)
        self._busy.append(region)
        return region

    def reclaim(self) -> None:
        """Move every fully released region back to the free list."""
        if not self._busy:
            return
        still = []
        for r in self._busy:
            (self._free if r.is_released() else still).append(r)
        self._busy = still

    def release_owner(self, owner: str) -> None:
        """Release every slot held by ``owner`` (a receiver that exited without releasing)."""
        for r in self._busy:
            for i, o in enumerate(r.owners):
                if o == owner:
                    r.mm[SLOTS_OFFSET + i] = 0

    def _take_free(self, size: int) -> Region | None:
        best = None
        for r in self._free:
            if size <= r.capacity <= max(4 * size, MIN_CAPACITY) and (
                best is None or r.capacity < best.capacity
            ):
                best = r
        if best is not None:
            self._free.remove(best)
        return best

    def _create(self, size: int) -> Region:
        capacity = max(MIN_CAPACITY, 1 << (size - 1).bit_length())
        self._counter += 1
        name = f"{self._prefix}-{os.getpid()}-{self._counter}"
        fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, DATA_OFFSET + capacity)
            mm = mmap.mmap(fd, DATA_OFFSET + capacity)
        finally:
            os.close(fd)
        mm[0 : len(MAGIC)] = MAGIC
        address, anchor = _address_of(mm)
        self.created += 1
        return Region(name=name, mm=mm, capacity=capacity, address=address, anchor=anchor)


class _Lease:
    """Owned by a received Arrow buffer; releases the receiver's slot when garbage collected."""

    __slots__ = ("_mm", "_pos")

    def __init__(self, mm: mmap.mmap, pos: int) -> None:
        self._mm = mm
        self._pos = pos

    def __del__(self) -> None:
        try:
            self._mm[self._pos] = 0
        except (ValueError, TypeError):  # mapping already closed at interpreter exit
            pass


class ShmMapper:
    """Receiver side: maps each sender segment once and hands out zero-copy Arrow buffers."""

    def __init__(self, allowed_prefix: str) -> None:
        import pyarrow as pa  # here, not at module level: the daemon uses this module too

        self._foreign_buffer = pa.foreign_buffer
        self._prefix = allowed_prefix
        self._maps: dict[str, tuple[mmap.mmap, int, ctypes.c_char]] = {}

    def _map(self, name: str) -> tuple[mmap.mmap, int, ctypes.c_char]:
        entry = self._maps.get(name)
        if entry is None:
            if "/" in name or not name.startswith(self._prefix):
                raise ValueError(f"refusing to map shared-memory segment {name!r}")
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
            try:
                mm = mmap.mmap(fd, 0)
            finally:
                os.close(fd)
            address, anchor = _address_of(mm)
            entry = (mm, address, anchor)
            self._maps[name] = entry
        return entry

    def lease(self, name: str, offset: int, length: int, slot: int) -> Any:  # a pa.Buffer
        """A read-only Arrow buffer over the payload; its collection releases ``slot``."""
        mm, address, _ = self._map(name)
        if offset + length > len(mm):
            raise ValueError(f"region {name}: {offset}+{length} exceeds segment size {len(mm)}")
        return self._foreign_buffer(address + offset, length, base=_Lease(mm, SLOTS_OFFSET + slot))

    def release(self, name: str, slot: int) -> None:
        """Release ``slot`` without reading the payload (a message dropped from a queue)."""
        try:
            mm, _, _ = self._map(name)
        except OSError:
            return
        mm[SLOTS_OFFSET + slot] = 0

    def segment_range(self, name: str) -> tuple[int, int]:
        """``(start_address, end_address)`` of a mapped segment, for zero-copy checks."""
        mm, address, _ = self._map(name)
        return address, address + len(mm)


def segment_creator(name: str) -> tuple[str, str] | None:
    """``(pool prefix, pid)`` of a segment ``ShmPool`` named ``<prefix>-<pid>-<n>``; None for
    another name."""
    parts = name.rsplit("-", 2)
    return (parts[0], parts[1]) if len(parts) == 3 else None


def unlink_segments(prefix: str, only: Callable[[str], bool] | None = None) -> list[str]:
    """Unlink every segment whose name starts with ``prefix`` (and, with ``only``, whose
    rest of the name it accepts); returns the names removed."""
    removed = []
    try:
        names: Iterable[str] = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return removed
    for name in names:
        if name.startswith(prefix) and (only is None or only(name[len(prefix) :])):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


def wait_released(region: Region, slot: int, timeout_s: float) -> bool:
    """Poll until ``slot`` of ``region`` is released; False on timeout."""
    deadline = time.monotonic() + timeout_s
    delay = 50e-6
    while not region.slot_released(slot):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 2e-3)
    return True
