"""Sizes and durations for people (no heavy imports: the CLI uses this before pyarrow is loaded)."""

from __future__ import annotations


def human_size(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``20.0 MiB``..."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def human_duration(seconds: float) -> str:
    """``300 ms``, ``1 s``, ``90 s``, ``10 min``, ``2 h``."""
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g} s"
    if seconds % 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
