"""Arrow payload encoding for data frames: inline below the threshold, shared memory above it.

Payload kinds (the ``kind`` field of a ``M`` frame, see ``docs/protocol.md``):

- ``n``: no data; the value is an empty ``null`` array.
- ``p``: inline primitive: ``[type, length, raw_bytes]`` (fixed-width numeric, no nulls).
- ``i``: inline Arrow IPC stream holding one record batch with one column ``data``.
- ``q``: shared-memory primitive: ``[segment, offset, nbytes, slot, type, length]``.
- ``s``: shared-memory Arrow IPC stream: ``[segment, offset, nbytes, slot]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from dora_runtime._shm import DATA_OFFSET, Region, ShmMapper, ShmPool
from dora_runtime.errors import NodeError

INLINE_THRESHOLD = 16384
"""Payloads of at least this many bytes travel through shared memory."""

_PRIMITIVES: dict[str, pa.DataType] = {
    name: getattr(pa, name)()
    for name in (
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
}
_PRIMITIVE_BY_ID = {t.id: (n, t.bit_width // 8) for n, t in _PRIMITIVES.items()}
"""Arrow type id -> (name, byte width); type ids are ints, cheaper to look up than types."""
_NULL = pa.array([], type=pa.null())
_NULL_ID = pa.null().id


def to_arrow(data: Any) -> pa.Array:
    """Convert what a node may send into a ``pyarrow.Array`` (zero copy where possible)."""
    if isinstance(data, pa.Array):
        return data
    if isinstance(data, pa.ChunkedArray):
        return data.combine_chunks()
    if isinstance(data, bytes | bytearray | memoryview):
        buf = pa.py_buffer(data)
        return pa.Array.from_buffers(pa.uint8(), buf.size, [None, buf])
    if isinstance(data, np.ndarray):
        return pa.array(np.ascontiguousarray(data).reshape(-1))
    if isinstance(data, list | tuple):
        return pa.array(list(data))
    if isinstance(data, str):
        return pa.array([data])
    if data is None:
        return _NULL
    raise NodeError(
        f"cannot send a {type(data).__name__}: pass a pyarrow Array, bytes, a numpy array or a list"
    )


def _primitive_view(arr: pa.Array) -> tuple[str, memoryview] | None:
    info = _PRIMITIVE_BY_ID.get(arr.type.id)
    if info is None:
        return None
    validity, buf = arr.buffers()  # a primitive array has exactly these two
    if validity is not None and arr.null_count:  # no validity buffer: no nulls, no call
        return None
    name, width = info
    start = arr.offset * width
    mv = memoryview(buf)
    if mv.format != "B":
        mv = mv.cast("B")
    return name, mv[start : start + len(arr) * width]


def payload_size(arr: pa.Array) -> int:
    """Bytes the payload will occupy on the wire (exact for primitives, IPC size otherwise)."""
    view = _primitive_view(arr)
    if view is not None:
        return view[1].nbytes
    return _ipc_size(arr)


def _batch(arr: pa.Array) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([arr], ["data"])


def _ipc_size(arr: pa.Array) -> int:
    batch = _batch(arr)
    mock = pa.MockOutputStream()
    with pa.ipc.new_stream(mock, batch.schema) as w:
        w.write_batch(batch)
    return mock.size()


def _ipc_bytes(arr: pa.Array) -> bytes:
    batch = _batch(arr)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue().to_pybytes()


def encode_inline(arr: pa.Array) -> list[Any]:
    """``[kind, *fields]`` for a payload below ``INLINE_THRESHOLD``."""
    return encode_payload(arr, _no_shm)[1]


def _no_shm(nbytes: int) -> Region:
    raise NodeError(f"payload of {nbytes} bytes is too large to travel inline")


def encode_payload(
    arr: pa.Array, acquire: Callable[[int], Region], inline_below: int = INLINE_THRESHOLD
) -> tuple[Region | None, list[Any]]:
    """``(None, [kind, *fields])`` for a payload under ``inline_below`` bytes, else
    ``(region, [kind, seg, ...])`` after copying into a region from ``acquire(nbytes)``. One
    pass: the array is inspected and serialised once. The slot field (index 4 of a
    shared-memory payload) is a placeholder the sender fills per receiver.
    """
    if arr.type.id == _NULL_ID and len(arr) == 0 and inline_below > 0:
        return None, ["n"]
    view = _primitive_view(arr)
    if view is not None:
        return encode_primitive(view[0], len(arr), view[1], acquire, inline_below)
    if arr.nbytes < inline_below:
        return encode_ipc(_ipc_bytes(arr), acquire, inline_below)
    size = _ipc_size(arr)
    region = acquire(size)
    batch = _batch(arr)
    sink = pa.FixedSizeBufferWriter(pa.py_buffer(region.payload(size)))
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return region, ["s", region.name, DATA_OFFSET, size, 0]


def encode_bytes(
    data: memoryview, acquire: Callable[[int], Region], inline_below: int = INLINE_THRESHOLD
) -> tuple[Region | None, list[Any]]:
    """``encode_payload`` for a byte buffer, sent as a UInt8 array (``bytes``, ``bytearray``,
    ``send_output_raw``'s inline sample), without wrapping it in an Arrow array first: the
    wrapper would be unwrapped again at once, and on a CPU gone cold between messages those
    two pyarrow calls cost tens of microseconds."""
    return encode_primitive("uint8", data.nbytes, data, acquire, inline_below)


def encode_ipc(
    ipc: bytes | memoryview, acquire: Callable[[int], Region], inline_below: int
) -> tuple[Region | None, list[Any]]:
    """An Arrow IPC stream ``ipc``: inline (kind ``i``) under ``inline_below`` bytes, else
    copied into a region from ``acquire(nbytes)`` (kind ``s``)."""
    n = len(ipc)
    if n < inline_below:
        return None, ["i", ipc]
    region = acquire(n)
    region.payload(n)[:] = ipc
    return region, ["s", region.name, DATA_OFFSET, n, 0]


def encode_primitive(
    name: str,
    length: int,
    mv: memoryview,
    acquire: Callable[[int], Region],
    inline_below: int,
) -> tuple[Region | None, list[Any]]:
    """A primitive array of ``length`` values of type ``name`` whose bytes are ``mv``: inline
    (kind ``p``) under ``inline_below`` bytes, else copied into a region (kind ``q``)."""
    n = mv.nbytes
    if n < inline_below:  # the view itself: msgpack packs it as bin, no extra copy
        return None, ["p", name, length, mv]
    region = acquire(n)
    region.payload(n)[:] = mv
    return region, ["q", region.name, DATA_OFFSET, n, 0, name, length]


def write_shm(arr: pa.Array, pool: ShmPool, owners: list[str]) -> tuple[Region, list[Any]]:
    """Copy ``arr`` into a pool region whatever its size (``encode_payload`` with no inline)."""
    region, payload = encode_payload(arr, lambda n: pool.acquire(n, owners), inline_below=0)
    assert region is not None
    return region, payload


def decode(payload: list[Any], mapper: ShmMapper, copy: bool = False) -> pa.Array:
    """Rebuild the Arrow array from ``[kind, *fields]``. Shared-memory kinds are zero copy
    unless ``copy``: then the payload is copied out and the region released at once (for a
    receiver that keeps messages a while, such as a recorder, so the sender can reuse it)."""
    kind = payload[0]
    if kind == "p":
        buf = pa.py_buffer(payload[3])
        return pa.Array.from_buffers(_PRIMITIVES[payload[1]], payload[2], [None, buf])
    if kind == "q" or kind == "s":
        buf = mapper.lease(payload[1], payload[2], payload[3], payload[4])
        if copy:
            buf = pa.py_buffer(buf.to_pybytes())
        if kind == "q":
            return pa.Array.from_buffers(_PRIMITIVES[payload[5]], payload[6], [None, buf])
        return pa.ipc.open_stream(buf).read_next_batch().column(0)
    if kind == "i":
        return pa.ipc.open_stream(pa.py_buffer(payload[1])).read_next_batch().column(0)
    if kind == "n":
        return _NULL
    raise NodeError(f"unknown payload kind {kind!r}")


def release_unread(payload: list[Any], mapper: ShmMapper) -> None:
    """Release the shared-memory slot of a message that is dropped before being read."""
    if payload[0] in ("q", "s"):
        mapper.release(payload[1], payload[4])
