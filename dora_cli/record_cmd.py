"""``dora record``: run a dataflow and record what its nodes send; ``dora record repair``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from dora_cli._common import duration, fail


class _RecordGroup(TyperGroup):
    """``dora record DATAFLOW ...`` runs the default command; ``dora record repair`` the other."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # `dora record --help` shows the recording options (the common case) rather than a
        # list of one sub-command; that help names `dora record repair` too.
        if not args or args[0] not in self.commands:  # bare: "missing DATAFLOW", as `dora run`
            args = ["dataflow", *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        # usage reads `dora record [OPTIONS] DATAFLOW`, not `dora record dataflow ...`
        return ("" if name in ("dataflow", "running") else name), cmd, rest


class _Context(typer.Context):
    @property
    def command_path(self) -> str:
        return super().command_path.rstrip()  # the unnamed default command: no double space


class DefaultCommand(TyperCommand):
    """A command of ``dora record`` run without its name (usage: ``dora record [OPTIONS] ...``)."""

    context_class = _Context


app = typer.Typer(
    rich_markup_mode="markdown",
    cls=_RecordGroup,
    help="Record a dataflow run to a .dora file (`dora record DATAFLOW -o run.dora`), or "
    "repair a recording (`dora record repair run.dora`).",
    no_args_is_help=True,
)


def parse_size(value: str | None, option: str) -> int | None:
    """``"64MiB"``, ``"1GB"``, ``"4096"`` → bytes."""
    if value is None:
        return None
    units = {
        "": 1,
        "b": 1,
        "k": 1e3,
        "kb": 1e3,
        "kib": 1024,
        "m": 1e6,
        "mb": 1e6,
        "mib": 2**20,
        "g": 1e9,
        "gb": 1e9,
        "gib": 2**30,
    }
    text = value.strip().lower()
    num = text.rstrip("abgikm")
    unit = text[len(num) :]
    try:
        n = float(num) * units[unit]
    except (ValueError, KeyError):
        fail(f"{option} {value!r}: expected a size such as 4096, 512KiB, 64MiB or 1GB")
    if n <= 0:
        fail(f"{option} {value!r}: must be > 0")
    return int(n)


def parse_meta(items: list[str]) -> dict[str, str]:
    meta = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            fail(f"--meta {item!r}: expected KEY=VALUE, e.g. --meta robot=r2")
        meta[key] = val
    return meta


def record_options(
    output: Path,
    compression: str,
    chunk_size: str | None,
    split_size: str | None,
    split_duration: str | None,
    meta: list[str],
):  # -> RecordOptions
    from dora_replay._chunk import parse_compression
    from dora_replay.recorder import RecordOptions

    try:
        parse_compression(compression)
    except (ValueError, Exception) as e:  # noqa: BLE001 - report any parse failure as one line
        fail(f"--compression {compression!r}: {e}")
    opts = RecordOptions(
        output=str(output),
        compression=compression,
        metadata=parse_meta(meta),
        replace_parts=True,  # --overwrite replaces the earlier recording of that name, parts too
    )
    if chunk_size:
        opts.chunk_size_bytes = parse_size(chunk_size, "--chunk-size") or opts.chunk_size_bytes
    opts.split_size_bytes = parse_size(split_size, "--split-size")
    opts.split_duration_s = duration(split_duration, "--split-duration")
    return opts


@app.command("dataflow", hidden=True, cls=DefaultCommand)
def record_dataflow(
    dataflow: Path = typer.Argument(
        ..., metavar="DATAFLOW", help="The dataflow YAML file to run and record."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="The .dora file to write."),
    nodes: str | None = typer.Option(None, "--nodes", help="Record only these nodes' outputs: a,b"),
    topics: str | None = typer.Option(None, "--topics", help="Record only these outputs: a/x,b/y"),
    compression: str = typer.Option("zstd", "--compression", help="zstd, zstd:LEVEL, lz4 or none"),
    chunk_size: str | None = typer.Option(
        None, "--chunk-size", help="Uncompressed bytes per chunk (default 4MiB)."
    ),
    split_size: str | None = typer.Option(
        None, "--split-size", help="Start a new file past this size, e.g. 1GB (default: one file)."
    ),
    split_duration: str | None = typer.Option(
        None,
        "--split-duration",
        help="Start a new file every DURATION, e.g. 10m (default: one file).",
    ),
    meta: list[str] = typer.Option(
        [], "--meta", help="KEY=VALUE stored in the header; repeatable."
    ),
    stop_after: str | None = typer.Option(
        None, "--stop-after", help="Stop the dataflow after this long."
    ),
    log_dir: Path | None = typer.Option(None, "--log-dir", help="Where per-node log files go."),
    grace: str = typer.Option("5s", "--grace", help="After STOP, time before nodes are killed."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace OUTPUT if it exists, and delete every part OUTPUT_001... of an earlier "
        "split recording of that name.",
    ),
) -> None:
    """Run DATAFLOW and record every message its nodes send (or a selection) to a .dora file.

    Stops like `dora run` (Ctrl-C, --stop-after); the recorder keeps everything flushed (at
    least every second) even if the run is killed. To fix a recording cut short by a crash:
    `dora record repair run.dora`.

    DATAFLOW may also be the name or id of a dataflow started with `dora start`: a recorder
    attaches to it and records from then until it stops (options there: -o, --nodes, --topics,
    --compression, --overwrite).
    """
    from dora_cli.run_cmd import execute

    opts = record_options(output, compression, chunk_size, split_size, split_duration, meta)
    execute(
        dataflow,
        stop_after=stop_after,
        log_dir=log_dir,
        grace=grace,
        record=opts,
        record_nodes=_split(nodes),
        record_topics=_split(topics),
        overwrite=overwrite,
    )


@app.command("repair")
def repair(
    path: Path = typer.Argument(
        ..., metavar="PATH", help="The .dora file to repair (e.g. after a crash)."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write here instead of in place."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUTPUT if it is another file that exists."
    ),
) -> None:
    """Rewrite a crashed or damaged recording with a fresh index; says what was recovered and lost."""
    from dora_cli.recording_cmds import repair_command

    repair_command(path, output, overwrite)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None
