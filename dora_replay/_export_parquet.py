"""Export a recording to Parquet: one file per channel (and per type version)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from dora_replay._recording import open as open_recording
from dora_replay._sink import check_output
from dora_replay.info import Source, damage_warning

CHANNEL_KEY = b"dora.channel"
"""Parquet schema metadata key naming the dora channel a file was exported from."""


def parquet_path(directory: Path, channel: str, version: int, versions: int) -> Path:
    """``DIR/node/output.parquet``; ``output.v2.parquet``... when the channel changed type."""
    node, _, output = channel.partition("/")
    suffix = f".v{version}" if versions > 1 else ""
    return directory / node / f"{output.replace('/', '_')}{suffix}.parquet"


def export_parquet(
    source: Source,
    output: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
    *,
    overwrite: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write each channel's :meth:`Recording.to_table` to a Parquet file under the directory
    ``output`` (created); returns the files written. ``progress(done, total)`` counts channels;
    ``warn`` gets a line for each file of another recording left out (see
    ``Recording.warnings``), and at the end one line saying how many messages
    could not be read if ``source`` is damaged (see :func:`~dora_replay.info.damage_warning`).
    Raises ``RecordingError`` if ``output`` is a file, or a folder that is not empty unless
    ``overwrite``: then the files written replace those of the same name, and Parquet files of
    an earlier export there are removed, so the folder holds this recording only."""
    import pyarrow.parquet as pq

    out = Path(output)
    written: list[Path] = []
    with open_recording(source) as rec:
        check_output(out, overwrite, folder=True)
        for line in rec.warnings if warn is not None else ():
            warn(line)
        chans = sorted(rec.channels.values(), key=lambda c: c.name)
        for i, info in enumerate(chans):
            for version in range(1, len(info.types) + 1):
                path = parquet_path(out, info.name, version, len(info.types))
                path.parent.mkdir(parents=True, exist_ok=True)
                table = rec.to_table(info.name, version=version)
                meta = {
                    CHANNEL_KEY: info.name.encode(),
                    b"dora.dataflow": rec.dataflow_yaml.encode(),
                }
                pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")
                written.append(path)
            if progress is not None:
                progress(i + 1, len(chans))
        damage = damage_warning(rec)
    _remove_stale(out, written)
    if damage is not None and warn is not None:
        warn(damage)
    return written


def _remove_stale(directory: Path, keep: list[Path]) -> None:
    """Delete ``DIR/node/output*.parquet`` files a dora export wrote earlier (they carry
    :data:`CHANNEL_KEY`) and this one did not; other files are never touched."""
    import pyarrow.parquet as pq

    for path in set(directory.glob("*/*.parquet")) - set(keep):
        try:
            meta = pq.read_schema(path).metadata or {}
        except (OSError, ValueError):
            continue
        if CHANNEL_KEY in meta:
            path.unlink()
