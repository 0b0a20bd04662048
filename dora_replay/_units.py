"""Byte counts for people (no heavy imports: the CLI uses this before pyarrow is loaded)."""

from __future__ import annotations


def human_size(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``20.0 MiB``..."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
