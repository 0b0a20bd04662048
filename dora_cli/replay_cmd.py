"""``dora replay``: re-run a recording with the sensors played back and compare the outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dora_cli._common import duration, fail, node_printer

if TYPE_CHECKING:
    from dora_replay.replay import NodeOptionError


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _seconds(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return duration(value, option)


def replay(
    recording: Path = typer.Argument(
        ..., metavar="RECORDING", help="The .dora recording to replay."
    ),
    speed: float = typer.Option(
        1.0, "--speed", help="Recorded timing scaled by this (0.1 to 100); 0 = lockstep."
    ),
    dataflow: Path | None = typer.Option(
        None,
        "--dataflow",
        help="Run the live nodes from this dataflow instead of the recorded one.",
    ),
    replace: list[str] = typer.Option(
        [],
        "--replace",
        help="NODE=PATH: run PATH live in place of NODE (repeatable). Without '=' (a,b): replay "
        "these recorded nodes, as in dora-rs.",
    ),
    replay_nodes: str | None = typer.Option(
        None, "--replay-nodes", help="Nodes to replay from the recording: a,b."
    ),
    live_nodes: str | None = typer.Option(None, "--live-nodes", help="Nodes to run live: c,d."),
    start: str | None = typer.Option(None, "--start", help="Start at this many seconds in."),
    end: str | None = typer.Option(None, "--end", help="Stop at this many seconds in."),
    loop: bool = typer.Option(False, "--loop", help="Replay over and over until Ctrl-C."),
    channels: str | None = typer.Option(
        None,
        "--channels",
        help="a/x,b/y: send only these replayed outputs and/or compare only these live outputs.",
    ),
    step: bool = typer.Option(
        False, "--step", help="Show each message and wait for Enter before sending it."
    ),
    tolerance: list[str] = typer.Option(
        [],
        "--tolerance",
        help="CHANNEL:atol=..,rtol=..,ignore_fields=a|b,ignore_metadata=k (repeatable; * = all).",
    ),
    tolerances: Path | None = typer.Option(
        None, "--tolerances", help="TOML file of per-channel tolerances."
    ),
    assert_: bool = typer.Option(
        False,
        "--assert",
        help="Exit 1 if any output differs from the recording, the recording is damaged (some "
        "recorded messages could not be read) or a node failed.",
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write the full result as JSON to this file."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Save the replayed run to this .dora file."
    ),
    log_dir: Path | None = typer.Option(None, "--log-dir", help="Where per-node log files go."),
    stop_after: str | None = typer.Option(
        None,
        "--stop-after",
        help=(
            "Time limit (wall clock, start-up included: 30s, 5m): a replay not finished by "
            "then is stopped and fails (exit 1); with --loop it just ends the loop."
        ),
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not show node output."),
) -> None:
    """Replay RECORDING: feed the recorded sensor messages to live nodes and compare their
    outputs with the recorded ones.

    Nodes fed only by timers (or nothing) are replayed; the rest run live. A live node that
    fails is reported with its log and the command exits 1.
    """
    from dora_replay import RecordingError, ReplayError
    from dora_replay.replay import NodeOptionError
    from dora_replay.replay import replay as run_replay
    from dora_replay.tolerances import as_tolerances, parse_tolerance_flag

    replaced: dict[str, str] = {}
    to_replay = _split([replay_nodes] if replay_nodes else [])
    via_replace: list[str] = []  # `--replace a,b`: replayed nodes, as in dora-rs
    for item in replace:
        if "=" in item:
            node, _, path = item.partition("=")
            if not node or not path:
                fail(f"--replace {item!r}: expected NODE=PATH, e.g. detector=new_detector.py")
            replaced[node.strip()] = path.strip()
        else:
            via_replace += _split([item])
    to_replay += [n for n in via_replace if n not in to_replay]
    try:
        tol = as_tolerances(tolerances)
        for flag in tolerance:
            parse_tolerance_flag(flag, tol)
        printer = None if quiet else node_printer(["dora", "dora-record"])
        result = run_replay(
            recording,
            dataflow=dataflow,
            speed=speed,
            replace=replaced or None,
            replay_nodes=to_replay or None,
            live_nodes=_split([live_nodes] if live_nodes else []) or None,
            start=_seconds(start, "--start"),
            end=_seconds(end, "--end"),
            channels=_split([channels] if channels else []) or None,
            tolerances=tol,
            out=out,
            loop=loop,
            step=step,
            progress=True,
            log_dir=log_dir,
            timeout_s=duration(stop_after, "--stop-after"),
            printer=printer,
        )
    except NodeOptionError as e:
        fail(str(_as_given(e, set(via_replace), set(_split([replay_nodes or ""])))))
        return
    except (ReplayError, RecordingError) as e:
        fail(str(e))
        return
    typer.echo(result.report())
    typer.echo(result.timing.line())
    typer.echo(f"logs in {result.log_dir}")
    if out is not None:
        typer.echo(f"replayed run saved to {out}")
    if report is not None:
        result.write_report(report)
        typer.echo(f"report written to {report}")
    if result.failures:
        raise typer.Exit(1)
    if not assert_:
        return
    wrong = [] if result.comparison.ok else ["outputs differ from the recording"]
    if result.damaged:  # a damaged recording checks less than it claims: no pass for it
        wrong.append(f"the recording is damaged: {result.damage_summary()}")
    if wrong:
        typer.secho(f"error: {'; '.join(wrong)}; see above", fg="red", err=True)
        raise typer.Exit(1)


def _as_given(e: NodeOptionError, via_replace: set[str], via_flag: set[str]) -> NodeOptionError:
    """``e`` naming the flag the user typed: nodes of ``--replace a,b`` reach the library as
    replayed nodes, whose errors name ``--replay-nodes``."""
    if e.option != "--replay-nodes" or not via_replace & set(e.nodes):
        return e
    if via_flag & set(e.nodes):
        return e.renamed("--replace/--replay-nodes")
    return e.renamed("--replace")


__all__ = ["register"]
