"""The coordinator: a WebSocket server (JSON, ``docs/protocol.md``) for the CLI and the daemons.

It places nodes on daemons, starts dataflows in two steps (``prepare`` everywhere, then ``spawn``),
tracks node status and exits, relays logs, and keeps everything in SQLite (``state.py``) so that a
restarted coordinator resumes: dataflows that were running become ``recovering`` until their
daemons reconnect and report them, then ``running`` again. A daemon that stays away (died, or
restarted without its nodes) fails its dataflows with the reason. CLI requests are in
``_requests.py``.

Which daemons it lists: the connected ones, and a disconnected one only while it may come back
to dataflows that count on it (``DAEMON_LOST_S`` after its connection dropped, ``RECOVER_S``
after a coordinator restart). Then it is forgotten; so is a daemon that says it leaves for good
(``unregister``: it shut down, or cannot serve), at once, and every daemon on ``destroy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hmac
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dora_runtime._ws_protocol import (
    AUTH_HEADER,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    CoordinatorError,
    Message,
    Peer,
    is_loopback,
    reply,
)
from dora_runtime.coordinator.state import StateStore

LAST_PORT_FILE = "coordinator.port"
"""In the state folder: the port the coordinator last listened on (``dora up`` reuses it)."""
DAEMON_LOST_S = 3.0
"""A disconnected daemon that has not reconnected after this long is considered dead."""
RECOVER_S = 15.0
"""After a restart, how long daemons get to reconnect before their dataflows are failed."""
FINAL_NODE = ("finished", "failed", "lost", "stopped")
FAILED_NODES = "failed nodes: "
"""How the reason of a dataflow with failed nodes starts (``failed nodes: a (exit 3), ...``, as
``dora run`` words its error)."""


def exit_text(returncode: int | None) -> str:
    """``exit 3`` or ``signal SIGKILL``: why a node failed, when its daemon did not say."""
    from dora_runtime.daemon import signal_name

    return signal_name(returncode) or f"exit {returncode}"


@dataclass
class DaemonLink:
    machine_id: str
    labels: dict[str, str]
    zenoh: str | None
    peer: Peer

    def info(self) -> dict[str, Any]:
        return {"machine_id": self.machine_id, "labels": self.labels, "zenoh": self.zenoh}


@dataclass
class Follower:
    """A CLI connection streaming the logs of one dataflow (``dora logs --follow``)."""

    peer: Peer
    dataflow_id: str
    node: str | None
    machines: list[str] = field(default_factory=list)


class Coordinator:
    def __init__(self, state_dir: Path, host: str, port: int, token: str | None) -> None:
        if not is_loopback(host) and not token:
            raise CoordinatorError(
                f"binding {host} (not loopback) requires a token: set DORA_TOKEN or pass "
                "--token-file FILE (mode 0600)"
            )
        self.state_dir = state_dir
        self.host, self.port, self.token = host, port, token
        self.daemons: dict[str, DaemonLink] = {}
        self.followers: list[Follower] = []
        self._done: dict[str, asyncio.Event] = {}
        #: dataflow id -> the grace period given at start (``dora start --grace``), for stops
        #: that give none; not persisted (after a restart the daemons still know it)
        self.start_grace: dict[str, float] = {}
        self._lost_tasks: dict[str, asyncio.Task[None]] = {}
        self._leaving: set[str] = set()
        """Daemons that unregistered: forgotten when their connection closes."""
        self._nodes_ready: dict[str, set[str]] = {}
        """Dataflow id -> machines whose nodes are all up, until every machine's are."""
        self._timer_epochs: dict[str, int] = {}
        """Dataflow id -> the instant (wall clock, ns) its timers count from, once sent."""
        self._exit = asyncio.Event()
        self._lock_fd: int | None = None
        self.state: StateStore
        from dora_runtime.coordinator import _requests

        self.requests = _requests.Requests(self)

    def say(self, line: str) -> None:
        print(f"coordinator: {line}", file=sys.stderr, flush=True)

    # -- lifecycle -------------------------------------------------------------------------

    def _take_lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / "coordinator.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CoordinatorError(
                f"another coordinator is already running with state in {self.state_dir}"
            ) from None
        self._lock_fd = fd
        info = self.state_dir / "coordinator.json"
        if info.exists():
            with contextlib.suppress(ValueError, OSError):
                old = json.loads(info.read_text())
                self.say(
                    f"found state of a coordinator that stopped without cleaning up "
                    f"(pid {old.get('pid')}); resuming from its database"
                )

    async def serve(self) -> None:
        """Serve until ``destroy``, SIGTERM or SIGINT. Dataflows keep running on exit unless
        ``destroy`` stopped them."""
        from websockets.asyncio.server import serve

        self._take_lock()
        self.state = StateStore(self.state_dir / "coordinator.sqlite")
        self._recover()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._exit.set)
        try:
            server = await serve(
                self._connection,
                self.host,
                self.port,
                process_request=self._authorize,
                origins=[None],  # browsers always send Origin: no web page may drive us
                max_size=MAX_MESSAGE_BYTES,
                ping_interval=2,
                ping_timeout=5,
            )
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise CoordinatorError(
                f"port {self.port} on {self.host} is already in use (another coordinator, or "
                "another program); choose another with --port"
            ) from None
        async with server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://{self.host}:{port}"
            info = {"pid": os.getpid(), "host": self.host, "port": port, "url": url}
            tmp = self.state_dir / "coordinator.json.tmp"
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self.state_dir / "coordinator.json")
            # kept after a clean exit too: `dora up` restarts on it, where the daemons retry
            (self.state_dir / LAST_PORT_FILE).write_text(str(port))
            self.say(f"listening on {url}")
            recovery = asyncio.create_task(self._recovery_deadline())
            await self._exit.wait()
            recovery.cancel()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "coordinator.json").unlink()
        self.state.close()

    def shutdown_soon(self) -> None:
        asyncio.get_running_loop().call_later(0.1, self._exit.set)

    def _authorize(self, connection: Any, request: Any) -> Any:
        if not self.token:
            return None
        given = request.headers.get(AUTH_HEADER, "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return None
        return connection.respond(401, "a valid token is required (DORA_TOKEN)\n")

    def _recover(self) -> None:
        """Turn what a previous coordinator left into states this one can finish."""
        self.state.mark_all_daemons_disconnected()
        for row in self.state.dataflows(active_only=True):
            if row.status == "starting":
                self.finalize(row.id, "failed", "the coordinator stopped while it was starting")
            elif row.status == "running":
                self.state.set_status(row.id, "recovering")

    async def _recovery_deadline(self) -> None:
        await asyncio.sleep(RECOVER_S)
        for row in self.state.dataflows(active_only=True):
            for machine in row.machines:
                if machine not in self.daemons:
                    self.part_lost(row.id, machine, "did not reconnect after a coordinator restart")
        for d in self.state.daemons():
            if d["machine_id"] not in self.daemons:
                self._forget(d["machine_id"], f"did not reconnect within {RECOVER_S:g} s")

    # -- connections -----------------------------------------------------------------------

    async def _connection(self, ws: Any) -> None:
        peer = Peer(ws)
        conn: dict[str, Any] = {"machine": None}
        try:
            await peer.serve(lambda msg: self._dispatch(peer, conn, msg))
        except Exception:  # noqa: BLE001 - a broken connection only ends itself
            pass
        finally:
            machine = conn["machine"]
            if machine and self.daemons.get(machine) is not None:
                if self.daemons[machine].peer is peer:
                    self._daemon_disconnected(machine)
            for f in [f for f in self.followers if f.peer is peer]:
                await self.requests.unfollow(f)

    async def _dispatch(self, peer: Peer, conn: dict[str, Any], msg: Message) -> None:
        kind = msg["type"]
        if kind == "register":
            answer = self._register(peer, msg)
            conn["machine"] = msg["machine_id"]
        elif conn["machine"] is not None and kind in (
            "node_status",
            "nodes_ready",
            "dataflow_done",
            "log",
            "unregister",
        ):
            answer = getattr(self, f"_on_{kind}")(conn["machine"], msg)
        else:
            handler = getattr(self.requests, f"on_{kind}", None)
            if handler is None:
                raise CoordinatorError(f"unknown request `{kind}`")
            answer = await handler(peer, msg)
        if "rid" in msg:
            await peer.send(reply(msg["rid"], **(answer or {})))

    # -- daemons ---------------------------------------------------------------------------

    def _register(self, peer: Peer, msg: Message) -> dict[str, Any]:
        machine = msg["machine_id"]
        if msg.get("version") != PROTOCOL_VERSION:
            raise CoordinatorError(
                f"protocol version {msg.get('version')} unsupported; this coordinator speaks "
                f"version {PROTOCOL_VERSION}"
            )
        old = self.daemons.get(machine)
        if old is not None and not old.peer.closed:
            raise CoordinatorError(f"a daemon with machine id `{machine}` is already connected")
        lost = self._lost_tasks.pop(machine, None)
        if lost is not None:
            lost.cancel()
        self._leaving.discard(machine)
        link = DaemonLink(machine, dict(msg.get("labels", {})), msg.get("zenoh"), peer)
        peers = [d.zenoh for d in self.daemons.values() if d.zenoh and d.machine_id != machine]
        self.daemons.pop(machine, None)
        self.daemons[machine] = link
        self.state.upsert_daemon(machine, link.labels, link.zenoh, int(msg.get("pid", 0)))
        self.say(f"daemon `{machine}` registered")
        self._reconcile(link, msg.get("dataflows", []))
        return {"peers": peers}

    def _reconcile(self, link: DaemonLink, reports: list[dict[str, Any]]) -> None:
        """Compare what a (re)connecting daemon runs with what the database says."""
        machine = link.machine_id
        seen = set()
        for rep in reports:
            row = self.state.get(rep["id"])
            seen.add(rep["id"])
            if row is None:
                self.send(machine, {"type": "stop", "dataflow_id": rep["id"]})
                continue
            for node, st in rep.get("nodes", {}).items():
                if node in row.nodes and row.nodes[node]["status"] not in ("lost",):
                    self.state.set_node(row.id, node, st["status"], st.get("returncode"))
                    if st["status"] == "failed":
                        text = st.get("failure") or exit_text(st.get("returncode"))
                        self.add_failures(row.id, {node: text})
            if rep.get("result") is not None:
                self._on_dataflow_done(machine, {"dataflow_id": row.id, "result": rep["result"]})
            elif not row.active:
                self.send(machine, {"type": "stop", "dataflow_id": row.id})
            elif row.status == "stopping":
                self.send(machine, {"type": "stop", "dataflow_id": row.id})
        for row in self.state.dataflows(active_only=True):
            if machine in row.machines and row.id not in seen and row.status != "starting":
                self.part_lost(row.id, machine, "came back without the dataflow (restarted?)")
            row2 = self.state.get(row.id)
            if row2 is not None and row2.status == "recovering":
                if all(m in self.daemons for m in row2.machines):
                    self.state.set_status(row.id, "running")
                    self.say(f"dataflow {row2.name} ({row.id}) recovered: running")

    def _daemon_disconnected(self, machine: str) -> None:
        self.state.set_daemon_connected(machine, False)
        self.daemons.pop(machine, None)
        if self._exit.is_set():
            return
        if machine in self._leaving:
            self._leaving.discard(machine)
            for row in self.state.dataflows(active_only=True):
                if machine in row.machines:
                    self.part_lost(row.id, machine, "shut down")
            self._forget(machine, "shut down")
            return
        self.say(f"daemon `{machine}` disconnected")
        self._lost_tasks[machine] = asyncio.create_task(self._lost_after(machine))

    async def _lost_after(self, machine: str) -> None:
        await asyncio.sleep(DAEMON_LOST_S)
        self._lost_tasks.pop(machine, None)
        if machine in self.daemons:
            return
        for row in self.state.dataflows(active_only=True):
            if machine in row.machines:
                self.part_lost(row.id, machine, f"disconnected for {DAEMON_LOST_S:g} s (died?)")
        self._forget(machine, f"did not reconnect within {DAEMON_LOST_S:g} s")

    def _forget(self, machine: str, why: str) -> None:
        """Drop a daemon that is not connected from the list (``dora list --daemons``); it is
        listed again if it registers again."""
        self.state.remove_daemon(machine)
        self.say(f"daemon `{machine}` {why}; no longer listed")

    def _on_unregister(self, machine: str, msg: Message) -> dict[str, Any]:
        """The daemon leaves for good (shutdown, or it cannot serve): forget it once its
        connection closes, without waiting for it to come back."""
        self._leaving.add(machine)
        return {}

    def part_lost(self, dataflow_id: str, machine: str, why: str) -> None:
        """The nodes of ``dataflow_id`` on ``machine`` are gone: fail the dataflow, stop the rest."""
        row = self.state.get(dataflow_id)
        if row is None:
            return
        if not row.active:
            self.state.mark_part_done(dataflow_id, machine)
            self._check_complete(dataflow_id)
            return
        gone = [n for n, st in row.nodes.items() if st["machine_id"] == machine]
        for node in gone:
            if row.nodes[node]["status"] not in FINAL_NODE:
                self.state.set_node(dataflow_id, node, "lost")
        self.state.mark_part_done(dataflow_id, machine)
        reason = f"daemon `{machine}` {why}; its node(s) {', '.join(gone)} are lost"
        self.say(f"dataflow {row.name} ({dataflow_id}) failed: {reason}")
        self.finalize(dataflow_id, "failed", reason)
        for m in row.machines:
            if m != machine:
                self.send(m, {"type": "stop", "dataflow_id": dataflow_id})

    def send(self, machine: str, msg: Message) -> None:
        link = self.daemons.get(machine)
        if link is not None:
            asyncio.create_task(link.peer.send(msg))

    # -- events from daemons ---------------------------------------------------------------

    def _on_node_status(self, machine: str, msg: Message) -> None:
        df, node = msg["dataflow_id"], msg["node"]
        row = self.state.get(df)
        if row is None or node not in row.nodes:
            return
        self.state.set_node(df, node, msg["status"], msg.get("returncode"))
        if msg["status"] == "failed":
            self.add_failures(df, {node: msg.get("failure") or exit_text(msg.get("returncode"))})
        if msg["status"] in FINAL_NODE:
            for m in row.machines:
                if m != machine:
                    self.send(m, {"type": "remote_exited", "dataflow_id": df, "node": node})

    def _on_nodes_ready(self, machine: str, msg: Message) -> None:
        """Every node of ``machine``'s part is up. Once every machine's is, all of them start
        their timers counting from one instant, so that a 30 Hz camera on one machine and a
        30 Hz IMU on another tick together (up to the machines' clock offset), as they would
        on one machine; each daemon alone would start when its own nodes were up."""
        df = msg["dataflow_id"]
        if df in self._timer_epochs:  # a late report (a daemon that reconnected): same instant
            self._send_start_timers(df, [machine])
            return
        self._nodes_ready.setdefault(df, set()).add(machine)
        self._maybe_start_timers(df)

    def _maybe_start_timers(self, dataflow_id: str) -> None:
        ready = self._nodes_ready.get(dataflow_id)
        row = self.state.get(dataflow_id)
        if ready is None or row is None:
            return
        if not set(row.machines) <= ready | set(row.parts_done):
            return
        del self._nodes_ready[dataflow_id]
        self._timer_epochs[dataflow_id] = time.time_ns()
        self._send_start_timers(dataflow_id, sorted(ready))

    def _send_start_timers(self, dataflow_id: str, machines: list[str]) -> None:
        epoch = self._timer_epochs[dataflow_id]
        for m in machines:
            self.send(m, {"type": "start_timers", "dataflow_id": dataflow_id, "epoch_ns": epoch})

    def _on_dataflow_done(self, machine: str, msg: Message) -> dict[str, Any]:
        df = msg["dataflow_id"]
        row = self.state.get(df)
        if row is None:
            return {}
        result = msg.get("result") or {}
        codes = result.get("returncodes", {})
        failures: dict[str, str] = dict(result.get("failures", {}))
        for node, st in row.nodes.items():
            if st["machine_id"] != machine or st["status"] == "lost":
                continue
            code = codes.get(node, st["returncode"])
            if node in failures:
                self.state.set_node(df, node, "failed", code)
            elif st["status"] not in FINAL_NODE:
                status = "finished" if code in (0, None) else "failed"
                self.state.set_node(df, node, status, code)
                if status == "failed":
                    failures[node] = exit_text(code)
        self.state.mark_part_done(df, machine)
        if failures:  # nodes, and taps (a recorder) or the daemon itself ("dora")
            self.add_failures(df, failures)
        self._maybe_start_timers(df)  # the others no longer wait for this part
        self._check_complete(df)
        return {}

    def add_failures(self, dataflow_id: str, failures: dict[str, str]) -> None:
        """Keep what failed, and say it in the reason while the dataflow is still active (as
        ``dora list`` shows it), unless it already has a reason of its own (a lost daemon)."""
        row = self.state.get(dataflow_id)
        if row is None:
            return
        every = self.state.add_failures(dataflow_id, failures)
        if not row.active or (row.reason and not row.reason.startswith(FAILED_NODES)):
            return
        reason = FAILED_NODES + ", ".join(f"{k} ({v})" for k, v in every.items())
        if reason != row.reason:
            self.state.set_status(dataflow_id, row.status, reason)
            self.say(f"dataflow {row.name} ({dataflow_id}): {reason}")

    def _on_log(self, machine: str, msg: Message) -> None:
        for f in self.followers:
            if f.dataflow_id == msg["dataflow_id"]:
                lines = [ln for ln in msg["lines"] if f.node is None or ln[0] == f.node]
                if lines:
                    asyncio.create_task(f.peer.send({"type": "log", "lines": lines}))

    def _check_complete(self, dataflow_id: str) -> None:
        row = self.state.get(dataflow_id)
        if row is None or not row.complete:
            return
        # A node that failed fails the dataflow, also one stopped on request (a node that crashed
        # earlier, or was killed after the grace period), as with `dora run`.
        failed = [k for k, n in row.nodes.items() if n["status"] in ("failed", "lost")]
        if not row.active:
            self.finalize(dataflow_id, row.status, None)
        elif failed or row.failures or row.reason:
            self.finalize(dataflow_id, "failed", row.reason or FAILED_NODES + ", ".join(failed))
        elif row.status == "stopping":
            self.finalize(dataflow_id, "stopped", None)
        else:
            self.finalize(dataflow_id, "finished", None)

    def finalize(self, dataflow_id: str, status: str, reason: str | None) -> None:
        row = self.state.get(dataflow_id)
        if row is not None and row.active:
            self.state.set_status(dataflow_id, status, reason)
            row = self.state.get(dataflow_id)
        self.done_event(dataflow_id).set()
        if row is not None and row.complete:
            self._nodes_ready.pop(dataflow_id, None)
            self._timer_epochs.pop(dataflow_id, None)
        assert row is not None
        for f in [f for f in self.followers if f.dataflow_id == dataflow_id]:
            if row.complete:
                msg = {"type": "end", "status": row.status, "reason": row.reason}
                asyncio.create_task(f.peer.send(msg))
                self.followers.remove(f)

    def done_event(self, dataflow_id: str) -> asyncio.Event:
        return self._done.setdefault(dataflow_id, asyncio.Event())


def run_coordinator(state_dir: Path, host: str, port: int, token: str | None) -> None:
    """``dora coordinator``: serve in the foreground."""

    async def main() -> None:
        await Coordinator(state_dir, host, port, token).serve()

    asyncio.run(main())
