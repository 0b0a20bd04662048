"""Export a recording to Parquet: one file per channel (and per type version)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dora_replay._recording import open as open_recording


def parquet_path(directory: Path, channel: str, version: int, versions: int) -> Path:
    """``DIR/node/output.parquet``; ``output.v2.parquet``... when the channel changed type."""
    node, _, output = channel.partition("/")
    suffix = f".v{version}" if versions > 1 else ""
    return directory / node / f"{output.replace('/', '_')}{suffix}.parquet"


def export_parquet(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write each channel's :meth:`Recording.to_table` to a Parquet file under the directory
    ``output`` (created); returns the files written. ``progress(done, total)`` counts channels."""
    import pyarrow.parquet as pq

    out = Path(output)
    written: list[Path] = []
    with open_recording(source) as rec:
        chans = sorted(rec.channels.values(), key=lambda c: c.name)
        for i, info in enumerate(chans):
            for version in range(1, len(info.types) + 1):
                path = parquet_path(out, info.name, version, len(info.types))
                path.parent.mkdir(parents=True, exist_ok=True)
                table = rec.to_table(info.name, version=version)
                meta = {
                    b"dora.channel": info.name.encode(),
                    b"dora.dataflow": rec.dataflow_yaml.encode(),
                }
                pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")
                written.append(path)
            if progress is not None:
                progress(i + 1, len(chans))
    return written
