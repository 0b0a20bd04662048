"""Arrow arrays <-> JSON values and JSON Schema, for MCAP export/import (Foxglove shows JSON).

A message becomes ``{"data": V, "seq": n, "cause": c, "metadata": {...}}`` where ``V`` is the list of
values, the single object of a one-row struct array, or a base64 string for int8/uint8 arrays
without nulls (images, raw bytes). Binary values are base64 strings.
"""

from __future__ import annotations

import base64
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


def array_to_json(arr: pa.Array) -> Any:
    """JSON-able value of a message array (see module docstring)."""
    t = arr.type
    if _is_bytes_like(t) and arr.null_count == 0:
        return base64.b64encode(np.asarray(arr).tobytes()).decode("ascii")
    if pt.is_struct(t) and len(arr) == 1:
        return _fix(arr[0].as_py())
    return _fix(arr.to_pylist())


def _unfix(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
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


def json_schema(t: pa.DataType) -> dict[str, Any]:
    """JSON Schema of one element of type ``t`` (Foxglove uses it to list fields)."""
    if pt.is_boolean(t):
        return {"type": "boolean"}
    if pt.is_integer(t):
        return {"type": "integer"}
    if pt.is_floating(t):
        return {"type": "number"}
    if pt.is_string(t) or pt.is_large_string(t):
        return {"type": "string"}
    if pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t):
        return {"type": "string", "contentEncoding": "base64"}
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        return {"type": "array", "items": json_schema(t.value_type)}
    if pt.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        return {"type": "object", "properties": {f.name: json_schema(f.type) for f in fields}}
    return {}


def message_schema(t: pa.DataType) -> dict[str, Any]:
    """JSON Schema of an exported message whose data is an array of ``t``."""
    if _is_bytes_like(t):
        data: dict[str, Any] = {"type": "string", "contentEncoding": "base64"}
    elif pt.is_struct(t):
        data = {"anyOf": [json_schema(t), {"type": "array", "items": json_schema(t)}]}
    else:
        data = {"type": "array", "items": json_schema(t)}
    return {
        "type": "object",
        "properties": {
            "data": data,
            "seq": {"type": "integer"},
            "cause": {"type": ["string", "null"]},
            "metadata": {"type": "object"},
        },
    }
