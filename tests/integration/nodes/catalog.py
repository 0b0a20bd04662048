"""The payloads ``types_sender`` sends and ``types_receiver`` checks: ``name -> (data, expected)``.

``data`` is what goes to ``send_output``; ``expected`` the Arrow array that must arrive. Names
ending in ``_large`` are at least 16 KiB, so they travel through shared memory.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

RAW_SMALL = bytes(range(16))
RAW_LARGE = bytes(i % 251 for i in range(20000))
METADATA = {
    "flag": True,
    "count": 42,
    "ratio": 1.5,
    "label": "text é",
    "ints": [1, 2, 3],
    "words": ["a", "b"],
    "floats": [0.5, 2.0],
}


def _bytes_expected(b: bytes) -> pa.Array:
    return pa.array(list(b), type=pa.uint8())


def cases() -> dict[str, tuple[Any, pa.Array]]:
    big_ints = np.arange(3000, dtype=np.int64)
    big_f32 = np.linspace(0.0, 1.0, 8192, dtype=np.float32)
    nulls = [i if i % 7 else None for i in range(4000)]
    structs = [{"x": i, "y": f"s{i}", "z": float(i) / 3} for i in range(1600)]
    lists = [list(range(i % 13)) for i in range(2400)]
    big_bytes = bytes(range(256)) * 80
    big_u16 = np.arange(10000, dtype=np.uint16)
    sliced = pa.array(np.arange(100_000, dtype=np.int32))[10:6000]
    c: dict[str, tuple[Any, pa.Array]] = {
        "int_small": (pa.array([1, -2, 3], pa.int32()), pa.array([1, -2, 3], pa.int32())),
        "int_large": (pa.array(big_ints), pa.array(big_ints)),
        "uint8_small": (pa.array([0, 255], pa.uint8()), pa.array([0, 255], pa.uint8())),
        "float_small": (pa.array([1.5, -2.0]), pa.array([1.5, -2.0])),
        "float_large": (pa.array(big_f32), pa.array(big_f32)),
        "float16_small": (
            pa.array(np.arange(10, dtype=np.float16)),
            pa.array(np.arange(10, dtype=np.float16)),
        ),
        "bool_small": (pa.array([True, False, None]), pa.array([True, False, None])),
        "nulls_small": (pa.array([1, None, 3]), pa.array([1, None, 3])),
        "nulls_large": (pa.array(nulls), pa.array(nulls)),
        "string_small": (pa.array(["a", "bé", ""]), pa.array(["a", "bé", ""])),
        "string_large": (pa.array(["x" * 100] * 200), pa.array(["x" * 100] * 200)),
        "struct_small": (
            pa.array([{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]),
            pa.array([{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]),
        ),
        "struct_large": (pa.array(structs), pa.array(structs)),
        "list_small": (pa.array([[1, 2], [3], []]), pa.array([[1, 2], [3], []])),
        "list_large": (pa.array(lists), pa.array(lists)),
        "dictionary_small": (
            pa.array(["a", "b", "a"]).dictionary_encode(),
            pa.array(["a", "b", "a"]).dictionary_encode(),
        ),
        "timestamp_small": (
            pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("us")),
            pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("us")),
        ),
        "empty_small": (pa.array([], pa.int64()), pa.array([], pa.int64())),
        "sliced_small": (pa.array([1, 2, 3, 4, 5])[2:4], pa.array([3, 4])),
        "sliced_large": (sliced, pa.array(np.arange(10, 6000, dtype=np.int32))),
        "bytes_small": (b"\x00\x01\x02hello", _bytes_expected(b"\x00\x01\x02hello")),
        "bytes_large": (big_bytes, _bytes_expected(big_bytes)),
        "numpy_small": (np.array([1.0, 2.0, 3.0]), pa.array([1.0, 2.0, 3.0])),
        "numpy_large": (big_u16, pa.array(big_u16)),
        "pylist_small": ([1, 2, 3], pa.array([1, 2, 3])),
        "pylist_large": (list(range(4000)), pa.array(list(range(4000)))),
        "pylist_str_small": (["a", "b"], pa.array(["a", "b"])),
    }
    return c


REUSED = {"bytearray_reused_small": RAW_SMALL, "bytearray_reused_large": RAW_LARGE}
"""Sent as a ``bytearray`` that the sender overwrites right after ``send_output`` returns:
what arrives must be the content at the time of the call."""


def expected(name: str) -> pa.Array:
    if name == "raw_ctx_small":
        return _bytes_expected(RAW_SMALL)
    if name == "raw_manual_large":
        return _bytes_expected(RAW_LARGE)
    if name in REUSED:
        return _bytes_expected(REUSED[name])
    if name == "metadata":
        return pa.array([0])
    return cases()[name][1]


def names() -> list[str]:
    return [*cases(), *REUSED, "raw_ctx_small", "raw_manual_large", "metadata"]
