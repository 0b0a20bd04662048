"""Cluster verbs: ``dora up/destroy/coordinator/daemon/start/list/logs/stop`` (and ``dora record
RUNNING_DATAFLOW``). Handlers parse and call ``dora_runtime.coordinator``."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import typer

from dora_cli._common import duration, fail, node_printer
from dora_runtime._ws_protocol import DEFAULT_PORT

_COORD = typer.Option(
    None, "--coordinator", help="ws://HOST:PORT (default: $DORA_COORDINATOR, else `dora up`'s)."
)
_MACHINE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_TOKEN_FILE = typer.Option(None, "--token-file", help="File (mode 0600) holding the token.")


def register(app: typer.Typer) -> None:
    for name, fn in [
        ("up", up),
        ("destroy", destroy),
        ("coordinator", coordinator),
        ("daemon", daemon),
        ("start", start),
        ("list", list_cmd),
        ("logs", logs),
        ("stop", stop),
    ]:
        app.command(name)(fn)
    _extend_record()


def _client(url: str | None, token_file: Path | None = None):  # -> CoordinatorClient
    from dora_runtime._ws_protocol import find_token
    from dora_runtime.coordinator.client import CoordinatorClient

    return CoordinatorClient(url, token=find_token(token_file))


def up(
    port: int | None = typer.Option(
        None,
        "--port",
        help="Coordinator port. Default: the port the last coordinator with this $DORA_HOME "
        "listened on (its daemons may still be retrying it), else any free port; 0: any free "
        "port.",
        show_default=False,
    ),
) -> None:
    """Start a coordinator and a local daemon in the background (state in $DORA_HOME)."""
    from dora_runtime.coordinator.local import up as do_up

    for line in do_up(port=port):
        typer.echo(line)


def destroy(
    grace: str | None = typer.Option(
        None,
        "--grace",
        help="Grace period for running nodes (default: each dataflow's, from `dora start "
        "--grace`, else 5s).",
        show_default=False,
    ),
    coordinator: str | None = _COORD,
) -> None:
    """Stop every dataflow, the coordinator, and every daemon connected to it: the one `dora up`
    started, and also those started by hand with `dora daemon` (on any machine; each logs why
    it exits)."""
    from dora_runtime.coordinator.client import COORDINATOR_ENV, read_info
    from dora_runtime.coordinator.local import destroy as do_destroy
    from dora_runtime.coordinator.local import request_destroy

    grace_s = duration(grace, "--grace")
    url = coordinator or os.environ.get(COORDINATOR_ENV)
    info = read_info()
    if url and (info is None or info["url"] != url):  # not the one `dora up` started here
        said = request_destroy(url, grace_s)
        said.append(f"the coordinator at {url} and its daemons are shutting down")
    else:
        said = do_destroy(grace_s=grace_s)
    for line in said:
        typer.echo(line)


def coordinator(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (non-loopback needs a token)."
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to listen on (0: any free port)."),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="Default: $DORA_HOME."),
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """Run the coordinator in the foreground (for systemd and clusters)."""
    from dora_runtime._ws_protocol import dora_home, find_token
    from dora_runtime.coordinator.server import run_coordinator

    run_coordinator(state_dir or dora_home(), host, port, find_token(token_file))


def daemon(
    coordinator_url: str | None = typer.Option(
        None,
        "--coordinator",
        help="The coordinator's ws://HOST:PORT (default: $DORA_COORDINATOR, else the one "
        f"`dora up` started, else ws://127.0.0.1:{DEFAULT_PORT}, `dora coordinator`'s port).",
    ),
    machine_id: str = typer.Option(
        "local",
        "--machine-id",
        help="This daemon's machine id, as `deploy: machine:` names it (nodes without `deploy:` "
        "run on `local`).",
    ),
    labels: list[str] = typer.Option([], "--labels", help="k=v labels for placement; repeatable."),
    zenoh_listen: str | None = typer.Option(
        None, "--zenoh-listen", help="Zenoh endpoint for other daemons (tcp/IP:PORT)."
    ),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="Default: $DORA_HOME/daemons/ID."
    ),
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """Run a daemon in the foreground: it runs the nodes the coordinator places on it."""
    from dora_runtime._ws_protocol import dora_home, find_token
    from dora_runtime.daemon_service import run_daemon

    if not _MACHINE_ID.fullmatch(machine_id):
        fail(
            f"--machine-id {machine_id!r}: use letters, digits, '-', '_' and '.', not starting "
            "with '.' (it names the daemon's state folder and `_unstable_deploy: machine:`)"
        )
    parsed: dict[str, str] = {}
    for item in labels:
        for part in item.split(","):
            key, sep, val = part.partition("=")
            if not sep or not key:
                fail(f"--labels {part!r}: expected KEY=VALUE, e.g. --labels gpu=true")
            parsed[key.strip()] = val.strip()
    url = _daemon_coordinator(coordinator_url)
    home = state_dir or dora_home() / "daemons" / machine_id
    code = run_daemon(url, machine_id, parsed, home, find_token(token_file), zenoh_listen)
    raise typer.Exit(code)


def _daemon_coordinator(given: str | None) -> str:
    """Where a daemon connects: as the other commands find the coordinator, else the port
    `dora coordinator` listens on by default. Refuses what is not a ws:// or wss:// URL."""
    from dora_runtime._ws_protocol import CoordinatorError
    from dora_runtime.coordinator.client import coordinator_url

    try:
        url = coordinator_url(given)
    except CoordinatorError:  # nothing running here yet: the daemon waits for it
        url = f"ws://127.0.0.1:{DEFAULT_PORT}"
    if not url.startswith(("ws://", "wss://")):
        fail(f"--coordinator {url!r}: expected ws://HOST:PORT (or wss://)", code=2)
    return url


def start(
    dataflow: Path = typer.Argument(..., metavar="DATAFLOW", help="The dataflow YAML file."),
    name: str | None = typer.Option(None, "--name", help="A name to refer to it by."),
    attach: bool = typer.Option(False, "--attach", help="Stream its logs until it ends."),
    record: Path | None = typer.Option(None, "--record", help="Record it to this .dora file."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an existing --record file (and the parts NAME_NNN.dora of an earlier split "
        "recording under that name).",
    ),
    grace: str | None = typer.Option(None, "--grace", help="Default grace period for stop."),
    url: str | None = _COORD,
) -> None:
    """Start a dataflow on the running daemons; returns once every node's process was started
    (prints its name and id). Exits 1 if a node could not be started (the others keep running)."""
    from dora_runtime.descriptor import load_descriptor

    descriptor = load_descriptor(dataflow)  # report YAML errors here, with the file's lines
    taps = []
    if record is not None:
        from dora_replay._index import DATAFLOW_PATH_KEY
        from dora_replay.recorder import RecordOptions, recorder_tap, select_channels

        opts = RecordOptions(output=str(record), replace_parts=True)  # as `dora run --record`
        opts.metadata.setdefault(DATAFLOW_PATH_KEY, str(dataflow.resolve()))
        tap = recorder_tap(descriptor, opts, select_channels(descriptor), overwrite=overwrite)
        taps.append(
            {k: getattr(tap, k) for k in ("id", "command", "channels", "env", "queue_size")}
        )
    msg = {
        "type": "start",
        "descriptor_path": str(dataflow.resolve()),
        "yaml": descriptor.text or dataflow.read_text(encoding="utf-8"),
        "name": name,
        "taps": taps,
        "grace_s": duration(grace, "--grace"),
    }
    with _client(url) as c:
        answer = c.request(msg, timeout_s=90)
        name = answer["name"]
        typer.echo(f"dataflow {name} started: {answer['id']}")
        bad = answer.get("not_started") or {}
        if bad:
            why = ", ".join(f"{k} ({v.removeprefix('could not start: ')})" for k, v in bad.items())
            others = len(descriptor.nodes) - len(bad)
            tail = f"; the other {others} node(s) run: `dora stop {name}` stops them"
            message = f"dataflow {name} started, but node(s) could not start: {why}"
            if not attach:
                fail(message + (tail if others else ""))
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        if attach:
            _attach(c, answer["id"], answer["name"], [n.id for n in descriptor.nodes])


def _attach(client: Any, dataflow_id: str, name: str, node_ids: list[str]) -> None:
    """Print logs until the dataflow ends; Ctrl-C stops it."""
    from dora_runtime.coordinator.client import CoordinatorLost

    printer = node_printer([*node_ids, "dora"])
    answer = client.request({"type": "logs", "dataflow": dataflow_id, "follow": True})
    for source, line in answer["lines"]:
        printer(source, line)
    status = answer["status"]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if answer["following"]:
            for event in client.events():
                if event["type"] == "log":
                    for source, line in event["lines"]:
                        printer(source, line)
                elif event["type"] == "end":
                    status = event["status"]
                    if event.get("reason"):
                        printer("dora", event["reason"])
    except CoordinatorLost as e:
        _lost(e, name)
    except KeyboardInterrupt:
        printer("dora", "stopping the dataflow")
        with _client(client.url) as c:
            stopped = c.request({"type": "stop", "dataflow": dataflow_id}, timeout_s=None)
        status = stopped["status"]
        if stopped.get("reason"):
            printer("dora", stopped["reason"])
    finally:
        signal.signal(signal.SIGINT, previous)
    if status == "failed":
        raise typer.Exit(1)


def _lost(e: Exception, name: str) -> None:
    """The coordinator went away while we followed ``name``: say so in one line, exit 1. Its
    nodes do not depend on the coordinator; they keep running on their daemons."""
    fail(
        f"{e}; dataflow `{name}` may still be running: once the coordinator is back (`dora up`, "
        f"or `dora coordinator` with the same state), see `dora list` and `dora logs {name} -f`"
    )


def list_cmd(
    daemons: bool = typer.Option(False, "--daemons", help="List the daemons instead."),
    url: str | None = _COORD,
) -> None:
    """List dataflows: name, id, status, nodes, uptime (or the daemons with --daemons)."""
    with _client(url) as c:
        if daemons:
            rows = c.request({"type": "daemons"})["daemons"]
            typer.echo(f"{'MACHINE':<16} {'STATUS':<13} {'ZENOH':<26} LABELS")
            for d in rows:
                labels = ",".join(f"{k}={v}" for k, v in d["labels"].items())
                state = "connected" if d["connected"] else "disconnected"
                typer.echo(f"{d['machine_id']:<16} {state:<13} {d['zenoh'] or '-':<26} {labels}")
            return
        rows = c.request({"type": "list"})["dataflows"]
    typer.echo(f"{'NAME':<20} {'ID':<36} {'STATUS':<11} {'NODES':<11} {'UPTIME':>8}  REASON")
    for r in rows:
        nodes = f"{r['running']}/{r['nodes']}"
        reason = r["reason"] or ""
        typer.echo(
            f"{r['name']:<20} {r['id']:<36} {r['status']:<11} {nodes:<11} "
            f"{_fmt_uptime(r['uptime_s']):>8}  {reason}"
        )


def _fmt_uptime(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


def logs(
    dataflow: str = typer.Argument(..., metavar="DATAFLOW", help="Dataflow name or id."),
    node: str | None = typer.Argument(None, metavar="NODE", help="Only this node (default: all)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming new lines."),
    url: str | None = _COORD,
) -> None:
    """Print a dataflow's logs (one node's, or all), optionally following them (until it ends;
    exits 1 if the coordinator goes away meanwhile)."""
    from dora_runtime.coordinator.client import CoordinatorLost

    with _client(url) as c:
        answer = c.request({"type": "logs", "dataflow": dataflow, "node": node, "follow": follow})
        for m in answer["unavailable"]:
            typer.secho(f"warning: daemon `{m}` is not connected; its logs are missing", err=True)
        many = node is None
        for source, line in answer["lines"]:
            typer.echo(f"{source}: {line}" if many else line)
        if answer["following"]:
            try:
                for event in c.events():
                    for source, line in event.get("lines", []):
                        typer.echo(f"{source}: {line}" if many else line)
            except CoordinatorLost as e:
                _lost(e, dataflow)
            except KeyboardInterrupt:
                pass


def stop(
    dataflow: str = typer.Argument(..., metavar="DATAFLOW", help="Dataflow name or id."),
    grace: str | None = typer.Option(
        None,
        "--grace",
        help="Time after STOP before nodes are killed (default: the dataflow's `dora start "
        "--grace`, else 5s).",
    ),
    url: str | None = _COORD,
) -> None:
    """Send STOP to every node of a dataflow; kill what is left after the grace period. Exits 1
    when the dataflow failed: a node failed (before or while stopping), or was killed after the
    grace period."""
    grace_s = duration(grace, "--grace")
    start_t = time.monotonic()
    with _client(url) as c:
        answer = c.request({"type": "stop", "dataflow": dataflow, "grace_s": grace_s}, None)
    took = time.monotonic() - start_t
    name, status, reason = answer["name"], answer["status"], answer.get("reason")
    if not answer.get("was_active", True):
        if status == "failed":
            fail(f"dataflow {name} had already failed: {reason or 'no reason given'}")
        typer.echo(f"dataflow {name} was already {status}: nothing to stop")
    elif status == "failed":
        fail(f"dataflow {name} failed (stopping took {took:.1f} s): {reason or 'no reason given'}")
    else:
        typer.echo(f"dataflow {name}: {status} (stopping took {took:.1f} s)")


def record_running(
    dataflow: str = typer.Argument(
        ..., metavar="DATAFLOW", help="Name or id of a running dataflow."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="The .dora file to write."),
    nodes: str | None = typer.Option(None, "--nodes", help="Record only these nodes: a,b"),
    topics: str | None = typer.Option(None, "--topics", help="Record only these outputs: a/x"),
    compression: str = typer.Option("zstd", "--compression", help="zstd, zstd:LEVEL, lz4, none"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUTPUT if it exists."),
    url: str | None = _COORD,
) -> None:
    """Attach a recorder to a running dataflow: it records every message sent from now until
    the dataflow stops (on the machine that runs it)."""
    from dora_cli.record_cmd import record_options
    from dora_replay._index import DATAFLOW_PATH_KEY
    from dora_replay.recorder import recorder_tap

    opts = record_options(output, compression, None, None, None, [])
    patterns = (
        [t.strip() for t in topics.split(",") if t.strip()]
        if topics
        else [f"{n.strip()}/*" for n in nodes.split(",") if n.strip()]
        if nodes
        else ["*"]
    )
    from dora_runtime._ws_protocol import CoordinatorError

    try:
        client = _client(url)
    except CoordinatorError as e:  # maybe a file name mistyped rather than a dataflow's name
        fail(f"{dataflow}: no such file, and no running dataflow to attach to: {e}")
    with client as c:
        row = c.request({"type": "dataflow", "dataflow": dataflow})
        if row.get("descriptor_path"):  # as `dora start --record` stores it: replay needs it
            opts.metadata.setdefault(DATAFLOW_PATH_KEY, row["descriptor_path"])
        tap = recorder_tap(None, opts, patterns, overwrite=overwrite)  # type: ignore[arg-type]
        answer = c.request({"type": "record", "dataflow": row["id"], "tap": tap.__dict__})
    typer.echo(
        f"recording {len(answer['channels'])} channel(s) of `{answer['name']}` to {output} "
        "until it stops"
    )


def _extend_record() -> None:
    """``dora record X -o F``: X an existing file runs and records it (as before); otherwise X
    names a running dataflow."""
    from dora_cli import record_cmd

    base = record_cmd.app.info.cls
    if getattr(base, "_dora_cluster", False):
        return

    class _Group(base):  # type: ignore[misc,valid-type]
        _dora_cluster = True

        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            first = args[0] if args else ""
            if (
                first
                and first not in self.commands
                and not first.startswith("-")
                and not Path(first).exists()
                and not first.endswith((".yml", ".yaml"))  # a mistyped file: say it is missing
            ):
                args = ["running", *args]
            return super().parse_args(ctx, args)

    record_cmd.app.info.cls = _Group
    record_cmd.app.command("running", hidden=True, cls=record_cmd.DefaultCommand)(record_running)


__all__ = ["register"]
