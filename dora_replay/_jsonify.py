"""Arrow arrays <-> JSON values and JSON Schema, for MCAP export/import (Foxglove shows JSON).

A message becomes ``{"data": V, "seq": n, "cause": c, "metadata": {...}}`` (``cause`` left out
when there is none) where ``V`` is the list of values, the single object of a one-row struct
array, or a base64 string for int8/uint8 arrays without nulls (images, raw bytes). Binary
values are base64 strings; timestamps, dates, times and durations their integer count of the
type's unit; decimals strings; maps lists of ``{"key": k, "value": v}``; dictionary arrays
their values.

The schemas stay within what Foxglove's JSON Schema reader understands (every object has
``properties``; fields are booleans, strings, numbers, integers, objects or arrays of those but
not of arrays); :func:`foxglove_readable` says whether a schema does, and a channel whose
values cannot be described that way (lists of lists) is exported without one.
"""

from __future__ import annotations

import base64
import decimal
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.types as pt


def _is_bytes_like(t: pa.DataType) -> bool:
    return pt.is_uint8(t) or pt.is_int8(t)


def _fix(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_fix(v) for v in value]
    if isinstance(value, dict):
        return {k: _fix(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # dates, times, decimals


def _is_temporal(t: pa.DataType) -> bool:
    return pt.is_timestamp(t) or pt.is_date(t) or pt.is_time(t) or pt.is_duration(t)


def _json_type(t: pa.DataType) -> pa.DataType:
    """The type ``t`` is cast to before its values become JSON: temporal types become their
    integer count, maps lists of key/value structs, dictionaries their value type."""
    if _is_temporal(t):
        return pa.int64() if t.bit_width == 64 else pa.int32()
    if pt.is_dictionary(t):
        return _json_type(t.value_type)
    if pt.is_map(t):
        entry = pa.struct([("key", _json_type(t.key_type)), ("value", _json_type(t.item_type))])
        return pa.list_(entry)
    if pt.is_list(t):
        return pa.list_(_json_type(t.value_type))
    if pt.is_large_list(t):
        return pa.large_list(_json_type(t.value_type))
    if pt.is_fixed_size_list(t):
        return pa.list_(_json_type(t.value_type), t.list_size)
    if pt.is_struct(t):
        return pa.struct([f.with_type(_json_type(f.type)) for f in t])
    return t


def data_form(arr: pa.Array) -> str:
    """How :func:`array_to_json` writes ``arr``: ``bytes`` (one base64 string), ``object``
    (a one-row struct array) or ``list``."""
    t = arr.type
    if _is_bytes_like(t) and arr.null_count == 0:
        return "bytes"
    if pt.is_struct(t) and len(arr) == 1:
        return "object"
    return "list"


def array_to_json(arr: pa.Array) -> Any:
    """JSON-able value of a message array (see module docstring)."""
    plain = _json_type(arr.type)
    if plain != arr.type:
        arr = arr.cast(plain)
    t = arr.type
    if _is_bytes_like(t) and arr.null_count == 0:
        return base64.b64encode(np.asarray(arr).tobytes()).decode("ascii")
    if pt.is_struct(t) and len(arr) == 1:
        return _fix(arr[0].as_py())
    return _fix(arr.to_pylist())


def _unfix(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
    if pt.is_dictionary(t):
        return _unfix(value, t.value_type)
    if pt.is_decimal(t):
        return decimal.Decimal(value)
    if pt.is_map(t):
        return [(_unfix(e["key"], t.key_type), _unfix(e["value"], t.item_type)) for e in value]
    if pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t):
        return base64.b64decode(value)
    if pt.is_floating(t) and isinstance(value, str):
        return float(value)
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        return [_unfix(v, t.value_type) for v in value]
    if pt.is_struct(t):
        return {
            t.field(i).name: _unfix(value.get(t.field(i).name), t.field(i).type)
            for i in range(t.num_fields)
        }
    return value


def json_to_array(value: Any, t: pa.DataType) -> pa.Array:
    """Inverse of :func:`array_to_json` given the array type ``t``."""
    if _is_bytes_like(t) and isinstance(value, str):
        raw = base64.b64decode(value)
        return pa.array(np.frombuffer(raw, np.uint8 if pt.is_uint8(t) else np.int8))
    if pt.is_struct(t) and isinstance(value, dict):
        value = [value]
    return pa.array([_unfix(v, t) for v in value], type=t)


_INTEGER = {"type": "integer"}
_BASE64 = {"type": "string", "contentEncoding": "base64"}
_DORA_FIELDS: dict[str, Any] = {
    "seq": _INTEGER,
    "cause": {"type": "string"},
    "metadata": {"type": "object", "properties": {}},
    "taken": {"type": "object", "properties": {}},
    "took": {"type": "array", "items": {"type": "string"}},
}
"""What every exported message holds besides its data (see ``_export_mcap``)."""


def json_schema(t: pa.DataType, in_array: bool = False) -> dict[str, Any]:
    """JSON Schema of one element of type ``t`` (Foxglove uses it to list fields). ``in_array``:
    the element is an array item, where Foxglove takes no ``contentEncoding``."""
    if pt.is_boolean(t):
        return {"type": "boolean"}
    if pt.is_integer(t):
        return {"type": "integer"}
    if pt.is_floating(t):
        return {"type": "number"}
    if _is_temporal(t):
        return {"type": "integer", "description": f"{t}, as an integer count of its unit"}
    if pt.is_string(t) or pt.is_large_string(t) or pt.is_decimal(t):
        return {"type": "string"}
    if pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t):
        return {"type": "string"} if in_array else _BASE64
    if pt.is_dictionary(t):
        return json_schema(t.value_type, in_array)
    if pt.is_map(t):
        entry = {"key": json_schema(t.key_type), "value": json_schema(t.item_type)}
        return {"type": "array", "items": {"type": "object", "properties": entry}}
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        return {"type": "array", "items": json_schema(t.value_type, in_array=True)}
    if pt.is_struct(t):
        return {"type": "object", "properties": {f.name: json_schema(f.type) for f in t}}
    if pt.is_null(t):
        return {"type": "null"}
    return {}


def message_schema(t: pa.DataType, form: str) -> dict[str, Any]:
    """JSON Schema of an exported message whose data is an array of ``t`` written in ``form``
    (see :func:`data_form`)."""
    if form == "bytes":
        data: dict[str, Any] = _BASE64
    elif form == "object":
        data = json_schema(t)
    else:
        data = {"type": "array", "items": json_schema(t, in_array=True)}
    return {"type": "object", "properties": {"data": data, **_DORA_FIELDS}}


_BYTES_PER_PIXEL = {
    **dict.fromkeys(("mono8", "8UC1", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8"), 1),
    **dict.fromkeys(("bayer_grbg8", "mono16", "16UC1", "uyvy", "yuyv", "yuv422", "yuv422_yuy2"), 2),
    **dict.fromkeys(("rgb8", "bgr8", "8UC3"), 3),
    **dict.fromkeys(("rgba8", "bgra8", "32FC1"), 4),
}
"""Image encodings Foxglove's Image panel shows, and their bytes per pixel."""

RAW_IMAGE_SCHEMA_NAME = "foxglove.RawImage"


def raw_image_schema() -> dict[str, Any]:
    """Foxglove's ``RawImage`` message, plus the fields of every exported dora message."""
    stamp = {"type": "object", "properties": {"sec": _INTEGER, "nsec": _INTEGER}}
    return {
        "type": "object",
        "properties": {
            "timestamp": stamp,
            "frame_id": {"type": "string"},
            "width": _INTEGER,
            "height": _INTEGER,
            "encoding": {"type": "string"},
            "step": _INTEGER,
            "data": _BASE64,
            **_DORA_FIELDS,
        },
    }


def raw_image(arr: pa.Array, metadata: dict[str, Any], stamp_ns: int) -> dict[str, Any] | None:
    """The ``RawImage`` fields of an image message (bytes whose metadata names ``width``,
    ``height`` and an ``encoding`` Foxglove shows, with rows of equal length), else ``None``.
    ``data`` holds the bytes, as in every exported message, so an import reads it back."""
    width, height, encoding = (metadata.get(k) for k in ("width", "height", "encoding"))
    if data_form(arr) != "bytes" or encoding not in _BYTES_PER_PIXEL:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        return None
    step, rest = divmod(len(arr), height)
    if rest or step < width * _BYTES_PER_PIXEL[encoding]:
        return None
    frame_id = metadata.get("frame_id")
    return {
        "timestamp": {"sec": stamp_ns // 1_000_000_000, "nsec": stamp_ns % 1_000_000_000},
        "frame_id": frame_id if isinstance(frame_id, str) else "",
        "width": width,
        "height": height,
        "encoding": encoding,
        "step": step,
        "data": array_to_json(arr),
    }


_FIELD_TYPES = frozenset({"boolean", "string", "number", "integer", "object", "array"})
_ITEM_TYPES = frozenset({"boolean", "string", "number", "integer", "object"})


def foxglove_readable(schema: dict[str, Any]) -> bool:
    """Whether Foxglove's JSON Schema reader takes ``schema`` (an object schema): it wants
    ``properties`` on every object, one type name per field, base64 as the only content
    encoding and none on array items, and no arrays of arrays."""
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        return False
    for field in schema["properties"].values():
        kind = field.get("type")
        if (
            not isinstance(kind, str)
            or kind not in _FIELD_TYPES
            or field.get("contentEncoding", "base64") != "base64"
        ):
            return False
        if kind == "object" and not foxglove_readable(field):
            return False
        if kind == "array":
            item = field.get("items") or {}
            item_kind = item.get("type")
            if not isinstance(item_kind, str) or item_kind not in _ITEM_TYPES:
                return False
            if "contentEncoding" in item:
                return False
            if item_kind == "object" and not foxglove_readable(item):
                return False
    return True
