"""The shared-memory pool (sender side) and mapper (receiver side) on a real /dev/shm."""

from __future__ import annotations

import gc
import os
import stat
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pytest

from dora_runtime._shm import (
    DATA_OFFSET,
    MAGIC,
    MIN_CAPACITY,
    SHM_DIR,
    SLOTS_OFFSET,
    ShmMapper,
    ShmPool,
    unlink_segments,
    wait_released,
)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A segment prefix of this test only; every segment with it is removed afterwards."""
    p = f"dora-unittest-{uuid.uuid4().hex[:10]}-"
    yield p
    unlink_segments(p)
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith(p)]


@pytest.fixture
def pool(prefix: str) -> ShmPool:
    return ShmPool(prefix + "sender")


@pytest.fixture
def mapper(prefix: str) -> ShmMapper:
    return ShmMapper(prefix)


def test_segment_is_private_with_a_header(pool: ShmPool) -> None:
    region = pool.acquire(10_000, ["rcv"])
    path = os.path.join(SHM_DIR, region.name)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert region.mm[: len(MAGIC)] == MAGIC
    assert region.capacity >= max(10_000, MIN_CAPACITY)
    assert os.path.getsize(path) == DATA_OFFSET + region.capacity
    assert region.mm[SLOTS_OFFSET] == 1  # handed to one receiver
    assert pool.created == 1


def test_region_is_reused_after_the_receiver_releases_it(pool: ShmPool, mapper: ShmMapper) -> None:
    first = pool.acquire(50_000, ["rcv"])
    second = pool.acquire(50_000, ["rcv"])  # first is still held: a new segment
    assert second.name != first.name and pool.created == 2
    mapper.release(first.name, 0)
    third = pool.acquire(40_000, ["rcv"])
    assert third is first
    assert pool.created == 2
    for _ in range(100):  # a steady stream through released regions creates nothing more
        region = pool.acquire(50_000, ["rcv"])
        mapper.release(region.name, 0)
    assert pool.created <= 3


def test_region_returns_only_when_every_receiver_released(pool: ShmPool, mapper: ShmMapper) -> None:
    region = pool.acquire(1000, ["a", "b", "c"])
    assert region.mm[SLOTS_OFFSET : SLOTS_OFFSET + 3] == b"\x01\x01\x01"
    mapper.release(region.name, 0)
    mapper.release(region.name, 2)
    assert not region.is_released()
    assert region.slot_released(0) and not region.slot_released(1)
    mapper.release(region.name, 1)
    assert region.is_released()


def test_lease_releases_its_slot_when_garbage_collected(pool: ShmPool, mapper: ShmMapper) -> None:
    region = pool.acquire(4096, ["rcv"])
    region.payload(8)[:] = b"abcdefgh"
    buf = mapper.lease(region.name, DATA_OFFSET, 8, 0)
    arr = pa.Array.from_buffers(pa.uint8(), 8, [None, buf])
    del buf
    view = arr[2:5]  # a slice keeps the buffer alive too
    del arr
    gc.collect()
    assert not region.is_released()
    assert view.to_pylist() == list(b"cde")
    del view
    gc.collect()
    assert region.is_released()
    assert pool.acquire(4096, ["rcv"]) is region


def test_lease_is_zero_copy(pool: ShmPool, mapper: ShmMapper) -> None:
    region = pool.acquire(4096, ["rcv"])
    buf = mapper.lease(region.name, DATA_OFFSET, 4096, 0)
    start, end = mapper.segment_range(region.name)
    assert start <= buf.address and buf.address + buf.size <= end
    region.payload(3)[:] = b"xyz"  # the sender's later write is visible: same memory
    assert buf.to_pybytes()[:3] == b"xyz"


def test_release_owner_frees_a_gone_receivers_slots(pool: ShmPool) -> None:
    region = pool.acquire(1000, ["alive", "gone"])
    pool.release_owner("gone")
    assert region.slot_released(1) and not region.slot_released(0)


def test_small_payload_does_not_take_a_huge_free_region(pool: ShmPool, mapper: ShmMapper) -> None:
    big = pool.acquire(16 * MIN_CAPACITY, ["rcv"])
    mapper.release(big.name, 0)
    small = pool.acquire(100, ["rcv"])
    assert small is not big


def test_mapper_refuses_foreign_names_and_bad_ranges(pool: ShmPool, prefix: str) -> None:
    mapper = ShmMapper(prefix)
    with pytest.raises(ValueError, match="refusing"):
        mapper.lease("other-segment", DATA_OFFSET, 1, 0)
    with pytest.raises(ValueError, match="refusing"):
        mapper.lease(prefix + "x/../../etc", DATA_OFFSET, 1, 0)
    region = pool.acquire(100, ["rcv"])
    with pytest.raises(ValueError, match="exceeds"):
        mapper.lease(region.name, DATA_OFFSET, region.capacity + 1, 0)


def test_pool_prefix_must_not_contain_a_slash() -> None:
    with pytest.raises(ValueError):
        ShmPool("dora-x/evil")


def test_unlink_segments_removes_only_its_prefix(pool: ShmPool, prefix: str) -> None:
    other = ShmPool(prefix + "other")
    a = pool.acquire(10, [])
    b = other.acquire(10, [])
    removed = unlink_segments(prefix + "sender")
    assert removed == [a.name]
    assert os.path.exists(os.path.join(SHM_DIR, b.name))


def test_wait_released(pool: ShmPool, mapper: ShmMapper) -> None:
    region = pool.acquire(10, ["rcv"])
    assert wait_released(region, 0, 0.02) is False
    mapper.release(region.name, 0)
    assert wait_released(region, 0, 0.02) is True
