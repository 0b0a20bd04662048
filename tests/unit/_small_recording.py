"""A small recording with many chunks, for the format, damage, repair and info tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

import dora_replay
from dora_replay._reader import PartFile

YAML = "nodes: []\n"
TOTAL = 120
"""Messages ``make`` writes with its defaults."""


def make(path: Path, channels: int = 3, per_channel: int = 40, chunk: int = 300) -> None:
    """``channels`` channels ``n<c>/o`` of ``per_channel`` messages each, in small chunks
    (``chunk`` bytes) so the file has many of them."""
    with dora_replay.open_writer(path, YAML, chunk_size_bytes=chunk) as w:
        for i in range(per_channel):
            for c in range(channels):
                w.write(f"n{c}/o", pa.array([i] * 8), log_time_ns=i, publish_time_ns=i, seq=i)


def chunks(path: Path) -> list:
    """The chunk index entries of ``path``, in file order."""
    part = PartFile(path)
    try:
        return list(part.chunks)
    finally:
        part.close()
