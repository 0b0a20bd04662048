"""Arrow payloads: inline and through shared memory, for many Arrow types."""

from __future__ import annotations

import datetime as dt
import decimal
import gc
import os
import uuid
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dora_runtime import _framing
from dora_runtime._codec import (
    INLINE_THRESHOLD,
    decode,
    encode_inline,
    payload_size,
    release_unread,
    to_arrow,
    write_shm,
)
from dora_runtime._shm import SHM_DIR, ShmMapper, ShmPool, unlink_segments
from dora_runtime.errors import NodeError


@pytest.fixture
def shm() -> Iterator[tuple[ShmPool, ShmMapper]]:
    prefix = f"dora-unittest-{uuid.uuid4().hex[:10]}-"
    yield ShmPool(prefix + "sender"), ShmMapper(prefix)
    unlink_segments(prefix)
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith(prefix)]


def _wire(payload: list) -> list:
    """What the receiver gets: the payload through msgpack framing."""
    buf = _framing.FrameBuffer()
    buf.feed(_framing.encode(["M", 0, 0, None, {}, *payload]))
    (frame,) = buf.frames()
    return frame[5:]


def inline_round_trip(arr: pa.Array) -> pa.Array:
    return decode(_wire(encode_inline(arr)), ShmMapper("unused-"))


def shm_round_trip(arr: pa.Array, pool: ShmPool, mapper: ShmMapper) -> pa.Array:
    _region, payload = write_shm(arr, pool, ["receiver"])
    return decode(_wire(payload), mapper)


ARRAYS = {
    "int8": pa.array([-128, 0, 127], pa.int8()),
    "uint64": pa.array([0, 2**64 - 1], pa.uint64()),
    "int64_nulls": pa.array([1, None, 3]),
    "float16": pa.array(np.array([0.5, -1.0], dtype=np.float16)),
    "float32": pa.array([1.5, float("inf")], pa.float32()),
    "float64_nan": pa.array([float("nan"), 1.0]),
    "bool": pa.array([True, False, None]),
    "string": pa.array(["", "é", None, "abc"]),
    "large_string": pa.array(["x", "yy"], pa.large_string()),
    "binary": pa.array([b"\x00\x01", None, b""]),
    "fixed_binary": pa.array([b"ab", b"cd"], pa.binary(2)),
    "struct": pa.array([{"a": 1, "b": "x"}, {"a": None, "b": "y"}, None]),
    "list": pa.array([[1, 2], None, []]),
    "large_list": pa.array([[1.0], [2.0, 3.0]], pa.large_list(pa.float64())),
    "fixed_size_list": pa.array([[1, 2, 3], [4, 5, 6]], pa.list_(pa.int32(), 3)),
    "list_of_struct": pa.array([[{"x": 1}], [{"x": 2}, {"x": 3}]]),
    "map": pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int64())),
    "dictionary": pa.array(["a", "b", "a", None]).dictionary_encode(),
    "timestamp_tz": pa.array([dt.datetime(2024, 5, 6, 7, 8, 9)], pa.timestamp("ns", tz="UTC")),
    "date32": pa.array([dt.date(2024, 1, 1)], pa.date32()),
    "duration": pa.array([dt.timedelta(seconds=3)], pa.duration("ms")),
    "decimal": pa.array([decimal.Decimal("1.25")], pa.decimal128(5, 2)),
    "null": pa.array([None, None], pa.null()),
    "empty_null": pa.array([], pa.null()),
    "empty_int": pa.array([], pa.int64()),
    "sliced_int": pa.array(np.arange(20, dtype=np.int16))[3:9],
    "sliced_string": pa.array(["a", "b", "c", "d"])[1:3],
}


def _large(arr: pa.Array) -> pa.Array:
    """``arr`` repeated until its payload is at least the inline threshold."""
    out = arr
    while payload_size(out) < 2 * INLINE_THRESHOLD:
        out = pa.concat_arrays([out, out])
    return out


# Empty and all-null arrays have no payload to grow into shared memory.
SHM_CASES = [n for n, a in ARRAYS.items() if len(a) and a.type != pa.null()]


def _same(got: pa.Array, want: pa.Array) -> None:
    assert got.type == want.type
    if want.type == pa.float64() and want.null_count == 0:  # NaN != NaN under equals
        np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    else:
        assert got.equals(want), (got, want)


@pytest.mark.parametrize("name", list(ARRAYS))
def test_inline_round_trip(name: str) -> None:
    arr = ARRAYS[name]
    _same(inline_round_trip(arr), arr)


@pytest.mark.parametrize("name", SHM_CASES)
def test_shm_round_trip(name: str, shm: tuple[ShmPool, ShmMapper]) -> None:
    pool, mapper = shm
    arr = _large(ARRAYS[name])
    got = shm_round_trip(arr, pool, mapper)
    _same(got, arr)


@pytest.mark.parametrize("name", ["int8", "string", "struct", "sliced_int"])
def test_shm_payload_is_zero_copy_and_released_when_dropped(
    name: str, shm: tuple[ShmPool, ShmMapper]
) -> None:
    pool, mapper = shm
    arr = _large(ARRAYS[name])
    region, payload = write_shm(arr, pool, ["receiver"])
    got = decode(_wire(payload), mapper)
    start, end = mapper.segment_range(region.name)
    addresses = [b.address for b in got.buffers() if b is not None and b.size]
    assert addresses and all(start <= a < end for a in addresses)
    assert not region.is_released()
    del got
    gc.collect()
    assert region.is_released()


@pytest.mark.parametrize("name", ["int8", "string", "struct", "sliced_int"])
def test_copying_decode_releases_the_region_at_once(
    name: str, shm: tuple[ShmPool, ShmMapper]
) -> None:
    """What a recorder uses: the value owns a copy, so the sender gets its region back while
    the recorder still holds the message."""
    pool, mapper = shm
    arr = _large(ARRAYS[name])
    region, payload = write_shm(arr, pool, ["receiver"])
    got = decode(_wire(payload), mapper, copy=True)
    gc.collect()
    assert region.is_released()
    start, end = mapper.segment_range(region.name)
    assert not any(start <= b.address < end for b in got.buffers() if b is not None and b.size)
    n = payload[3]  # payload bytes of a shared-memory payload
    region.payload(n)[:] = b"\xff" * n  # the sender reuses the region
    _same(got, arr)


def test_dropped_message_releases_without_reading(shm: tuple[ShmPool, ShmMapper]) -> None:
    pool, mapper = shm
    region, payload = write_shm(_large(ARRAYS["string"]), pool, ["receiver"])
    release_unread(_wire(payload), mapper)
    assert region.is_released()
    release_unread(_wire(encode_inline(ARRAYS["int8"])), mapper)  # inline: nothing to release


@pytest.mark.parametrize("nbytes", [INLINE_THRESHOLD - 8, INLINE_THRESHOLD])
def test_payload_size_of_primitives_is_exact(nbytes: int) -> None:
    assert payload_size(pa.array(np.zeros(nbytes // 8, dtype=np.int64))) == nbytes


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    values=st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=1500)
    | st.lists(st.none() | st.text(max_size=20), max_size=400)
)
def test_any_list_round_trips_inline_or_through_shm(
    values: list, shm: tuple[ShmPool, ShmMapper]
) -> None:
    pool, mapper = shm
    arr = pa.array(values, type=pa.int64() if not any(isinstance(v, str) for v in values) else None)
    if payload_size(arr) < INLINE_THRESHOLD:
        got = inline_round_trip(arr)
    else:
        got = shm_round_trip(arr, pool, mapper)
    assert got.type == arr.type and got.to_pylist() == values


# -- what a node may pass to send_output ---------------------------------------------------


def test_to_arrow_conversions() -> None:
    assert to_arrow(b"\x01\x02").equals(pa.array([1, 2], pa.uint8()))
    assert to_arrow(bytearray(b"\x03")).equals(pa.array([3], pa.uint8()))
    assert to_arrow(np.arange(6, dtype=np.int16).reshape(2, 3)).equals(
        pa.array(np.arange(6, dtype=np.int16))
    )
    assert to_arrow([1, 2]).equals(pa.array([1, 2]))
    assert to_arrow(("a",)).equals(pa.array(["a"]))
    assert to_arrow("text").equals(pa.array(["text"]))
    assert to_arrow(None).type == pa.null()
    chunked = pa.chunked_array([[1], [2, 3]])
    assert to_arrow(chunked).equals(pa.array([1, 2, 3]))
    arr = pa.array([1.0])
    assert to_arrow(arr) is arr


def test_to_arrow_refuses_other_objects() -> None:
    with pytest.raises(NodeError, match="cannot send a dict"):
        to_arrow({"a": 1})
