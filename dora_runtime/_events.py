"""The receiving half of a node: input queues filled by a pump thread.

The pump thread accepts edge connections on the node's listening socket (created by the daemon
before the node started, so no sender can race it), reads frames from every edge and from the
daemon's control connection, and files messages into per-input queues:

- ``drop_oldest`` (default): a full queue drops its oldest message, counts it and releases its
  shared memory at once.
- ``backpressure``: a full queue stops reading that edge's socket, so the kernel buffer fills and
  the sender blocks; nothing is dropped.

Messages are decoded into Arrow only when the node takes them (``pop``), in the caller's thread.
"""

from __future__ import annotations

import math
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from dora_runtime import _framing
from dora_runtime._codec import release_unread
from dora_runtime._config import NodeConfig
from dora_runtime._framing import decode_body, single_body
from dora_runtime._shm import ShmMapper

_RECV_SIZE = 1 << 16
_DROP_REPORT_INTERVAL_S = 0.5
_PUMP_MIN_WAIT_S = 0.002
_PUMP_MAX_WAIT_S = 0.05


@dataclass(slots=True)
class Item:
    """One queued event. ``frame`` is the msgpack body of the ``M``/``S`` data frame for inputs
    (decoded only when the node takes it), None for other events."""

    order: int
    kind: str  # INPUT, INPUT_CLOSED, STOP
    input_id: str
    frame: bytes | None = None


class _Conn:
    __slots__ = ("sock", "buf", "input_id", "source")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = _framing.FrameBuffer()
        self.input_id: str | None = None
        self.source: str | None = None


class _Poller:
    """The node's sockets and what each one is, polled with ``poll(2)``: thinner than
    ``selectors`` on the path every message takes."""

    _MASK = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP

    def __init__(self) -> None:
        self._poll = select.poll()
        self._tags: dict[int, Any] = {}

    def register(self, sock: socket.socket, tag: Any) -> None:
        fd = sock.fileno()
        self._poll.register(fd, self._MASK)
        self._tags[fd] = tag

    def unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if self._tags.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def tags(self) -> list[Any]:
        return list(self._tags.values())

    def wait(self, timeout_s: float | None) -> list[Any]:
        """Tags of the sockets ready to read (or closed); waits up to ``timeout_s``."""
        ms = None if timeout_s is None else max(0, math.ceil(timeout_s * 1000))
        tags = self._tags
        return [tags[fd] for fd, _ in self._poll.poll(ms) if fd in tags]


class EventStream:
    """Per-input queues and the thread that fills them."""

    def __init__(
        self,
        cfg: NodeConfig,
        mapper: ShmMapper,
        control: socket.socket,
        send_control: Any,
        on_receiver_exit: Any,
        pump_after_s: float = 0.002,
    ) -> None:
        """``pump_after_s``: how long the node may go without asking for an event before the
        pump thread reads its sockets for it."""
        self._pump_after_s = pump_after_s
        self._cfg = cfg
        self._mapper = mapper
        self._control = control
        self._send_control = send_control
        self._on_receiver_exit = on_receiver_exit
        self._lock = lock = threading.Lock()  # ``with self._lock``: C-level, no Python frames
        self._cond = threading.Condition(lock)  # consumers wait here
        self._pump_cond = threading.Condition(lock)  # the pump thread waits here
        self._queues: dict[str, deque[Item]] = {i: deque() for i in cfg.inputs}
        self._specials: deque[Item] = deque()
        self._order = 0
        self._open_inputs = set(cfg.inputs)
        self._connected: dict[str, int] = {i: 0 for i in cfg.inputs}
        self._exited_nodes: set[str] = set()
        self._stopped = False
        self._io_owner: str | None = None
        self._consumers_waiting = 0
        self._last_pop = time.monotonic()
        self._stop_delivered = False
        self._closed = False
        self.drops: dict[str, int] = {i: 0 for i in cfg.inputs}
        # Lockstep accounting: messages taken off each input's socket (queued or dropped).
        self.received: dict[str, int] = {i: 0 for i in cfg.inputs}
        self._idle_hook: Any = None
        self.barriers: dict[int, threading.Event] = {}
        #: more control frames (``SUB``/``UNSUB``), handled in the pump thread
        self.control_handlers: dict[str, Any] = {}
        self._reported_drops: dict[str, int] = dict(self.drops)
        self._paused: dict[str, _Conn] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = _Poller()
        self._listen: socket.socket | None = None
        if cfg.listen_fd is not None:
            self._listen = socket.socket(fileno=cfg.listen_fd)
            self._listen.setblocking(False)
            self._sel.register(self._listen, "listen")
        self._sel.register(self._wake_r, "wake")
        self._ctrl_buf = _framing.FrameBuffer()
        self._sel.register(control, "control")
        self._thread = threading.Thread(target=self._pump, name="dora-pump", daemon=True)
        self._thread.start()

    # -- consumer side (any thread) ---------------------------------------------------------

    def pop(self, timeout_s: float | None) -> Item | None | bool:
        """Next item; ``None`` once the stream has ended; ``False`` on timeout.

        A caller that finds the queues empty takes over the sockets from the pump thread and
        waits in ``select`` itself, so a message wakes exactly one thread (the one that consumes
        it) instead of the pump and then the consumer: one wake-up less per message.
        """
        self._last_pop = now = time.monotonic()
        deadline = None if timeout_s is None else now + timeout_s
        with self._lock:
            while True:
                item = self._pop_locked()
                if item is not None:
                    return item
                if self._ended_locked():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if self._idle_hook is not None:
                    self._idle_hook()
                if self._io_owner is None:
                    item = self._select_as_consumer(remaining)
                    if item is not None:
                        return item
                    continue
                if self._io_owner == "pump":
                    self._wake_w.send(b"w")  # hand the sockets over to us
                self._consumers_waiting += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._consumers_waiting -= 1

    def _select_as_consumer(self, timeout_s: float | None) -> Item | None:
        """Called with ``_cond`` held, queues empty and nobody selecting; returns with it held.

        Returns the message itself when the wake-up brought exactly one whole data frame (a
        node waiting for its next input, the usual case): it skips the queue round trip, which
        is a sizeable part of a message's latency on a CPU gone cold while the node waited.
        """
        self._io_owner = "consumer"
        try:
            self._cond.release()
            try:
                events = self._sel.wait(timeout_s)
            finally:
                self._cond.acquire()
            if len(events) == 1 and events[0].__class__ is _Conn:
                return self._read_edge(events[0], direct=True)
            self._process(events)
            return None
        finally:
            self._io_owner = None
            if self._consumers_waiting:
                self._cond.notify_all()

    def pop_nowait(self) -> Item | None:
        with self._lock:
            return self._pop_locked()

    def is_empty(self) -> bool:
        with self._lock:
            return not self._specials and not any(self._queues.values())

    def _ended_locked(self) -> bool:
        return self._stop_delivered or self._closed or (not self._open_inputs and not self._stopped)

    def _pop_locked(self) -> Item | None:
        if self._stop_delivered:
            return None
        best_q: deque[Item] | None = None
        best = None
        for q in self._queues.values():
            if q and (best is None or q[0].order < best):
                best, best_q = q[0].order, q
        if self._specials and (best is None or self._specials[0].order < best):
            best_q = self._specials
        if best_q is None:
            return None
        item = best_q.popleft()
        if item.kind == "STOP":
            self._stop_delivered = True
        elif item.kind == "INPUT" and item.input_id in self._paused:
            if len(best_q) < self._cfg.inputs[item.input_id].queue_size:
                self._wake_w.send(b"r")
        return item

    # -- pump thread ---------------------------------------------------------------------

    def _push_special(self, kind: str, input_id: str = "") -> None:
        self._order += 1
        self._specials.append(Item(self._order, kind, input_id))

    def _pump(self) -> None:
        """Keeps queues drained (drop-oldest, control frames) while the node is busy.

        Nobody wakes the pump when a consumer leaves ``select`` with a message: it looks
        every few milliseconds (backing off while the node idles in ``select``) and takes the
        sockets only if the node has been busy in its own code for a while (no ``pop`` for
        ``pump_after_s``). A node that handles each event quickly is back in ``pop`` before
        that, so the pump costs no wake-up per message, and under a flood the consumer reads
        its sockets itself instead of contending with the pump for the lock.
        """
        last_report = time.monotonic()
        delay = _PUMP_MIN_WAIT_S
        while not self._closed:
            with self._lock:
                while not self._closed:
                    if (
                        self._io_owner is None
                        and not self._consumers_waiting
                        and time.monotonic() - self._last_pop >= self._pump_after_s
                    ):
                        break
                    self._pump_cond.wait(delay)
                    delay = min(delay * 2, _PUMP_MAX_WAIT_S)
                if self._closed:
                    return
                self._io_owner = "pump"
            delay = _PUMP_MIN_WAIT_S
            try:
                events = self._sel.wait(_DROP_REPORT_INTERVAL_S)
            finally:
                with self._lock:
                    self._io_owner = None
                    self._process(events)
                    if self._consumers_waiting:
                        self._cond.notify_all()
            now = time.monotonic()
            if now - last_report >= _DROP_REPORT_INTERVAL_S:
                last_report = now
                self.report_drops()

    def _process(self, events: list[Any]) -> None:
        """Handle ready sockets; called with ``_cond`` held."""
        for tag in events:
            if tag.__class__ is _Conn:
                self._read_edge(tag)
            elif tag == "listen":
                self._accept_all()
            elif tag == "wake":
                self._resume()
            elif tag == "control":
                self._read_control()

    def report_drops(self) -> None:
        if self.drops != self._reported_drops:
            self._reported_drops = dict(self.drops)
            self._send_control(["DROPS", self._reported_drops])

    def _accept_all(self) -> list[_Conn]:
        new = []
        if self._listen is None:
            return new
        while True:
            try:
                sock, _ = self._listen.accept()
            except (BlockingIOError, OSError):
                return new
            sock.setblocking(False)
            conn = _Conn(sock)
            self._sel.register(sock, conn)
            new.append(conn)

    def _resume(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        for input_id, conn in list(self._paused.items()):
            if len(self._queues[input_id]) < self._cfg.inputs[input_id].queue_size:
                del self._paused[input_id]
                self._sel.register(conn.sock, conn)
                self._read_edge(conn)

    def _read_edge(self, conn: _Conn, direct: bool = False) -> Item | None:
        """Read what ``conn`` has and file it. With ``direct`` (queues known empty), a single
        whole data frame for an open input is returned instead of queued."""
        try:
            data = conn.sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if direct and conn.input_id in self._open_inputs and not conn.buf.pending:
            body = single_body(data)
            if body is not None:
                input_id = conn.input_id
                self.received[input_id] += 1
                self._order += 1
                return Item(self._order, "INPUT", input_id, body)
        if data:
            input_id = conn.input_id
            spec = self._cfg.inputs.get(input_id) if input_id is not None else None
            if (
                spec is not None
                and spec.queue_policy != "backpressure"
                and input_id in self._open_inputs
            ):
                # A flood on a drop-oldest input: only the newest queue_size frames can
                # survive, so the others are never materialised.
                skipped: list[bytes] = []
                total = conn.buf.take(data, spec.queue_size, skipped)
                for body in skipped:
                    self._release(body)
                gone = total - len(conn.buf.out)
                if gone:
                    self.received[input_id] += gone  # type: ignore[index]
                    self.drops[input_id] += gone  # type: ignore[index]
            else:
                conn.buf.take(data)
            self._on_bodies(conn, conn.buf.out)
            return None
        self._sel.unregister(conn.sock)
        conn.sock.close()
        if conn.input_id is not None and conn.input_id in self._open_inputs:
            self._connected[conn.input_id] -= 1
            if self._connected[conn.input_id] == 0:
                self._close_input(conn.input_id)
        return None

    def _on_bodies(self, conn: _Conn, bodies: list[bytes]) -> None:
        """File a batch of data frames. Under a flood, drop-oldest keeps only the newest
        ``queue_size`` of queue + batch without ever decoding the dropped ones (unless they
        hold shared memory to release)."""
        i = 0
        while conn.input_id is None and i < len(bodies):
            frame = decode_body(bodies[i])
            i += 1
            if frame[0] == "H":
                conn.source = f"{frame[1]}/{frame[2]}"
                conn.input_id = frame[3]
                if conn.input_id in self._connected:
                    self._connected[conn.input_id] += 1
        batch = bodies[i:] if i else bodies
        if not batch:
            return
        input_id = conn.input_id
        if input_id is None or input_id not in self._open_inputs:
            for body in batch:
                self._release(body)
            return
        q = self._queues[input_id]
        spec = self._cfg.inputs[input_id]
        self.received[input_id] += len(batch)
        if spec.queue_policy != "backpressure":
            excess = len(q) + len(batch) - spec.queue_size
            if excess > 0:
                self.drops[input_id] += excess
                from_queue = min(excess, len(q))
                for _ in range(from_queue):
                    self._release(q.popleft().frame)  # type: ignore[arg-type]
                for body in batch[: excess - from_queue]:
                    self._release(body)
                batch = batch[excess - from_queue :]
        order = self._order
        for body in batch:
            order += 1
            q.append(Item(order, "INPUT", input_id, body))
        self._order = order
        if (
            spec.queue_policy == "backpressure"
            and len(q) >= spec.queue_size
            and input_id not in self._paused
        ):
            self._paused[input_id] = conn
            self._sel.unregister(conn.sock)

    def _release(self, body: bytes) -> None:
        """Release the shared memory of a data frame dropped unread (``S`` frames only)."""
        if body[2] == 0x53:  # fixarray header, fixstr len 1, then the tag byte "S"
            release_unread(decode_body(body)[5:], self._mapper)

    def _close_input(self, input_id: str) -> None:
        if input_id in self._open_inputs:
            self._open_inputs.discard(input_id)
            self._push_special("INPUT_CLOSED", input_id)
            if not self._open_inputs and not self._stopped:
                # As dora-rs: a STOP with this id, then the end of the stream.
                self._stopped = True
                self._push_special("STOP", "ALL_INPUTS_CLOSED")

    def _read_control(self) -> None:
        try:
            data = self._control.recv(_RECV_SIZE)
        except OSError:
            data = b""
        if not data:
            # The daemon is gone: behave as on STOP so the node can shut down.
            self._sel.unregister(self._control)
            if not self._stopped:
                self._stopped = True
                self._push_special("STOP", "MANUAL")
            return
        self._ctrl_buf.feed(data)
        for frame in self._ctrl_buf.frames():
            tag = frame[0]
            if tag == "STOP":
                if not self._stopped:
                    self._stopped = True
                    self._push_special("STOP", frame[1] if len(frame) > 1 else "MANUAL")
            elif tag == "EXITED":
                self._on_node_exited(frame[1])
            elif tag == "BARRIER_OK":
                waiter = self.barriers.pop(frame[1], None)
                if waiter is not None:
                    waiter.set()
            elif tag in self.control_handlers:
                self.control_handlers[tag](frame)

    def _on_node_exited(self, node_id: str) -> None:
        """Close inputs from a node that exited without ever connecting (e.g. crashed early)."""
        self._exited_nodes.add(node_id)
        self._accept_all()
        # Every connection whose hello is still unread may be the exited node's: read it now,
        # or its input would be closed before the data it sent before exiting is queued.
        for conn in self._sel.tags():
            if isinstance(conn, _Conn) and conn.input_id is None:
                self._read_edge(conn)
        for input_id, spec in self._cfg.inputs.items():
            if spec.source_node == node_id and self._connected.get(input_id, 0) == 0:
                self._close_input(input_id)
        self._on_receiver_exit(node_id)

    def close(self) -> None:
        """Stop the pump thread and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            self._pump_cond.notify_all()
        self._wake_w.send(b"x")
        self._thread.join(timeout=2.0)
        for tag in self._sel.tags():
            if isinstance(tag, _Conn):
                tag.sock.close()
        if self._listen is not None:
            self._listen.close()
        self._wake_r.close()
        self._wake_w.close()
