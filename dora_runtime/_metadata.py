"""Validation of user metadata: a flat dict of bool/int/float/str or lists of those."""

from __future__ import annotations

from typing import Any

from dora_runtime.errors import NodeError

_SCALARS = (bool, int, float, str)


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Return a clean copy of ``metadata``; raise ``NodeError`` naming the first bad entry.

    ``timestamp`` is set by the runtime from the send time, so a user value for it is dropped.
    """
    if not metadata:
        return {}
    if not isinstance(metadata, dict):
        raise NodeError(f"metadata must be a dict, got {type(metadata).__name__}")
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise NodeError(f"metadata keys must be strings, got {key!r}")
        if key == "timestamp":
            continue
        if isinstance(value, _SCALARS):
            out[key] = _in_range(key, value)
        elif isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
            out[key] = _one_kind(key, value)
        elif hasattr(value, "item") and isinstance(value.item(), _SCALARS):  # numpy scalar
            out[key] = _in_range(key, value.item())
        else:
            raise NodeError(
                f"metadata value for {key!r} is a {type(value).__name__}; "
                "use bool, int, float, str or a list of those"
            )
    return out


_INT64 = range(-(2**63), 2**63)


def _in_range(key: str, value: Any) -> Any:
    """``value``, unless it is an int that does not fit in 64 bits (dora-rs's integer type)."""
    if value.__class__ is int and value not in _INT64:
        raise NodeError(f"metadata value for {key!r} ({value}) does not fit in a 64-bit integer")
    return value


def _one_kind(key: str, values: list[Any] | tuple[Any, ...]) -> list[Any]:
    """``values`` as a list, unless it mixes strings with numbers (dora-rs's lists hold one
    type) or holds an int that does not fit in 64 bits."""
    strings = sum(isinstance(v, str) for v in values)
    if 0 < strings < len(values):
        raise NodeError(
            f"metadata list for {key!r} mixes strings with other values; use one type per list"
        )
    return [_in_range(key, v) for v in values]
