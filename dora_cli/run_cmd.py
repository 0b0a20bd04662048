"""``dora run``: run a dataflow on this machine with an embedded daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dora_cli._common import duration, node_printer


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    dataflow: Path = typer.Argument(
        ..., metavar="DATAFLOW", help="The dataflow YAML file (dora-rs 1.x format)."
    ),
    stop_after: str | None = typer.Option(
        None,
        "--stop-after",
        help="Send STOP to every node after this long, as Ctrl-C does (30, 10s, 500ms, 5m); "
        "counted from when every node is up (has created Node()).",
    ),
    log_dir: Path | None = typer.Option(
        None,
        "--log-dir",
        help="Where per-node log files go (log_NODE.txt). Default: out/DATAFLOW-ID/ next to "
        "the dataflow file.",
    ),
    grace: str = typer.Option(
        "5s", "--grace", help="After STOP, how long nodes get to exit before they are killed."
    ),
    record: Path | None = typer.Option(
        None,
        "--record",
        help="Also record every message the nodes send to this .dora file (zstd, 1 s flushes). "
        "`dora record` has more options.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the --record file (and the parts of an earlier split recording of that "
        "name) if it already exists.",
    ),
    uv: bool = typer.Option(
        False,
        "--uv",
        help="Accepted as in dora-rs (`dora run --uv`); .py nodes always run with this "
        "environment's Python, where `dora build --uv` installs when it is active.",
    ),
) -> None:
    """Run a dataflow until every node has exited (or Ctrl-C / --stop-after).

    Each node runs as its own process; its output is shown prefixed with its id and written to
    its log file. A node that fails is reported with its exit code and last log lines; the other
    nodes keep running and `dora run` exits with status 1 at the end. Timers start once every
    node has created Node(); a node that has not after 5 s is named, and after 30 s
    (DORA_CONNECT_TIMEOUT_S) the others start without it.
    """
    opts = None
    if record is not None:
        from dora_replay.recorder import RecordOptions

        opts = RecordOptions(output=str(record), replace_parts=True)
    execute(
        dataflow,
        stop_after=stop_after,
        log_dir=log_dir,
        grace=grace,
        record=opts,
        overwrite=overwrite,
    )


def execute(
    dataflow: Path,
    *,
    stop_after: str | None,
    log_dir: Path | None,
    grace: str,
    record: Any = None,
    record_nodes: list[str] | None = None,
    record_topics: list[str] | None = None,
    overwrite: bool = False,
) -> None:
    """Shared by ``dora run`` and ``dora record``: load, run, report, exit status."""
    from dora_runtime.daemon import run_dataflow
    from dora_runtime.descriptor import load_descriptor

    stop_s = duration(stop_after, "--stop-after")
    grace_s = duration(grace, "--grace")
    descriptor = load_descriptor(dataflow)
    taps = []
    if record is not None:
        from dora_replay._index import DATAFLOW_PATH_KEY
        from dora_replay.recorder import recorder_tap, select_channels

        channels = select_channels(descriptor, record_nodes, record_topics)
        # replay resolves the recorded dataflow's node paths against this folder
        record.metadata.setdefault(DATAFLOW_PATH_KEY, str(Path(dataflow).resolve()))
        taps.append(recorder_tap(descriptor, record, channels, overwrite=overwrite))
    printer = node_printer([n.id for n in descriptor.nodes] + [t.id for t in taps] + ["dora"])
    result = run_dataflow(
        descriptor,
        stop_after_s=stop_s,
        log_dir=log_dir,
        grace_s=grace_s if grace_s is not None else 5.0,
        printer=printer,
        taps=taps,
    )
    for channel, n in sorted(result.drops.items()):
        printer("dora", f"input `{channel}` dropped {n} message(s) (queue full, drop-oldest)")
    printer("dora", f"logs in {result.log_dir}")
    if not result.ok:
        failed = ", ".join(f"{k} ({v})" for k, v in result.failures.items())
        typer.secho(f"error: dataflow finished with failed nodes: {failed}", fg="red", err=True)
        raise typer.Exit(1)
