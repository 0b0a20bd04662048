"""``dora info``, ``dora export``, ``dora import`` and the ``repair`` handler for recordings.

Handlers parse arguments and call :mod:`dora_replay`; pyarrow is imported only inside them.
"""

from __future__ import annotations

import contextlib
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
        OutputRefusedError,
        RecordingCorruptError,
        RecordingError,
        RecordingNotFoundError,
    )

    try:
        yield
    except RecordingNotFoundError as e:
        fail(f"{e}; check the path (split recordings: pass run.dora or run_001.dora)")
    except (RecordingCorruptError, OutputRefusedError) as e:
        fail(f"{e}")
    except RecordingError as e:
        fail(f"{e}; check the path, or run `dora record repair {path}` if the file is damaged")
    except OSError as e:
        fail(f"{e.filename or path}: {e.strerror or e}")
    except ValueError as e:
        fail(f"{path}: {e}")


def _index_note(rec: Any) -> str:
    if rec.clean:
        return ""
    if rec.end_marker_damaged:
        return (
            "  [yellow](end marker damaged: every message is accounted for; "
            "`dora record repair` rewrites it)[/]"
        )
    if rec.footer_damaged:
        return "  [yellow](footer damaged: index rebuilt by scanning the chunks)[/]"
    return "  [yellow](no footer: not closed cleanly, index rebuilt)[/]"


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
    from rich.markup import escape

    console = Console()
    if not console.is_terminal:
        # CI logs and pipes: whole lines (rich would wrap at 80 columns mid-sentence)
        console.soft_wrap = True
    console.print(
        f"[bold]{', '.join(rec.paths)}[/bold]  (format v{rec.format_version})", soft_wrap=True
    )
    console.print(
        f"start {_time(rec.start_time_ns)}  end {_time(rec.end_time_ns)}  "
        f"duration {rec.duration_s:.3f} s",
        soft_wrap=True,
    )
    console.print(
        f"{_count_line(rec)} in {rec.chunk_count} chunks, {human_size(rec.file_bytes)}, "
        f"{rec.compression} ratio {rec.compression_ratio:.2f}" + _index_note(rec),
        soft_wrap=True,
    )
    if rec.metadata:
        console.print("metadata: " + ", ".join(f"{k}={v}" for k, v in rec.metadata.items()))
    console.print("nodes: " + (", ".join(rec.nodes) or "(none)"))
    heads: tuple[str, ...] = ("channel", "messages", "rate Hz", "size", "compressed", "drops")
    rows = [
        (
            c.name,
            str(c.readable_messages),
            f"{c.rate_hz:.1f}",
            human_size(c.data_bytes),
            human_size(c.compressed_bytes),
            str(c.drops),
        )
        for c in rec.channels
    ]
    if any(c.lost_messages for c in rec.channels):  # readable above, unreadable here
        heads += ("lost",)
        rows = [(*r, str(c.lost_messages)) for r, c in zip(rows, rec.channels, strict=True)]
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
    for d in rec.damage:
        label = "[yellow]damaged:[/]" if d.lost_messages == 0 else "[red]lost:[/]"
        console.print(f"{label} {escape(d.text)}", highlight=False)
    files = list(dict.fromkeys(d.path for d in rec.damage))
    if rec.damage and all(d.lost_messages == 0 for d in rec.damage):
        console.print(
            f"no message lost; `dora record repair {files[0] if len(files) == 1 else 'FILE'}` "
            "rewrites the damaged part",
            highlight=False,
        )
    elif rec.damage:
        timed = any(d.first_log_time_ns is not None for d in rec.damage)
        console.print(
            f"[red]{_lost(rec)} message(s) lost[/]"
            + (" (times in seconds from the start above); " if timed else "; ")
            + f"`dora record repair {files[0] if len(files) == 1 else 'FILE'}` rewrites a "
            "damaged file with a fresh index and keeps everything readable",
            highlight=False,
        )


def _lost(rec: Any) -> str:
    """``23``, ``at least 23`` or ``an unknown number of``: what the damage of ``rec`` lost."""
    if not rec.lost_unknown:
        return str(rec.lost_messages)
    return f"at least {rec.lost_messages}" if rec.lost_messages else "an unknown number of"


def _count_line(rec: Any) -> str:
    """``960 messages``, or ``937 messages readable, 23 lost,`` for a damaged recording."""
    if all(d.lost_messages == 0 for d in rec.damage):  # none, or damage that lost nothing
        return f"{rec.message_count} messages"
    return f"{rec.readable_messages} messages readable, {_lost(rec).removesuffix(' of')} lost,"


_OVERWRITE = typer.Option("--overwrite", help="Replace OUTPUT if it exists.")


def _warn(line: str) -> None:
    """A warning line on stderr; a ``note:`` line (information, nothing wrong) as it is."""
    if line.startswith("note: "):
        typer.echo(line, err=True)
    else:
        typer.secho(f"warning: {line}", fg="yellow", err=True)


def export(
    path: Annotated[Path, typer.Argument(help="Recording to export.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="MCAP file or Parquet dir.")],
    fmt: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="mcap or parquet (default: mcap for OUTPUT.mcap, parquet for a folder that "
            "exists or a name without suffix).",
        ),
    ] = None,
    overwrite: Annotated[bool, _OVERWRITE] = False,
) -> None:
    """Export to MCAP (JSON messages, viewable in Foxglove) or Parquet (one file per channel)."""
    fmt = fmt or infer_format(output)
    warnings: list[str] = []  # printed after the progress bar is gone
    try:
        with _errors(path), _progress(f"export {fmt.value}") as progress:
            if fmt is ExportFormat.mcap:
                from dora_replay._export_mcap import export_mcap

                n = export_mcap(path, output, progress, overwrite=overwrite, warn=warnings.append)
                typer.echo(f"wrote {n} messages to {output}")
            else:
                from dora_replay._export_parquet import export_parquet

                files = export_parquet(
                    path, output, progress, overwrite=overwrite, warn=warnings.append
                )
                typer.echo(
                    f"wrote {_parquet_rows(files)} messages to {len(files)} Parquet file(s) "
                    f"under {output}"
                )
    finally:
        for line in warnings:
            _warn(line)


def infer_format(output: Path) -> ExportFormat:
    """The export format ``output`` implies: ``.mcap`` -> MCAP; a folder that exists, or a name
    without suffix (a folder to create) -> Parquet. Anything else is a usage error (one line,
    exit 2): ``out.parquet`` could mean a file, and Parquet export writes a folder."""
    if output.suffix.lower() == ".mcap":
        return ExportFormat.mcap
    if output.is_dir() or (not output.exists() and not output.suffix):
        return ExportFormat.parquet
    fail(
        f"cannot tell the export format from -o {output}: pass -f mcap (writes one .mcap file) "
        "or -f parquet (writes a folder of .parquet files)",
        code=2,
    )
    raise AssertionError("fail() exits")


def _parquet_rows(files: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)


def import_(
    path: Annotated[Path, typer.Argument(help="MCAP file (rosbag2 MCAP with CDR works).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The .dora file to write.")],
    overwrite: Annotated[bool, _OVERWRITE] = False,
) -> None:
    """Import an MCAP file (e.g. a rosbag2 .mcap) as a .dora recording."""
    if not path.exists():
        fail(f"{path}: no such file; pass an existing .mcap file")
    from dora_replay._import_mcap import import_mcap
    from dora_replay._records import MAGIC

    with contextlib.suppress(OSError), path.open("rb") as f:
        if f.read(len(MAGIC)) == MAGIC:
            fail(
                f"{path} is a .dora recording already: dora info, dora replay and pytest "
                "--dora-replay read it as it is (dora export turns it into MCAP)"
            )

    try:
        with _errors(path), _progress("import") as progress:
            report = import_mcap(path, output, progress, overwrite=overwrite)
    except typer.Exit:
        raise
    except Exception as e:  # the mcap package raises its own types for damaged files
        fail(f"{path}: cannot import ({type(e).__name__}: {e}); is it a valid MCAP file?")
    raw = f"; kept raw bytes for {', '.join(report.raw)}" if report.raw else ""
    typer.echo(f"imported {report.messages} message(s) on {len(report.channels)} channel(s){raw}")
    if report.cut:
        typer.echo(
            f"note: {path} ends inside a record (cut off, as by a recorder that crashed): "
            f"imported the {report.messages} message(s) before it"
        )
    for topic, channel in report.renamed.items():
        typer.echo(
            f"note: topic `{topic}` imported as `{channel}`: its name maps to a channel "
            "another topic has"
        )
    if report.renumbered:
        typer.echo(
            f"note: seq numbered 0, 1, 2... in time order on {', '.join(report.renumbered)}: "
            "the MCAP's sequence numbers did not increase (rosbag2 writes 0)"
        )


def repair_command(path: Path, output: Path | None = None, overwrite: bool = False) -> Any:
    """``dora record repair PATH [-o OUTPUT] [--overwrite]``: rewrite with a fresh index, report
    what was lost."""
    from dora_replay.repair import repair

    with _errors(path), _progress("repair") as progress:
        report = repair(path, output, progress, overwrite=overwrite)
    typer.echo(report.summary())
    return report
