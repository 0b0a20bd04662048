"""The daemon: spawns a dataflow's nodes, wires their edges, runs timers, stops and cleans up.

``dora run`` runs a ``Daemon`` inside the CLI process. Per node the daemon creates a listening Unix
socket before anything starts (so a sender can always connect, even before its receiver runs), and
passes it to the node; nodes connect to each other directly for data and to the daemon's control
socket for registration, drop statistics, STOP and exit notices (``docs/protocol.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dora_runtime import _framing
from dora_runtime._config import EdgeConfig, InputConfig, NodeConfig
from dora_runtime._ids import uuid7
from dora_runtime._shm import segment_creator, unlink_segments
from dora_runtime._spawn import (
    kill_group,
    node_command,
    node_env,
    pid_alive,
    pinned_cores,
    preexec,
)
from dora_runtime._zenoh_bridge import BRIDGE_NODE
from dora_runtime.descriptor import Descriptor, NodeSpec
from dora_runtime.errors import DoraError
from dora_runtime.tap import TapSpec

Printer = Callable[[str, str], None]
"""``printer(source, line)``: source is a node id or ``"dora"``."""

StatusCallback = Callable[[str, str, "int | None"], None]
"""``on_status(node_id, event, returncode)``: event is ``"running"`` (spawned) or ``"exited"``."""

DEFAULT_GRACE_S = 5.0
TAP_GRACE_S = 30.0
CONNECT_NOTE_S = 5.0
"""After this long without every node connected, the daemon names the ones it waits for."""
CONNECT_TIMEOUT_S = 30.0
"""Timers and ``--stop-after`` start at the latest this long after the nodes were started
(``DORA_CONNECT_TIMEOUT_S`` in the environment of ``dora run`` overrides it)."""
_LAST_LINES = 12
_DRAIN_AFTER_EXIT_S = 0.5


@dataclass
class NodeState:
    spec: NodeSpec
    socket_path: str
    listen: socket.socket | None = None
    proc: asyncio.subprocess.Process | None = None
    control: asyncio.StreamWriter | None = None
    registered: bool = False
    exited: bool = False
    returncode: int | None = None
    killed_after_grace: bool = False
    kill_reason: str = ""
    drops: dict[str, int] = field(default_factory=dict)
    last_lines: deque[str] = field(default_factory=lambda: deque(maxlen=_LAST_LINES))
    log_file: Any = None
    tap: TapSpec | None = None
    idle: tuple[dict[str, int], dict[str, int]] | None = None  # lockstep: (received, sent)
    barrier: int | None = None
    barrier_key: int = 0


@dataclass
class DataflowResult:
    dataflow_id: str
    returncodes: dict[str, int | None]
    failures: dict[str, str]
    drops: dict[str, int]
    log_dir: Path

    @property
    def ok(self) -> bool:
        return not self.failures


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise DoraError(f"{name}={raw!r}: expected a number of seconds, e.g. 60") from None
    if value <= 0:
        raise DoraError(f"{name}={raw!r}: expected a number of seconds above 0")
    return value


_TIMER_BUFFER_MAX = 1 << 16
"""Bytes of timer ticks queued towards a node that does not read them, beyond which ticks are
not queued (a stuck node would otherwise grow the daemon's memory without bound)."""


def stdout_to_devnull() -> None:
    """Point fd 1 at /dev/null: what is still buffered for a closed pipe, and what is
    printed after, goes nowhere instead of raising again (at exit too)."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def node_list(ids: list[str]) -> str:
    """``node `a``` or ``nodes `a`, `b```, for messages naming nodes."""
    return ("node " if len(ids) == 1 else "nodes ") + ", ".join(f"`{i}`" for i in ids)


def _default_printer(source: str, line: str) -> None:
    print(f"{source}: {line}", flush=True)


class _SteppedTimer:
    """A timer of a lockstep replay: its ticks go out one at a time, each when the daemon
    releases it (``_check_barriers``), with the seqs the recording's ticks had."""

    def __init__(
        self,
        source: str,
        writers: list[tuple[str, asyncio.StreamWriter]],
        ticks: list[tuple[int, int]],
    ) -> None:
        self.source = source
        self.writers = writers
        self.ticks = ticks  # (seq, order key), in sending order
        self.next = 0

    @property
    def key(self) -> int | None:
        """The order key of the next tick; None once every tick was sent."""
        return self.ticks[self.next][1] if self.next < len(self.ticks) and self.writers else None

    def send(self) -> list[str]:
        """Send the next tick; returns the nodes it went to."""
        seq = self.ticks[self.next][0]
        self.next += 1
        return _write_tick(self.writers, seq, capped=False)


def _write_tick(
    writers: list[tuple[str, asyncio.StreamWriter]], seq: int, capped: bool = True
) -> list[str]:
    """Write timer tick ``seq`` to each (node, connection) still open (closed ones are dropped
    from ``writers``); ``capped``: not to a node that is not reading (``_TIMER_BUFFER_MAX``
    bytes queued towards it), whose tick is then not queued. Returns the nodes written to."""
    frame = _framing.encode(["M", seq, time.time_ns(), None, {}, "n"])
    sent = []
    for node_id, w in list(writers):
        if w.is_closing():
            writers.remove((node_id, w))
        elif not capped or w.transport.get_write_buffer_size() < _TIMER_BUFFER_MAX:
            w.write(frame)
            sent.append(node_id)
    return sent


class Daemon:
    """Runs one dataflow on this machine until every node has exited."""

    def __init__(
        self,
        descriptor: Descriptor,
        *,
        log_dir: Path | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        printer: Printer = _default_printer,
        taps: list[TapSpec] | None = None,
        lockstep: bool = False,
        feeders: set[str] | None = None,
        dataflow_id: str | None = None,
        nodes_here: set[str] | None = None,
        extra_edges: dict[str, list[EdgeConfig]] | None = None,
        start_gate: Callable[[], Awaitable[None]] | None = None,
        on_status: StatusCallback | None = None,
        timer_gate: Callable[[], Awaitable[int | None]] | None = None,
        lockstep_timers: dict[str, list[tuple[int, int]]] | None = None,
        timed_ticks: dict[str, list[tuple[int, int]]] | None = None,
        replay_start: Callable[[], Awaitable[int]] | None = None,
        timer_speed: float = 1.0,
    ) -> None:
        """The keywords after ``feeders`` serve the cluster daemon (``daemon_service``):
        ``dataflow_id`` shared by every machine; ``nodes_here`` the subset of nodes placed on this
        machine (default: all); ``extra_edges`` more receivers per ``node/output`` channel (the
        cross-machine bridge); ``start_gate`` awaited once every listening socket exists and
        before any node is spawned; ``on_status`` told when a node starts and exits;
        ``timer_gate`` awaited once every node here is up, before the timers start: it returns
        the wall-clock time (ns) every machine's timers count their ticks from, so that timers
        of one period tick together on every machine (``None``: from now).

        A replay passes the last four: ``lockstep_timers`` (with ``lockstep``), per timer source
        the ticks to send as ``(seq, order key)``, each sent as a feeder sends a message: when
        every node is idle and no feeder waits with a smaller key; ``timed_ticks``, per timer
        source the ticks as ``(seq, ns after the start)``, sent at those times after
        ``replay_start()`` (the monotonic time the feeders start from); ``timer_speed``, the
        factor a timed replay scales time by, for the other timers."""
        self.connect_timeout_s = _env_seconds("DORA_CONNECT_TIMEOUT_S", CONNECT_TIMEOUT_S)
        self.descriptor = descriptor
        self.dataflow_id = dataflow_id or uuid7()
        self._short = self.dataflow_id.replace("-", "")[-12:]
        self.shm_prefix = f"dora-{self._short}-"
        self.log_dir = log_dir or descriptor.base_dir / "out" / self.dataflow_id
        self.grace_s = grace_s
        self.lockstep = lockstep
        self.feeders = set(feeders or ())
        self._output_closed = False
        self.printer = self._guard_output(printer)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DoraError(
                f"cannot create the log folder {self.log_dir}: {e.strerror}; "
                "pass --log-dir with a writable folder"
            ) from None
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"dora-{self._short}-"))
        self.nodes: dict[str, NodeState] = {
            n.id: NodeState(n, str(self.run_dir / f"n{i}.sock"))
            for i, n in enumerate(descriptor.nodes)
            if nodes_here is None or n.id in nodes_here
        }
        self.extra_edges = extra_edges if extra_edges is not None else {}
        self._start_gate = start_gate
        self._on_status = on_status
        self._timer_gate = timer_gate
        self._lockstep_timers = lockstep_timers or {}
        self._timed_ticks = timed_ticks or {}
        self._replay_start = replay_start
        self._timer_speed = timer_speed
        self._stepped: list[_SteppedTimer] = []  # lockstep timers, once connected
        self._stepped_ready = not self._lockstep_timers
        self._ticks_to: dict[str, int] = {}  # lockstep: timer ticks sent to each node
        for i, tap in enumerate(taps or []):
            spec = NodeSpec(id=tap.id, path=tap.command[0], env=dict(tap.env))
            self.nodes[tap.id] = NodeState(spec, str(self.run_dir / f"t{i}.sock"), tap=tap)
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._all_exited = asyncio.Event()
        self._timer_tasks: list[asyncio.Task[None]] = []
        self._timer_writers: list[asyncio.StreamWriter] = []
        self._ready = asyncio.Event()
        self._ready_task: asyncio.Future[None] | None = None
        self._given_up: set[str] = set()  # nodes still unconnected when the wait for them ended
        self._waiters: list[asyncio.Task[None]] = []
        self._running = False

    # -- public --------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: send STOP to every node and kill stragglers after the grace period."""
        self._stop_requested.set()

    async def run(self, stop_after_s: float | None = None) -> DataflowResult:
        for name in clean_stale_runs():
            self._say(f"removed {name}, left by a dora process that was killed")
        for note in self.descriptor.ignored_outputs():
            self._say(f"note: {note}")
        (self.run_dir / "daemon.pid").write_text(str(os.getpid()))
        server = await asyncio.start_unix_server(
            self._on_control, path=str(self.run_dir / "daemon.sock")
        )
        try:
            for state in self.nodes.values():
                self._listen(state)
            if self._start_gate is not None:
                await self._start_gate()
            for state in self.nodes.values():
                await self._spawn(state)
            self._waiters = [asyncio.create_task(self._wait_node(s)) for s in self.nodes.values()]
            self._running = True
            asyncio.create_task(self._start_timers_when_ready())
            stopper = asyncio.create_task(self._stop_on_request(stop_after_s))
            while not all(w.done() for w in self._waiters):  # add_tap may add waiters
                await asyncio.gather(*self._waiters)
            self._running = False
            stopper.cancel()
        finally:
            server.close()
            await self._cleanup()
        return self._result()

    # -- setup ---------------------------------------------------------------------------

    def _listen(self, state: NodeState) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(state.socket_path)
        sock.listen(512)
        state.listen = sock

    def _node_config(self, state: NodeState) -> NodeConfig:
        spec = state.spec
        outputs: dict[str, list[EdgeConfig]] = {}
        for out in spec.outputs:
            edges = [
                EdgeConfig(
                    node=n.id,
                    input=i.id,
                    socket=self.nodes[n.id].socket_path,
                    queue_size=i.queue_size,
                    backpressure=i.queue_policy == "backpressure",
                )
                for n, i in self.descriptor.subscribers(spec.id, out)
                if n.id in self.nodes  # receivers on other machines: see ``extra_edges``
            ]
            channel = f"{spec.id}/{out}"
            edges += self.extra_edges.get(channel, [])
            edges += [
                EdgeConfig(
                    node=s.spec.id,
                    input=channel,
                    socket=s.socket_path,
                    queue_size=s.tap.queue_size,
                    taken=True,
                )
                for s in self.nodes.values()
                if s.tap is not None and channel in s.tap.channels
            ]
            outputs[out] = edges
        inputs = {
            i.id: InputConfig(i.source, i.queue_size, i.queue_policy) for i in spec.inputs.values()
        }
        if state.tap is not None:
            inputs = {c: InputConfig(c, state.tap.queue_size) for c in state.tap.channels}
        assert state.listen is not None
        return NodeConfig(
            dataflow_id=self.dataflow_id,
            node_id=spec.id,
            daemon_socket=str(self.run_dir / "daemon.sock"),
            listen_fd=state.listen.fileno(),
            inputs=inputs,
            outputs=outputs,
            shm_prefix=f"{self.shm_prefix}{spec.id}",
            shm_allowed_prefix=self.shm_prefix,
            descriptor_path=str(self.descriptor.path.resolve()) if self.descriptor.path else None,
            node_raw=spec.raw,
            lockstep=self.lockstep,
        )

    async def _spawn(self, state: NodeState) -> None:
        spec = state.spec
        state.log_file = open(self.log_dir / f"log_{spec.id}.txt", "a", encoding="utf-8")  # noqa: SIM115
        if spec.is_dynamic:
            self._say(f"node `{spec.id}` is dynamic; dynamic nodes are not supported yet")
            state.exited = True
            state.returncode = None
            return
        cfg = self._node_config(state)
        assert state.listen is not None
        cores, warning = pinned_cores(spec)
        if warning:
            self._say(f"warning: {warning}")
        try:
            command = state.tap.command if state.tap is not None else node_command(spec)
            state.proc = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                # one pipe for both: lines come out in the order the node wrote them (a
                # `print` and a `node.log_info` after it, or a traceback after the last print)
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env=node_env(spec, cfg.to_json()),
                cwd=str(self.descriptor.base_dir),
                start_new_session=True,
                pass_fds=[state.listen.fileno()],
                preexec_fn=preexec(cores),
            )
            self._status(spec.id, "running", None)
        except OSError as e:
            self._say(f"node `{spec.id}` could not start: {e.strerror}: {node_command(spec)[0]}")
            state.exited = True
            state.returncode = 127
            state.last_lines.append(f"could not start: {e}")
        finally:
            state.listen.close()  # the node owns it now; if it dies, senders see the edge close

    async def add_tap(self, tap: TapSpec, register_timeout_s: float = 15.0) -> list[str]:
        """Attach a tap (a recorder) to the running dataflow; returns the channels it taps.

        ``tap.channels`` may hold ``*`` (every output) and ``node/*`` patterns. Only outputs of
        nodes still running here can be tapped; each sender is told to open the new edge
        (``SUB``), so the tap sees every message sent from then on.
        """
        if not self._running or self._stopping:
            raise DoraError("the dataflow is not running (or is stopping); nothing to record")
        live = {
            f"{s.spec.id}/{o}": s
            for s in self.nodes.values()
            if s.tap is None and s.registered and not s.exited
            for o in s.spec.outputs
        }
        channels = [
            c
            for c in live
            if any(
                p == "*" or p == c or (p.endswith("/*") and c.startswith(p[:-1]))
                for p in tap.channels
            )
        ]
        if not channels:
            raise DoraError(
                f"no running node output matches {', '.join(tap.channels)}; "
                f"running outputs: {', '.join(live) or '(none)'}"
            )
        tap_id = tap.id
        n = 1
        while tap_id in self.nodes:
            n += 1
            tap_id = f"{tap.id}-{n}"
        tap = TapSpec(tap_id, tap.command, channels, dict(tap.env), tap.queue_size)
        spec = NodeSpec(id=tap_id, path=tap.command[0], env=dict(tap.env))
        state = NodeState(spec, str(self.run_dir / f"t{len(self.nodes)}.sock"), tap=tap)
        self.nodes[tap_id] = state
        self._listen(state)
        await self._spawn(state)
        self._waiters.append(asyncio.create_task(self._wait_node(state)))
        deadline = time.monotonic() + register_timeout_s
        while not state.registered and not state.exited and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if not state.registered:
            raise DoraError(f"tap `{tap_id}` did not start (see {self.log_dir}/log_{tap_id}.txt)")
        for channel in channels:
            sender = live[channel]
            edge = EdgeConfig(tap_id, channel, state.socket_path, tap.queue_size, taken=True)
            self.extra_edges.setdefault(channel, []).append(edge)
            if sender.control is not None and not sender.exited:
                self._write(sender.control, ["SUB", channel.split("/", 1)[1], edge.__dict__])
        return channels

    # -- running -------------------------------------------------------------------------

    async def _wait_node(self, state: NodeState) -> None:
        if state.proc is not None:
            state.returncode = await self._wait_exit(state, state.proc)
            state.exited = True
            self._check_ready()  # it may have been the last one timers and --stop-after wait for
        self._report_exit(state)
        self._status(state.spec.id, "exited", state.returncode)
        await self._broadcast(["EXITED", state.spec.id], exclude=state.spec.id)
        if self.lockstep:
            self._check_barriers()
        if all(s.exited for s in self.nodes.values()):
            self._all_exited.set()

    async def _wait_exit(self, state: NodeState, proc: asyncio.subprocess.Process) -> int:
        """Pump the node's output until it exits; returns its exit code.

        A grandchild the node started may keep the node's output pipe (stdout and stderr) open
        after the node exited, and on Python 3.11 ``Process.wait()`` also waits for the pipe. So
        the exit is watched on its own; then what is already in the pipe is read for a moment,
        and the rest is left to the group kill at cleanup.
        """
        pump = asyncio.ensure_future(self._pump_stream(state, proc.stdout))
        exited = asyncio.create_task(_exit_code(proc))
        done, _ = await asyncio.wait({pump, exited}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done:
            exited.cancel()
            return await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pump, timeout=_DRAIN_AFTER_EXIT_S)
        return exited.result()

    async def _pump_stream(self, state: NodeState, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        in_long_line = False
        while True:
            try:
                raw = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as e:  # the end, without a final newline
                raw = e.partial
            except asyncio.LimitOverrunError as e:
                # A line longer than the stream limit: pass it on in pieces. (``readline`` would
                # drop the whole buffer here, losing the line.)
                raw = await stream.readexactly(e.consumed)
                in_long_line = True
            else:
                if in_long_line and raw == b"\n":  # the end of a long line already passed on
                    in_long_line = False
                    continue
                in_long_line = False
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            state.last_lines.append(line)
            state.log_file.write(line + "\n")
            state.log_file.flush()
            self.printer(state.spec.id, line)

    def _report_exit(self, state: NodeState) -> None:
        code = state.returncode
        if code == 0 or (code is None and state.proc is None):
            return
        if state.killed_after_grace:
            self._say(f"node `{state.spec.id}` {state.kill_reason}; killed")
            return
        reason = signal_name(code) or f"exit code {code}"
        lines = "\n".join(f"    {ln}" for ln in state.last_lines) or "    (no output)"
        self._say(f"node `{state.spec.id}` failed with {reason}; last log lines:\n{lines}")

    async def _on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = _framing.FrameBuffer()
        state: NodeState | None = None
        try:
            while data := await reader.read(65536):
                buf.feed(data)
                for frame in buf.frames():
                    if frame[0] == "REG":
                        state = self.nodes.get(frame[1])
                        if state is None:
                            writer.close()
                            return
                        state.control = writer
                        state.registered = True
                        if self._stopping and state.tap is None:
                            self._write(writer, ["STOP", "MANUAL"])
                        # The EXITED broadcast reached only nodes registered at the time: a
                        # late one must still close its inputs from nodes that died first.
                        for gone in self.nodes.values():
                            if gone.exited and gone is not state:
                                self._write(writer, ["EXITED", gone.spec.id])
                        self._check_ready()
                    elif frame[0] == "DROPS" and state is not None:
                        state.drops = dict(frame[1])
                    elif frame[0] == "IDLE" and state is not None:
                        state.idle = (frame[1], frame[2])
                        self._check_barriers()
                    elif frame[0] == "BARRIER" and state is not None:
                        state.barrier = frame[1]
                        state.idle = (frame[2], frame[3])
                        state.barrier_key = frame[4] if len(frame) > 4 else 0
                        self._check_barriers()
        except (OSError, _framing.TransportError):  # node gone mid-write: its exit is reported
            pass

    def _lockstep_tallies(self) -> tuple[dict[str, int], dict[str, int]]:
        """From the nodes' last IDLE reports (taps left out): messages sent to each node, and
        messages each node has taken off its inputs (timer ticks left out)."""
        sent_to: dict[str, int] = {}
        taken: dict[str, int] = {}
        for s in self.nodes.values():
            if s.tap is not None or s.idle is None:
                continue
            rec, snd = s.idle
            timers = {
                i.id
                for i in s.spec.inputs.values()
                if i.is_timer and i.source not in self._lockstep_timers
            }
            taken[s.spec.id] = sum(n for k, n in rec.items() if k not in timers)
            for key, n in snd.items():
                target = key.split("/", 1)[0]
                sent_to[target] = sent_to.get(target, 0) + n
        for target, n in self._ticks_to.items():  # lockstep timers' ticks count as messages
            sent_to[target] = sent_to.get(target, 0) + n
        return sent_to, taken

    def _quiescent(self) -> bool:
        """Lockstep: every running node waits with empty queues and nothing is in flight."""
        if any(s.tap is None and s.idle is None and not s.exited for s in self.nodes.values()):
            return False  # a node not yet waiting for input
        sent_to, taken = self._lockstep_tallies()
        gone = {s.spec.id for s in self.nodes.values() if s.exited}
        sent = sum(n for t, n in sent_to.items() if t not in gone and not self._is_tap(t))
        received = sum(n for node_id, n in taken.items() if node_id not in gone)
        return sent == received

    def lockstep_waiting_on(self) -> list[str]:
        """Lockstep: the running nodes (not feeders, not taps) the next step waits for: those
        not yet waiting for input, and those with messages sent to them they have not taken."""
        sent_to, taken = self._lockstep_tallies()
        return [
            s.spec.id
            for s in self.nodes.values()
            if s.tap is None
            and not s.exited
            and s.spec.id not in self.feeders
            and (s.idle is None or taken[s.spec.id] < sent_to.get(s.spec.id, 0))
        ]

    def _is_tap(self, node_id: str) -> bool:
        s = self.nodes.get(node_id)
        return s is not None and s.tap is not None

    def _check_barriers(self) -> None:
        """Release one feeder (smallest order key) once every feeder waits and all is quiet."""
        feeders = [s for s in self.nodes.values() if s.spec.id in self.feeders and not s.exited]
        waiting = [s for s in self.nodes.values() if s.barrier is not None]
        timers = [t for t in self._stepped if t.key is not None and not self._deaf(t)]
        if not self._stepped_ready or (not waiting and not timers):
            return
        if any(s.barrier is None for s in feeders) or not self._quiescent():
            return
        first = min(waiting, key=lambda s: s.barrier_key, default=None)
        tick = min(timers, key=lambda t: t.key or 0, default=None)
        if tick is not None and (first is None or (tick.key or 0) < first.barrier_key):
            for node_id in tick.send():
                self._ticks_to[node_id] = self._ticks_to.get(node_id, 0) + 1
            return
        assert first is not None
        if first.control is not None:
            self._write(first.control, ["BARRIER_OK", first.barrier])
        first.barrier = None

    def lockstep_timers_done(self) -> bool:
        """Lockstep replay: every tick of the replayed timers has been sent (or has no node
        left to go to)."""
        return self._stepped_ready and all(t.key is None or self._deaf(t) for t in self._stepped)

    def _deaf(self, timer: _SteppedTimer) -> bool:
        """Every node ``timer`` ticks to has exited (a live node that crashed)."""
        return all(self.nodes[n].exited for n, _ in timer.writers)

    def _check_ready(self) -> None:
        if all(s.registered or s.exited for s in self.nodes.values()):
            self._ready.set()

    def _unconnected(self) -> list[str]:
        """Nodes started but not connected yet (they have not created ``Node()``)."""
        return [
            s.spec.id
            for s in self.nodes.values()
            if s.proc is not None and not s.registered and not s.exited and s.tap is None
        ]

    async def _wait_ready(self) -> None:
        """Wait until every node has connected (or exited), saying which ones keep the dataflow
        waiting; after ``connect_timeout_s`` go on without them."""
        timeout = self.connect_timeout_s
        note_at = min(CONNECT_NOTE_S, timeout / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=note_at)
            return
        late = self._unconnected()
        if late and not self._stopping:
            self._say(
                f"waiting for {node_list(late)} to connect (no Node() created after {note_at:g} s); "
                "timers and --stop-after start once every node is up, at the latest after "
                f"{timeout:g} s (DORA_CONNECT_TIMEOUT_S)"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=timeout - note_at)
            return
        late = self._unconnected()
        self._given_up = set(late)
        if late and not self._stopping:
            them = "it" if len(late) == 1 else "them"
            self._say(
                f"{node_list(late)} did not connect within {timeout:g} s: starting without {them}"
            )

    def _ready_once(self) -> asyncio.Future[None]:
        """:meth:`_wait_ready`, run once however many wait for it."""
        if self._ready_task is None:
            self._ready_task = asyncio.ensure_future(self._wait_ready())
        return asyncio.shield(self._ready_task)

    async def _start_timers_when_ready(self) -> None:
        # Timers start once every node has registered (or exited), as dora-rs does, so the first
        # ticks are not lost while nodes import their libraries.
        await self._ready_once()
        epoch_ns = await self._timer_gate() if self._timer_gate is not None else None
        if self._stopping:
            return
        # Every timer counts its ticks from one instant (on a cluster, the same wall-clock
        # instant on every machine), so timers of one period tick together.
        now_wall, now_mono = time.time_ns(), time.monotonic_ns()
        # An instant in this machine's future means its clock is behind the coordinator's: start
        # now rather than wait out the offset (the ticks are then off by it, as they must be).
        start = now_mono if epoch_ns is None else now_mono + min(0, epoch_ns - now_wall)
        by_source: dict[str, list[tuple[NodeState, str]]] = {}
        for state in self.nodes.values():
            for inp in state.spec.inputs.values():
                if inp.is_timer and not state.exited:
                    by_source.setdefault(inp.source, []).append((state, inp.id))
        stepped = {k: v for k, v in by_source.items() if k in self._lockstep_timers}
        for source, targets in by_source.items():
            if source in self._timed_ticks and self._replay_start is not None:
                ticks = self._timed_ticks[source]
                task = self._run_timed_ticks(source, targets, ticks, self._replay_start)
                self._timer_tasks.append(asyncio.create_task(task))
            elif source not in stepped:
                self._timer_tasks.append(
                    asyncio.create_task(self._run_timer(source, targets, start))
                )
        for source, targets in stepped.items():
            writers = await self._timer_connections(source, targets)
            ticks = self._lockstep_timers[source]
            self._stepped.append(_SteppedTimer(source, writers, ticks))
        self._stepped_ready = True
        if self.lockstep:
            self._check_barriers()

    async def _run_timed_ticks(
        self,
        source: str,
        targets: list[tuple[NodeState, str]],
        ticks: list[tuple[int, int]],
        replay_start: Callable[[], Awaitable[int]],
    ) -> None:
        """A timed replay's timer: each (seq, offset) tick at the replay's start + offset."""
        writers = await self._timer_connections(source, targets)
        start = await replay_start()
        for seq, offset in ticks:
            delay = start + offset - time.monotonic_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            if self._stopping or not writers:
                return
            _write_tick(writers, seq)

    async def _timer_connections(
        self, source: str, targets: list[tuple[NodeState, str]]
    ) -> list[tuple[str, asyncio.StreamWriter]]:
        """A data connection from the daemon to each (node, input) ``source`` ticks on."""
        writers = []
        for state, input_id in targets:
            try:
                _, w = await asyncio.open_unix_connection(state.socket_path)
            except OSError:
                continue
            w.write(_framing.encode(["H", "dora", source[len("dora/") :], input_id]))
            writers.append((state.spec.id, w))
        self._timer_writers.extend(w for _, w in writers)
        return writers

    async def _run_timer(
        self, source: str, targets: list[tuple[NodeState, str]], start: int
    ) -> None:
        """Tick ``source`` to ``targets`` at ``start`` + k periods (monotonic ns), k >= 1."""
        from dora_runtime._timer import parse_timer

        period_ns = max(1, int(parse_timer(source) / self._timer_speed))
        writers = await self._timer_connections(source, targets)
        tick = max(0, (time.monotonic_ns() - start) // period_ns)  # ticks already past
        sent = 0
        while writers and not self._stopping:
            tick += 1
            now = time.monotonic_ns()
            due = start + tick * period_ns
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
            else:
                # Behind (a period shorter than one tick takes, `dora/timer/nanos/1`): skip the
                # ticks already past, as a missed deadline cannot be caught up, and let the
                # loop run: never yielding here starved signals, STOP and --stop-after.
                tick += (now - due) // period_ns
                await asyncio.sleep(0)
            _write_tick(writers, sent)
            sent += 1

    async def _stop_on_request(self, stop_after_s: float | None) -> None:
        if stop_after_s is not None:
            # --stop-after counts from when every node is up (timers start then), so a
            # 3 s run is 3 s of dataflow, not 3 s minus the nodes' import time.
            ready = asyncio.ensure_future(self._ready_once())
            stop = asyncio.ensure_future(self._stop_requested.wait())
            await asyncio.wait({ready, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
        try:
            await asyncio.wait_for(self._stop_requested.wait(), timeout=stop_after_s)
        except TimeoutError:
            pass
        if self._all_exited.is_set():
            return
        self._stopping = True
        for t in self._timer_tasks:
            t.cancel()
        self._say("stopping dataflow: sent STOP to every node")
        await self._broadcast(["STOP", "MANUAL"], taps=False)
        # A node the dataflow started without (it did not connect in time) cannot get STOP: it
        # is terminated, and said why. One still starting up gets STOP once it connects.
        for node_id in self._given_up.intersection(self._unconnected()):
            state = self.nodes[node_id]
            state.killed_after_grace = True
            state.kill_reason = "never connected to the daemon (it did not create Node())"
            kill_group(state.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        self._stop_requested.clear()
        try:
            await asyncio.wait_for(self._all_exited.wait(), timeout=self.grace_s)
            return
        except TimeoutError:
            pass
        self._kill_remaining(f"did not stop within {self.grace_s:g} s", taps=False)
        # Taps (recorders) finish writing what the nodes sent before they are killed too.
        try:
            await asyncio.wait_for(self._all_exited.wait(), timeout=TAP_GRACE_S)
        except TimeoutError:
            self._kill_remaining(f"did not finish within {TAP_GRACE_S:g} s after the nodes")

    def kill_now(self) -> None:
        """Second Ctrl-C: kill every node at once."""
        self._stopping = True
        self._kill_remaining("got a second interrupt")

    def _kill_remaining(self, reason: str, taps: bool = True) -> None:
        for state in self.nodes.values():
            if state.tap is not None and not taps:
                continue
            if state.proc is not None and not state.exited:
                if not state.killed_after_grace:  # keep a reason given earlier
                    state.kill_reason = reason
                state.killed_after_grace = True
                kill_group(state.proc.pid)

    async def _broadcast(
        self, msg: list[Any], exclude: str | None = None, taps: bool = True
    ) -> None:
        for state in self.nodes.values():
            if state.control is not None and state.spec.id != exclude and not state.exited:
                if taps or state.tap is None:
                    self._write(state.control, msg)

    @staticmethod
    def _write(writer: asyncio.StreamWriter, msg: list[Any]) -> None:
        if not writer.is_closing():
            writer.write(_framing.encode(msg))

    def _status(self, node_id: str, event: str, returncode: int | None) -> None:
        if self._on_status is not None:
            self._on_status(node_id, event, returncode)

    def _say(self, line: str) -> None:
        self.printer("dora", line)

    def _guard_output(self, printer: Printer) -> Printer:
        """``printer``, surviving its reader going away (``dora run ... | head -1``).

        The first broken pipe silences every later line and stops the dataflow as Ctrl-C
        does, as a Unix tool stops when nobody reads it any more. Unguarded, the error
        escaped from whichever task printed (the one sending STOP, say), and the run never
        ended."""

        def guarded(source: str, line: str) -> None:
            if self._output_closed:
                return
            try:
                printer(source, line)
            except BrokenPipeError:
                self._output_closed = True
                stdout_to_devnull()
                self.request_stop()

        return guarded

    # -- teardown ------------------------------------------------------------------------

    async def _cleanup(self) -> None:
        for t in self._timer_tasks:
            t.cancel()
        for w in self._timer_writers:
            w.close()
        for state in self.nodes.values():
            if state.proc is not None:
                kill_group(state.proc.pid)  # grandchildren a node left behind
                # A grandchild in a session of its own survives that and may still hold the
                # node's stdout: close the pipes now, or the transport is collected after the
                # event loop closed and asyncio prints a traceback. No public API for this.
                transport = getattr(state.proc, "_transport", None)
                if transport is not None:
                    transport.close()
            if state.control is not None:
                state.control.close()
            if state.log_file is not None:
                state.log_file.close()
            if state.listen is not None:
                state.listen.close()
        unlink_segments(self.shm_prefix, self._own_segment)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _own_segment(self, rest: str) -> bool:
        """Whether the segment named ``shm_prefix + rest`` (``<node>-<pid>-<n>``) is this
        daemon's to remove: one of its nodes', or its cross-machine bridge's (which runs in this
        process). Another daemon of the same dataflow on this host (a cluster tried out on one
        machine) removes its own: removing them here crashed its receivers mid-message."""
        creator = segment_creator(rest)  # a pool prefix is the dataflow's plus the node id
        if creator is None:
            return True  # not a name our pools give: the dataflow's all the same
        node, pid = creator
        if node == BRIDGE_NODE:
            return pid == str(os.getpid())
        return node in self.nodes

    def _result(self) -> DataflowResult:
        failures = {}
        for node_id, s in self.nodes.items():
            if s.returncode not in (0, None) or (s.returncode is None and s.proc is not None):
                if s.killed_after_grace:
                    failures[node_id] = f"killed: {s.kill_reason}"
                else:
                    failures[node_id] = signal_name(s.returncode) or f"exit {s.returncode}"
        drops = {
            f"{node_id}/{inp}": n
            for node_id, s in self.nodes.items()
            for inp, n in s.drops.items()
            if n
        }
        return DataflowResult(
            dataflow_id=self.dataflow_id,
            returncodes={k: s.returncode for k, s in self.nodes.items()},
            failures=failures,
            drops=drops,
            log_dir=self.log_dir,
        )


def signal_name(code: int | None) -> str | None:
    """``signal SIGKILL`` for a process killed by a signal (negative exit code), else None."""
    if code is None or code >= 0:
        return None
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


async def _exit_code(proc: asyncio.subprocess.Process) -> int:
    """The exit code, without waking on a timer while the node runs: the process's pidfd turns
    readable when it exits (a 20 ms poll per node woke the daemon 50 times a second per node,
    on the CPUs the nodes' messages need). The loop's child watcher sets ``returncode`` a
    moment after the exit; the 1 s timeout is a guard, not the mechanism."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(proc.pid)
    except (OSError, AttributeError):  # already reaped, or no pidfd (Linux < 5.3)
        fd = -1
    exited = loop.create_future()
    if fd >= 0:
        loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
    try:
        while proc.returncode is None:
            if exited.done():
                await asyncio.sleep(0.001)  # exited: the watcher reaps it at once
            else:
                await asyncio.wait({exited}, timeout=1.0 if fd >= 0 else 0.02)
    finally:
        if fd >= 0:
            loop.remove_reader(fd)
            os.close(fd)
    return proc.returncode


def clean_stale_runs(tmp_dir: str | None = None) -> list[str]:
    """Remove run folders and shared-memory segments of daemons that died without cleaning up
    (``kill -9`` of ``dora run``, ``dora record`` or ``dora replay``, whose own folder holds a
    ``daemon.pid`` too). Returns what was removed."""
    removed: list[str] = []
    base = Path(tmp_dir or tempfile.gettempdir())
    for pid_file in base.glob("dora-*/daemon.pid"):
        try:
            if pid_file.parent.stat().st_uid != os.getuid():
                continue  # another user's: not ours to judge (and /tmp would not let us)
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(pid):
            continue
        short = pid_file.parent.name.split("-")[1]
        removed += unlink_segments(f"dora-{short}-")
        shutil.rmtree(pid_file.parent, ignore_errors=True)
        removed.append(str(pid_file.parent))
    return removed


def install_interrupt_handlers(daemon: Daemon) -> list[int]:
    """Ctrl-C / SIGTERM: the first sends STOP to every node, the second kills them all.

    Returns the signals installed (none outside the main thread, where the caller handles
    signals); remove them with ``loop.remove_signal_handler`` when the run ends.
    """
    loop = asyncio.get_running_loop()
    presses = 0

    def on_signal() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            daemon.request_stop()
        else:
            daemon.kill_now()
            daemon.printer("dora", "second interrupt: killing every node now")

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (ValueError, RuntimeError):
            pass
    return installed


def run_dataflow(
    descriptor: Descriptor,
    *,
    stop_after_s: float | None = None,
    log_dir: Path | None = None,
    grace_s: float = DEFAULT_GRACE_S,
    printer: Printer = _default_printer,
    handle_signals: bool = True,
    taps: list[TapSpec] | None = None,
    lockstep: bool = False,
    feeders: set[str] | None = None,
) -> DataflowResult:
    """Run ``descriptor`` to completion in this process (what ``dora run`` does)."""

    async def main() -> DataflowResult:
        daemon = Daemon(
            descriptor,
            log_dir=log_dir,
            grace_s=grace_s,
            printer=printer,
            taps=taps,
            lockstep=lockstep,
            feeders=feeders,
        )
        installed = install_interrupt_handlers(daemon) if handle_signals else []
        try:
            return await daemon.run(stop_after_s=stop_after_s)
        finally:
            for sig in installed:
                asyncio.get_running_loop().remove_signal_handler(sig)

    return asyncio.run(main())


__all__ = ["Daemon", "DataflowResult", "run_dataflow", "DEFAULT_GRACE_S"]
