"""``dora info``, ``dora export``, ``dora import`` and the ``repair`` handler for recordings.

Handlers parse arguments and call :mod:`dora_replay`; pyarrow is imported only inside them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from dora_cli._common import fail


class ExportFormat(StrEnum):
    mcap = "mcap"
    parquet = "parquet"


def register(app: typer.Typer) -> None:
    """Add ``info``, ``export`` and ``import`` to the ``dora`` app."""
    app.command("info")(info)
    app.command("export")(export)
    app.command("import")(import_)


@contextmanager
def _errors(path: Path) -> Iterator[None]:
    """Turn recording errors into one line on stderr and exit code 1."""
    from dora_replay.errors import (
        RecordingCorruptError,
        RecordingError,
        RecordingNotFoundError,
    )

    try:
        yield
    except RecordingNotFoundError as e:
        fail(f"{e}; check the path (split recordings: pass run.dora or run_001.dora)")
    except RecordingCorruptError as e:
        fail(f"{e}")
    except RecordingError as e:
        if getattr(e, "output", None) is not None:  # an output that must not be replaced
            fail(f"{e}")
        fail(f"{e}; check the path, or run `dora record repair {path}` if the file is damaged")
    except OSError as e:
        fail(f"{e.filename or path}: {e.strerror or e}")
    except ValueError as e:
        fail(f"{path}: {e}")


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def info(
    path: Annotated[Path, typer.Argument(help="Recording (.dora), first part, or glob of parts.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Summarize a recording: times, channels (count, rate, size, type, drops), nodes, losses."""
    from dora_replay._units import human_size
    from dora_replay.info import recording_info

    with _errors(path):
        rec = recording_info(str(path))
    for line in rec.warnings:
        _warn(line)
    if as_json:
        typer.echo(json.dumps(rec.to_dict(), indent=2))
        return
    from rich.console import Console

    console = Console()
    console.print(
        f"[bold]{', '.join(rec.paths)}[/bold]  (format v{rec.format_version})", soft_wrap=True
    )
    console.print(
        f"start {_time(rec.start_time_ns)}  end {_time(rec.end_time_ns)}  "
        f"duration {rec.duration_s:.3f} s",
        soft_wrap=True,
    )
    console.print(
        f"{rec.message_count} messages in {rec.chunk_count} chunks, {human_size(rec.file_bytes)}, "
        f"{rec.compression} ratio {rec.compression_ratio:.2f}"
        + ("" if rec.clean else "  [yellow](no footer: not closed cleanly, index rebuilt)[/]"),
        soft_wrap=True,
    )
    if rec.metadata:
        console.print("metadata: " + ", ".join(f"{k}={v}" for k, v in rec.metadata.items()))
    console.print("nodes: " + (", ".join(rec.nodes) or "(none)"))
    heads = ("channel", "messages", "rate Hz", "size", "compressed", "drops")
    rows = [
        (
            c.name,
            str(c.message_count),
            f"{c.rate_hz:.1f}",
            human_size(c.data_bytes),
            human_size(c.compressed_bytes),
            str(c.drops),
        )
        for c in rec.channels
    ]
    # Plain aligned columns, one line per channel: only the Arrow type is cut to the terminal
    # width (whole when piped, and in `dora info --json`).
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]
    room = max(12, console.width - sum(w + 2 for w in widths) - 1)
    if not console.is_terminal:
        room = 1 << 30  # piped: whole types

    def line(cells: tuple[str, ...], last: str) -> str:
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return f"{text}  {last if len(last) <= room else last[: room - 1] + '…'}"

    console.print(line(heads, "arrow type"), style="bold", highlight=False, soft_wrap=True)
    for c, row in zip(rec.channels, rows, strict=True):
        console.print(line(row, " | ".join(c.arrow_types)), highlight=False, soft_wrap=True)
    if any(c.compressed_bytes > c.data_bytes for c in rec.channels):
        console.print(
            "(compressed > size: each chunk also holds times, seq, metadata and its Arrow "
            "schema, which outweigh small payloads)",
            style="dim",
            highlight=False,
            soft_wrap=True,
        )
    for p in rec.problems:
        console.print(f"[red]lost:[/] {p}")
    if rec.problems:
        console.print(
            f"[red]{rec.lost_messages} message(s) lost[/]; `dora record repair` rewrites the "
            "file with a fresh index and keeps everything readable"
        )


_OVERWRITE = typer.Option("--overwrite", help="Replace OUTPUT if it exists.")


def _warn(line: str) -> None:
    typer.secho(f"warning: {line}", fg="yellow", err=True)


def export(
    path: Annotated[Path, typer.Argument(help="Recording to export.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="mcap or parquet.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="MCAP file or Parquet dir.")],
    overwrite: Annotated[bool, _OVERWRITE] = False,
) -> None:
    """Export to MCAP (JSON messages, viewable in Foxglove) or Parquet (one file per channel)."""
    with _errors(path), _progress(f"export {fmt.value}") as progress:
        if fmt is ExportFormat.mcap:
            from dora_replay._export_mcap import export_mcap

            n = export_mcap(path, output, progress, overwrite=overwrite, warn=_warn)
            typer.echo(f"wrote {n} messages to {output}")
        else:
            from dora_replay._export_parquet import export_parquet

            files = export_parquet(path, output, progress, overwrite=overwrite, warn=_warn)
            typer.echo(f"wrote {len(files)} Parquet file(s) under {output}")
    _warn_losses(path)


def _warn_losses(path: Path) -> None:
    """A damaged source exports what is readable; say what was not."""
    from dora_replay.info import open_checked

    rec, _ = open_checked(path)
    with rec:
        if rec.problems:
            _warn(
                f"{path} is damaged: {sum(p.lost_messages or 0 for p in rec.problems)} "
                "message(s) could not be read "
                "and are not in the export (`dora info` lists the damage)"
            )


def import_(
    path: Annotated[Path, typer.Argument(help="MCAP file (rosbag2 MCAP with CDR works).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .dora file to write.")],
    overwrite: Annotated[bool, _OVERWRITE] = False,
) -> None:
    """Import an MCAP file (e.g. a rosbag2 .mcap) as a .dora recording."""
    if not path.exists():
        fail(f"{path}: no such file; pass an existing .mcap file")
    from dora_replay._import_mcap import import_mcap

    try:
        with _errors(path), _progress("import") as progress:
            report = import_mcap(path, output, progress, overwrite=overwrite)
    except typer.Exit:
        raise
    except Exception as e:  # the mcap package raises its own types for damaged files
        fail(f"{path}: cannot import ({type(e).__name__}: {e}); is it a valid MCAP file?")
    raw = f"; kept raw bytes for {', '.join(report.raw)}" if report.raw else ""
    typer.echo(f"imported {report.messages} messages on {len(report.channels)} channels{raw}")


def repair_command(path: Path, output: Path | None = None, overwrite: bool = False) -> Any:
    """``dora record repair PATH [-o OUTPUT] [--overwrite]``: rewrite with a fresh index, report
    what was lost."""
    from dora_replay.repair import repair

    with _errors(path), _progress("repair") as progress:
        report = repair(path, output, progress, overwrite=overwrite)
    typer.echo(report.summary())
    return report
