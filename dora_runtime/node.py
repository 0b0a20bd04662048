"""The node API: ``Node`` as dora-rs 1.1's Python API shows it.

A node is started by the daemon with ``DORA_NODE_CONFIG`` in its environment. Iterating over a
``Node`` yields event dicts::

    {"type": "INPUT", "id": "image", "kind": "dora", "value": <pyarrow.Array>, "metadata": {...}}
    {"type": "INPUT_CLOSED", "id": "image", "kind": "dora"}
    {"type": "STOP", "id": "MANUAL", "kind": "dora"}
    {"type": "ERROR", "kind": "dora", "error": "..."}      # from next(timeout) on timeout
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as _dt
import logging
import os
import socket
import sys
import threading
from collections import deque
from typing import Any

import yaml

from dora_runtime import _framing
from dora_runtime._codec import decode, to_arrow
from dora_runtime._config import EdgeConfig, NodeConfig
from dora_runtime._events import EventStream, Item
from dora_runtime._framing import decode_body
from dora_runtime._ids import uuid7
from dora_runtime._metadata import check_metadata
from dora_runtime._raw import SampleHandler
from dora_runtime._sender import Sender
from dora_runtime._shm import ShmMapper, ShmPool
from dora_runtime.errors import NodeError, TransportError

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_US = _dt.timedelta(microseconds=1)
TOOK_MAX = 4096
"""Inputs remembered in taking order between two recorded outputs (a node that takes more
before it sends keeps the latest; the recording then holds the tail of that order)."""


def _sendable(data: Any) -> Any:
    """What ``Sender.send`` takes for ``data``: bytes travel as they are (a UInt8 array on the
    receiving side), not via an Arrow array; anything else as ``to_arrow`` converts it."""
    cls = data.__class__
    return memoryview(data) if cls is bytes or cls is bytearray else to_arrow(data)


class Node:
    """A dataflow node. ``node_id`` may be given (published nodes pass their own name)."""

    def __init__(self, node_id: str | None = None, daemon_port: int | None = None) -> None:
        cfg = NodeConfig.from_env()
        if cfg is None:
            raise NodeError(
                f"node {node_id or sys.argv[0]!r} was not started by dora: run it from a "
                "dataflow with `dora run dataflow.yml` (dynamic nodes are not supported yet)"
            )
        self._cfg = cfg
        self._ctrl_lock = threading.Lock()
        self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._control.connect(cfg.daemon_socket)
        except OSError as e:
            raise TransportError(
                f"cannot reach the dora daemon at {cfg.daemon_socket}: {e.strerror}"
            ) from None
        self._send_control(["REG", cfg.node_id, os.getpid()])
        self._pool = ShmPool(cfg.shm_prefix)
        self._mapper = ShmMapper(cfg.shm_allowed_prefix)
        self._sender = Sender(cfg, self._pool)
        self._events = EventStream(
            cfg, self._mapper, self._control, self._send_control, self._sender.receiver_exited
        )
        self._events.control_handlers["SUB"] = lambda f: self._sender.add_edge(
            f[1], EdgeConfig(**f[2])
        )
        self._events.control_handlers["UNSUB"] = lambda f: self._sender.remove_edge(f[1], f[2])
        self._last_input: tuple[str, int] | None = None  # (input id, seq) being handled
        self._taken: dict[str, int] = {}  # input id -> seq of the last message taken on it
        # (input id, seq) taken since the last output a recorder got: the order in between
        self._took: deque[tuple[str, int]] = deque(maxlen=TOOK_MAX)
        self._closed = False
        self._last_idle: Any = None
        self._barrier_seq = 0
        if cfg.lockstep:
            self._events._idle_hook = self._report_idle
        _bridge_logging()
        atexit.register(self.close)

    # -- events --------------------------------------------------------------------------

    def __iter__(self) -> Node:
        return self

    def __next__(self) -> dict[str, Any]:
        event = self.next()
        if event is None:
            raise StopIteration
        return event

    def next(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event; blocks up to ``timeout`` seconds (forever if None).

        Returns None once the event stream has ended (all inputs closed, or after STOP), and an
        ``ERROR`` event when the timeout expires first.
        """
        item = self._events.pop(timeout)
        if item is False:
            return {"type": "ERROR", "kind": "dora", "error": "Timeout: no event received"}
        return None if item is None else self._to_event(item)  # type: ignore[arg-type]

    def try_recv(self) -> dict[str, Any] | None:
        """The next buffered event, or None when none is waiting. Never blocks."""
        item = self._events.pop_nowait()
        return None if item is None else self._to_event(item)

    def drain(self) -> list[dict[str, Any]]:
        """Every buffered event, oldest first. Never blocks."""
        out = []
        while (item := self._events.pop_nowait()) is not None:
            out.append(self._to_event(item))
        return out

    def is_empty(self) -> bool:
        return self._events.is_empty()

    async def recv_async(self, timeout: float | None = None) -> dict[str, Any] | None:
        """``next`` for asyncio code: waits in a worker thread, never blocks the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.next, timeout)

    def _to_event(self, item: Item) -> dict[str, Any]:
        if item.kind != "INPUT":
            return {"type": item.kind, "id": item.input_id, "kind": "dora"}
        frame = decode_body(item.frame)
        _, seq, publish_ns, _cause, metadata = frame[:5]
        value = decode(frame[5:], self._mapper)
        md = metadata or {}  # a fresh dict from the decoder: ours to extend
        # Cheaper than datetime.fromtimestamp on a cold CPU (no time zone or float math).
        md["timestamp"] = _EPOCH + _US * (publish_ns // 1000)
        self._last_input = (item.input_id, seq)
        self._taken[item.input_id] = seq
        self._took.append((item.input_id, seq))
        return {
            "type": "INPUT",
            "id": item.input_id,
            "kind": "dora",
            "value": value,
            "metadata": md,
        }

    # -- outputs -------------------------------------------------------------------------

    @property
    def _cause(self) -> str | None:
        """``source_node/output#seq`` of the input being handled (stamped on what it sends)."""
        last = self._last_input
        return None if last is None else f"{self._cfg.inputs[last[0]].source}#{last[1]}"

    def _taken_now(self) -> list[Any]:
        """``[{source: seq}, [[source, seq], ...]]``: the last message taken on each input
        (``node/output`` or a timer), and every message taken since the last output a recorder
        got, in order. A recording keeps them beside each output, so a replay can give a node
        its inputs in the order it took them."""
        inputs = self._cfg.inputs
        took = [[inputs[i].source, seq] for i, seq in self._took]
        self._took.clear()
        return [{inputs[i].source: seq for i, seq in self._taken.items()}, took]

    def send_output(
        self, output_id: str, data: Any, metadata: dict[str, Any] | None = None
    ) -> None:
        """Send ``data`` (pyarrow Array, bytes, numpy array or list) on a declared output."""
        self._sender.send(
            output_id, _sendable(data), check_metadata(metadata), self._cause, self._taken_now
        )

    def _send_output_except(
        self, output_id: str, data: Any, metadata: dict[str, Any] | None, skip: frozenset[str]
    ) -> None:
        """``send_output`` to every receiver but the nodes in ``skip`` (a replay's feeder, for
        the messages a node dropped when it was recorded)."""
        self._sender.send(
            output_id, _sendable(data), check_metadata(metadata), self._cause, self._taken_now, skip
        )

    def send_output_raw(
        self, output_id: str, data_length: int, metadata: dict[str, Any] | None = None
    ) -> SampleHandler:
        """A writable buffer of ``data_length`` bytes in shared memory, sent as a UInt8 array.

        Use as a context manager (sends on exit) or call ``.send()``.
        """
        return SampleHandler(self._sender, output_id, data_length, check_metadata(metadata), self)

    def send_service_request(
        self, output_id: str, data: Any, metadata: dict[str, Any] | None = None
    ) -> str:
        """Send a request with a fresh ``request_id`` (UUID v7) in its metadata; returns the id."""
        md = dict(metadata or {})
        md["request_id"] = request_id = uuid7()
        self.send_output(output_id, data, md)
        return request_id

    def send_service_response(self, output_id: str, data: Any, metadata: dict[str, Any]) -> None:
        """Send a response; ``metadata`` must carry the request's ``request_id``."""
        if not metadata or "request_id" not in metadata:
            raise NodeError(
                "send_service_response needs the request's metadata: pass "
                "event['metadata'] (it must contain 'request_id')"
            )
        md = {k: v for k, v in metadata.items() if k != "timestamp"}
        self.send_output(output_id, data, md)

    # -- information ---------------------------------------------------------------------

    def node_config(self) -> dict[str, Any]:
        raw = self._cfg.node_raw
        return {"inputs": raw.get("inputs", {}) or {}, "outputs": raw.get("outputs", []) or []}

    def dataflow_descriptor(self) -> dict[str, Any]:
        if not self._cfg.descriptor_path:
            return {}
        with open(self._cfg.descriptor_path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}

    def dataflow_id(self) -> str:
        return self._cfg.dataflow_id

    @property
    def id(self) -> str:
        return self._cfg.node_id

    def is_restart(self) -> bool:
        return self._cfg.restart_count > 0

    def restart_count(self) -> int:
        return self._cfg.restart_count

    def timestamp(self) -> _dt.datetime:
        return _dt.datetime.now(tz=_dt.UTC)

    # -- logs ----------------------------------------------------------------------------

    def log(
        self,
        level: str,
        message: str,
        target: str | None = None,
        fields: dict[str, str] | None = None,
    ) -> None:
        """Write a log line to the node's log (stderr, which the daemon captures)."""
        extra = "".join(f" {k}={v}" for k, v in (fields or {}).items())
        where = f" {target}:" if target else ""
        print(f"{level.upper()}{where} {message}{extra}", file=sys.stderr, flush=True)

    def log_error(self, message: str) -> None:
        self.log("error", message)

    def log_warn(self, message: str) -> None:
        self.log("warn", message)

    def log_info(self, message: str) -> None:
        self.log("info", message)

    def log_debug(self, message: str) -> None:
        self.log("debug", message)

    def log_trace(self, message: str) -> None:
        self.log("trace", message)

    # -- lockstep (deterministic replay) --------------------------------------------------

    def _lockstep_counts(self) -> list[Any]:
        return [dict(self._events.received), self._sender.sent_counts()]

    def _report_idle(self) -> None:
        """Lockstep mode: tell the daemon this node waits with empty queues, and its counts."""
        counts = self._lockstep_counts()
        if counts != self._last_idle:
            self._last_idle = counts
            self._send_control(["IDLE", *counts])

    def lockstep_barrier(self, timeout: float | None = None, order_key: int = 0) -> bool:
        """dora-py extension used by replay feeders in lockstep mode (``--speed 0``).

        Blocks until every other node of the dataflow waits for input with empty queues and no
        message is in flight, so what happens next does not depend on machine speed. Returns
        False on timeout (seconds) or when the dataflow is not in lockstep mode.

        With several feeders, the daemon releases one at a time, the one with the smallest
        ``order_key`` (e.g. the recorded time of its next message), once all of them wait.
        """
        if not self._cfg.lockstep:
            return False
        self._barrier_seq += 1
        token = self._barrier_seq
        done = threading.Event()
        self._events.barriers[token] = done
        self._send_control(["BARRIER", token, *self._lockstep_counts(), order_key])
        ok = done.wait(timeout)
        self._events.barriers.pop(token, None)
        return ok

    # -- lifecycle -----------------------------------------------------------------------

    def _send_control(self, msg: list[Any]) -> None:
        with self._ctrl_lock:
            try:
                self._control.sendall(_framing.encode(msg))
            except OSError:
                pass  # daemon gone; the pump turns that into STOP

    def close(self) -> None:
        """Flush statistics, close every connection. Called at interpreter exit too."""
        if self._closed:
            return
        self._closed = True
        if self._cfg.lockstep:
            self._report_idle()  # final counts: what this node sent before exiting
        self._events.report_drops()
        self._sender.close()
        self._send_control(["DONE"])
        self._events.close()
        self._control.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Node(id={self._cfg.node_id!r}, dataflow={self._cfg.dataflow_id!r})"


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            print(f"{record.levelname} {record.name}: {msg}", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging must never crash a node
            self.handleError(record)


def _bridge_logging() -> None:
    """Route Python ``logging`` to the node's log, at INFO and above, unless configured."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(_StderrHandler())
        if root.level == logging.WARNING:
            root.setLevel(logging.INFO)


__all__ = ["Node"]
