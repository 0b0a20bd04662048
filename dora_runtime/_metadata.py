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
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
            out[key] = list(value)
        elif hasattr(value, "item") and isinstance(value.item(), _SCALARS):  # numpy scalar
            out[key] = value.item()
        else:
            raise NodeError(
                f"metadata value for {key!r} is a {type(value).__name__}; "
                "use bool, int, float, str or a list of those"
            )
    return out
