"""The long-running daemon of ``dora up`` / ``dora daemon``: runs the nodes a coordinator places here.

It connects to the coordinator over WebSocket (reconnecting with exponential backoff and jitter),
runs one ``Daemon`` per dataflow for the nodes placed on this machine, reports node status and
exits, serves log requests, and bridges outputs to and from other daemons over Zenoh. Nodes keep
running while the coordinator is away: on reconnect the daemon re-registers and reports what it
runs and what finished meanwhile, and the coordinator reconciles its state with that.

A dataflow starts in two steps so no message is lost between machines: ``prepare`` (listening
sockets, Zenoh subscriptions and bridge edges exist) on every daemon, then ``spawn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import re
import signal
import sys
from pathlib import Path
from typing import Any

from dora_runtime._spawn import kill_group
from dora_runtime._ws_protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    CoordinatorError,
    Message,
    Peer,
    auth_headers,
    reply,
)
from dora_runtime._zenoh_bridge import DataflowBridge, ZenohLink, free_endpoint, zenoh_config
from dora_runtime.daemon import DEFAULT_GRACE_S, TAP_GRACE_S, Daemon, signal_name
from dora_runtime.errors import DoraError
from dora_runtime.tap import TapSpec

BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 3.0
_LOG_FLUSH_S = 0.05
_TIMER_START_MARGIN_S = 5.0
"""How much longer than a node may take to connect a daemon waits for ``start_timers``."""


class _Aborted(Exception):
    """The coordinator cancelled a dataflow before its nodes were spawned."""


class _Fatal(Exception):
    """This daemon cannot serve (token or registration refused, Zenoh cannot listen): the
    message says why, in one line."""


_LISTEN_HINTS = {
    errno.EADDRINUSE: "pick another port, or leave --zenoh-listen out for a free one",
    errno.EADDRNOTAVAIL: "use an address of this machine (see `ip addr`)",
    errno.EACCES: "ports below 1024 need privileges: pick a port above 1023",
}


def zenoh_listen_error(endpoint: str, error: BaseException) -> str:
    """One line for a Zenoh session that could not listen on ``endpoint`` (Zenoh's own message
    is a Rust error chain with source locations)."""
    text = str(error)
    code = re.search(r"os error (\d+)", text)
    if code is not None:
        n = int(code.group(1))
        hint = _LISTEN_HINTS.get(n, "check the address and port")
        return f"--zenoh-listen {endpoint}: cannot listen there ({os.strerror(n).lower()}): {hint}"
    why = re.split(r"\s+at /\S+", text)[0]
    why = why.split('msg: "', 1)[-1].strip().rstrip(".")
    why = why[:1].lower() + why[1:]
    return (
        f"--zenoh-listen {endpoint}: not an endpoint Zenoh can listen on ({why}); expected "
        "tcp/IP:PORT with an address of this machine, such as tcp/10.0.0.2:7447"
    )


def check_zenoh_listen(endpoint: str) -> None:
    """Open and close a Zenoh session listening on ``endpoint``, so that a port in use or a
    malformed endpoint is reported before the daemon registers; ``DoraError`` if it fails."""
    import zenoh

    try:
        session = zenoh.open(zenoh_config(endpoint, []))
    except Exception as e:  # noqa: BLE001 - zenoh.ZError, and config errors
        raise DoraError(zenoh_listen_error(endpoint, e)) from None
    session.close()


class _Run:
    """This daemon's part of one dataflow."""

    def __init__(self, service: DaemonService, msg: Message) -> None:
        from dora_runtime._descriptor_parse import parse_descriptor

        self.service = service
        self.id: str = msg["dataflow_id"]
        self.name: str = msg.get("name", self.id)
        path = Path(msg.get("descriptor_path") or "dataflow.yml")
        descriptor = parse_descriptor(msg["yaml"], base_dir=path.parent, path=path)
        self.log_dir = service.log_root / self.id
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[str, dict[str, Any]] = {
            n: {"status": "pending", "returncode": None} for n in msg["nodes"]
        }
        self.follow = 0
        self._pending_lines: list[list[str]] = []
        self.go = asyncio.Event()
        self.aborted = False
        self.prepared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.timers_go: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        """The coordinator's ``start_timers``: every machine's nodes are up; its epoch (ns)."""
        self.spawned: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done once every node here was started, or failed to (its first status event)."""
        self.result: dict[str, Any] | None = None
        taps = [TapSpec(**t) for t in msg.get("taps", [])]
        self.daemon = Daemon(
            descriptor,
            dataflow_id=self.id,
            nodes_here=set(msg["nodes"]),
            taps=taps,
            log_dir=self.log_dir,
            grace_s=float(msg.get("grace_s", DEFAULT_GRACE_S)),
            printer=self._print,
            start_gate=self._gate,
            on_status=self._on_status,
            timer_gate=self._timer_gate,
        )
        receivers: dict[str, list[tuple[str, str]]] = {}
        for state in self.daemon.nodes.values():
            if state.tap is not None:
                pairs = [(c, c) for c in state.tap.channels]
            else:
                pairs = [(i.source, i.id) for i in state.spec.inputs.values() if not i.is_timer]
            for source, input_id in pairs:
                if source.split("/", 1)[0] not in self.daemon.nodes:
                    receivers.setdefault(source, []).append((state.socket_path, input_id))
        self.bridge: DataflowBridge | None = None
        if msg.get("publish") or receivers:
            self.bridge = DataflowBridge(
                service.link,
                self.id,
                str(self.daemon.run_dir / "bridge.sock"),
                self.daemon.shm_prefix,
                list(msg.get("publish", [])),
                receivers,
                printer=lambda line: self._print("dora", line),  # in `dora logs` too
            )
            self.daemon.extra_edges.update(self.bridge.edges())
        self.task = asyncio.create_task(self._main())

    async def _gate(self) -> None:
        if self.bridge is not None:
            await self.bridge.start()
        self.prepared.set_result(None)
        await self.go.wait()
        if self.aborted:
            raise _Aborted
        if self.bridge is not None:
            missing = await self.bridge.wait_matched()
            if missing:
                self._print("dora", f"no remote subscriber seen yet for {', '.join(missing)}")
        if not self.nodes:  # only taps here
            self.spawned.set_result(None)

    async def _timer_gate(self) -> int | None:
        """Tell the coordinator every node here is up; wait for every other machine's to be
        (``start_timers``), as long as a node may take to connect, then start anyway."""
        self.service.send_nowait({"type": "nodes_ready", "dataflow_id": self.id})
        wait_s = self.daemon.connect_timeout_s + _TIMER_START_MARGIN_S
        try:
            return await asyncio.wait_for(asyncio.shield(self.timers_go), wait_s)
        except TimeoutError:
            self._print(
                "dora",
                f"no word from the coordinator that every machine's nodes are up after {wait_s:g} "
                "s: starting the timers here",
            )
            return None

    async def _main(self) -> None:
        failures: dict[str, str] = {}
        returncodes: dict[str, int | None] = {}
        try:
            res = await self.daemon.run()
            failures, returncodes = res.failures, res.returncodes
            for node_id in failures:  # the words node_status used (`could not start: ...`)
                failures[node_id] = self.nodes.get(node_id, {}).get("failure") or failures[node_id]
        except _Aborted:
            failures = {}
        except Exception as e:  # noqa: BLE001 - reported to the coordinator as the failure reason
            failures = {"dora": f"daemon error: {type(e).__name__}: {e}"}
            for fut in (self.prepared, self.spawned):
                if not fut.done():
                    fut.set_exception(CoordinatorError(failures["dora"]))
        finally:
            if self.bridge is not None:
                await self.bridge.close()
            self.timers_go.cancel()  # ended before every machine was up: stop waiting
        for fut in (self.prepared, self.spawned):
            if not fut.done():
                fut.set_exception(CoordinatorError("dataflow aborted before it started"))
            fut.exception()  # mark retrieved
        self.result = {"failures": failures, "returncodes": returncodes, "aborted": self.aborted}
        self._flush()
        await self.service.report_done(self)

    def stop(self, grace_s: float | None) -> None:
        if grace_s is not None:
            self.daemon.grace_s = grace_s
        if not self.go.is_set():
            self.aborted = True
            self.go.set()
        else:
            self.daemon.request_stop()

    def _on_status(self, node_id: str, event: str, returncode: int | None) -> None:
        if node_id not in self.nodes:
            return  # a tap
        failure = None
        if event == "running":
            status = "running"
        else:
            status = "finished" if returncode in (0, None) else "failed"
            if status == "failed":
                failure = self._failure(node_id, returncode)
        self.nodes[node_id] = {"status": status, "returncode": returncode, "failure": failure}
        if not self.spawned.done() and all(n["status"] != "pending" for n in self.nodes.values()):
            self.spawned.set_result(None)
        self.service.send_nowait(
            {
                "type": "node_status",
                "dataflow_id": self.id,
                "node": node_id,
                "status": status,
                "returncode": returncode,
                "failure": failure,
            }
        )

    def _failure(self, node_id: str, returncode: int | None) -> str:
        """Why a node failed, as ``dora run`` says it: ``exit 3``, ``signal SIGSEGV``,
        ``killed: did not stop within 5 s``, ``could not start: ...``."""
        state = self.daemon.nodes[node_id]
        if state.killed_after_grace:
            return f"killed: {state.kill_reason}"
        if state.proc is None and state.last_lines:  # the exec failed
            return state.last_lines[-1]
        return signal_name(returncode) or f"exit {returncode}"

    def _print(self, source: str, line: str) -> None:
        if source == "dora":
            with open(self.log_dir / "log_dora.txt", "a", encoding="utf-8") as f:
                f.write(line + "\n")
        if self.follow > 0:
            if not self._pending_lines:
                asyncio.get_running_loop().call_later(_LOG_FLUSH_S, self._flush)
            self._pending_lines.append([source, line])

    def _flush(self) -> None:
        if self._pending_lines:
            lines, self._pending_lines = self._pending_lines, []
            self.service.send_nowait({"type": "log", "dataflow_id": self.id, "lines": lines})

    def not_started(self) -> dict[str, str]:
        """The nodes whose process could not be started (``Exec format error``...), and why."""
        return {
            n: st["failure"]
            for n, st in self.nodes.items()
            if st["status"] == "failed" and self.daemon.nodes[n].proc is None
        }

    def report(self) -> dict[str, Any]:
        return {"id": self.id, "nodes": self.nodes, "result": self.result}


class DaemonService:
    """One daemon process: the coordinator link, the Zenoh session, the dataflows it runs."""

    def __init__(
        self,
        coordinator_url: str,
        machine_id: str,
        labels: dict[str, str],
        state_dir: Path,
        token: str | None = None,
        zenoh_listen: str | None = None,
    ) -> None:
        self.url = coordinator_url
        self.machine_id = machine_id
        self.labels = labels
        self.state_dir = state_dir
        self.log_root = state_dir / "logs"
        self.token = token
        self.link = ZenohLink(zenoh_listen or free_endpoint())
        self.runs: dict[str, _Run] = {}
        self.peer: Peer | None = None
        self._shutdown = asyncio.Event()
        self._last_send: asyncio.Task[None] | None = None

    def say(self, line: str) -> None:
        print(f"daemon {self.machine_id}: {line}", file=sys.stderr, flush=True)

    async def run(self) -> int:
        """Serve until ``shutdown`` (from the coordinator, SIGTERM or SIGINT); returns 0. Raises
        ``DoraError`` (one line) when it cannot serve: Zenoh cannot listen on its endpoint (checked
        before registering), or the coordinator refuses its token or its registration."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        await asyncio.to_thread(check_zenoh_listen, self.link.listen)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._shutdown.set)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        attempt = 0
        connected_once = False
        fatal: str | None = None
        while not self._shutdown.is_set():
            try:
                async with connect(
                    self.url,
                    additional_headers=auth_headers(self.token),
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=5,
                    ping_interval=2,
                    ping_timeout=5,
                ) as ws:
                    attempt = 0
                    connected_once = True
                    await self._session(Peer(ws))
            except _Fatal as e:
                fatal = str(e)
                break
            except InvalidStatus as e:
                code = e.response.status_code
                if code in (401, 403):
                    fatal = (
                        f"the coordinator at {self.url} refused the connection ({code}): wrong or "
                        "missing token (set DORA_TOKEN, or pass --token-file)"
                    )
                    break
            except (OSError, TimeoutError, WebSocketException, CoordinatorError):
                pass
            finally:
                self.peer = None
                for r in self.runs.values():
                    r.follow = 0
            if self._shutdown.is_set():
                break
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.5)
            if attempt == 0 and connected_once:
                self.say(f"coordinator {self.url} unreachable; retrying (nodes keep running)")
            elif attempt == 0:
                self.say(
                    f"coordinator {self.url} unreachable; retrying until it answers (is "
                    "`dora coordinator` or `dora up` running there? --coordinator names another)"
                )
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shutdown.wait(), delay)
        await self._stop_all()
        await asyncio.to_thread(self.link.close)
        if fatal is not None:
            raise DoraError(fatal)
        return 0

    async def _session(self, peer: Peer) -> None:
        reader = asyncio.create_task(peer.serve(self._handle))
        try:
            await self._registered(peer, reader)
        finally:
            if not reader.done():
                await peer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await reader  # its end (a closed connection) is handled by the caller

    async def _registered(self, peer: Peer, reader: asyncio.Task[None]) -> None:
        """Register, then serve the coordinator until the connection ends or we shut down."""
        try:
            answer = await peer.request(
                {
                    "type": "register",
                    "version": PROTOCOL_VERSION,
                    "machine_id": self.machine_id,
                    "labels": self.labels,
                    "zenoh": self.link.listen,
                    "pid": os.getpid(),
                    "dataflows": [r.report() for r in self.runs.values()],
                },
                timeout_s=10,
            )
        except CoordinatorError as e:
            if "already connected" in str(e) or "version" in str(e):
                raise _Fatal(f"the coordinator at {self.url} refused this daemon: {e}") from None
            raise
        if self.link.session is None:
            try:
                await asyncio.to_thread(self.link.open, list(answer.get("peers", [])))
            except Exception as e:  # noqa: BLE001 - zenoh.ZError: taken since we checked it
                with contextlib.suppress(CoordinatorError):
                    await peer.request({"type": "unregister"}, timeout_s=5)
                raise _Fatal(zenoh_listen_error(self.link.listen, e)) from None
        self.peer = peer
        for run_id in [i for i, r in self.runs.items() if r.result is not None]:
            del self.runs[run_id]  # reported in the registration
        self.say(f"registered with {self.url}")
        stop = asyncio.create_task(self._shutdown.wait())
        await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if self._shutdown.is_set() and not reader.done():
            await self._stop_all()  # while connected, so the results reach the coordinator
            with contextlib.suppress(CoordinatorError):  # gone for good: not `disconnected`
                await peer.request({"type": "unregister"}, timeout_s=5)

    def send_nowait(self, msg: Message) -> None:
        """Send an event without waiting; events leave in the order they were given."""
        peer, previous = self.peer, self._last_send
        if peer is None:
            return

        async def send_after_previous() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await peer.send(msg)

        self._last_send = asyncio.create_task(send_after_previous())

    async def report_done(self, run: _Run) -> None:
        if self.peer is None:
            return  # kept in ``runs``; the next registration reports it
        if self._last_send is not None:  # the last log lines and node statuses go first
            with contextlib.suppress(Exception):
                await self._last_send
        try:
            await self.peer.request(
                {"type": "dataflow_done", "dataflow_id": run.id, "result": run.result}
            )
            self.runs.pop(run.id, None)
        except CoordinatorError:
            pass

    async def _handle(self, msg: Message) -> None:
        handler = getattr(self, f"_on_{msg['type']}", None)
        if handler is None:
            if "rid" in msg:
                raise CoordinatorError(f"unknown request `{msg['type']}`")
            return
        answer = await handler(msg)
        if "rid" in msg and self.peer is not None:
            await self.peer.send(reply(msg["rid"], **(answer or {})))

    def _run(self, msg: Message) -> _Run:
        run = self.runs.get(msg.get("dataflow_id", ""))
        if run is None:
            raise CoordinatorError(f"dataflow {msg.get('dataflow_id')} is not running here")
        return run

    async def _on_prepare(self, msg: Message) -> dict[str, Any]:
        if msg["dataflow_id"] in self.runs:
            raise CoordinatorError(f"dataflow {msg['dataflow_id']} already exists here")
        run = _Run(self, msg)
        self.runs[run.id] = run
        await run.prepared
        return {}

    async def _on_spawn(self, msg: Message) -> dict[str, Any]:
        run = self._run(msg)
        run.go.set()
        await run.spawned
        return {"not_started": run.not_started()}

    async def _on_stop(self, msg: Message) -> dict[str, Any]:
        run = self.runs.get(msg["dataflow_id"])
        if run is not None:
            run.stop(msg.get("grace_s"))
        return {}

    async def _on_start_timers(self, msg: Message) -> None:
        run = self.runs.get(msg["dataflow_id"])
        if run is not None and not run.timers_go.done():
            run.timers_go.set_result(int(msg["epoch_ns"]))

    async def _on_remote_exited(self, msg: Message) -> None:
        run = self.runs.get(msg["dataflow_id"])
        if run is not None and run.bridge is not None:
            run.bridge.source_exited(msg["node"])

    async def _on_logs(self, msg: Message) -> dict[str, Any]:
        log_dir = self.log_root / msg["dataflow_id"]
        node = msg.get("node")
        files = [log_dir / f"log_{node}.txt"] if node else sorted(log_dir.glob("log_*.txt"))
        lines: list[list[str]] = []
        for f in files:
            source = f.stem[len("log_") :]
            with contextlib.suppress(FileNotFoundError):
                text = f.read_text(encoding="utf-8", errors="replace")
                lines += [[source, ln] for ln in text.splitlines()]
        run = self.runs.get(msg["dataflow_id"])
        following = bool(msg.get("follow")) and run is not None and run.result is None
        if following:
            run.follow += 1  # type: ignore[union-attr]
        return {"lines": lines, "following": following}

    async def _on_record(self, msg: Message) -> dict[str, Any]:
        run = self._run(msg)
        try:
            channels = await run.daemon.add_tap(TapSpec(**msg["tap"]))
        except DoraError as e:
            raise CoordinatorError(str(e)) from None
        return {"channels": channels}

    async def _on_unfollow(self, msg: Message) -> dict[str, Any]:
        run = self.runs.get(msg["dataflow_id"])
        if run is not None and run.follow > 0:
            run.follow -= 1
        return {}

    async def _on_shutdown(self, msg: Message) -> dict[str, Any]:
        self.say("shutting down: the coordinator asked (`dora destroy`); stopping what runs here")
        asyncio.get_running_loop().call_later(0.05, self._shutdown.set)
        return {}

    async def _stop_all(self) -> None:
        """Stop every dataflow (STOP, then kill after its grace period) and wait for them."""
        runs = [r for r in self.runs.values() if r.result is None]
        for r in runs:
            r.stop(None)
        if not runs:
            return
        limit = max(r.daemon.grace_s for r in runs) + TAP_GRACE_S + 5
        _, pending = await asyncio.wait([r.task for r in runs], timeout=limit)
        for r in runs:
            if r.task in pending:
                for state in r.daemon.nodes.values():
                    if state.proc is not None:
                        kill_group(state.proc.pid)


def run_daemon(
    coordinator_url: str,
    machine_id: str,
    labels: dict[str, str],
    state_dir: Path,
    token: str | None = None,
    zenoh_listen: str | None = None,
) -> int:
    """``dora daemon``: serve in the foreground until shut down; returns the exit status (0), or
    raises ``DoraError`` (see :meth:`DaemonService.run`)."""
    service = DaemonService(coordinator_url, machine_id, labels, state_dir, token, zenoh_listen)
    return asyncio.run(service.run())


__all__ = ["DaemonService", "run_daemon"]
