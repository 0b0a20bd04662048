"""Taps: processes that receive a copy of chosen node outputs (recorders, ``dora topic echo``).

A tap is started by the daemon like a node, with its own listening socket; the daemon adds one edge
per tapped output to the sending nodes' edge lists, so every message the tap sees is exactly what
the receiving nodes see. A tap never sits in a node's send path beyond a socket write: it reads
continuously into a large drop-oldest queue and counts (never hides) what it could not keep.

The runtime knows nothing about what a tap does; ``TapSpec.command`` is provided by the caller.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dora_runtime import _framing
from dora_runtime._codec import decode
from dora_runtime._config import NodeConfig
from dora_runtime._events import EventStream
from dora_runtime._framing import decode_body
from dora_runtime._shm import ShmMapper
from dora_runtime.errors import NodeError

DEFAULT_TAP_QUEUE = 100_000


@dataclass
class TapSpec:
    """A tap the daemon starts beside the dataflow's nodes.

    ``channels``: ``node/output`` names to receive; ``command``: argv of the process, which must
    use ``TapClient`` to receive.
    """

    id: str
    command: list[str]
    channels: list[str]
    env: dict[str, str] = field(default_factory=dict)
    queue_size: int = DEFAULT_TAP_QUEUE


@dataclass(slots=True)
class TapMessage:
    """One message as sent: channel ``node/output``, sender ``seq``, ``publish_time_ns`` (ns since
    the Unix epoch), the sender's ``cause`` (``node/output#seq`` of the input it was handling)
    ``taken`` (``{source: seq}``: the last message it had taken on each input) and ``took``
    (``[(source, seq), ...]``: what it had taken since its previous output this tap got, in
    order); both ``None`` from a sender that did not say."""

    channel: str
    seq: int
    publish_time_ns: int
    cause: str | None
    metadata: dict[str, Any]
    value: pa.Array
    taken: dict[str, int] | None = None
    took: list[tuple[str, int]] | None = None


TAP_DEFER_S = 0.002
"""How long a tap that was idle waits, once a message arrives, before handling it (and what
arrived meanwhile): a recorder must not slow the nodes it records."""


class TapClient:
    """The receiving side of a tap process. Iterate to get ``TapMessage`` until every tapped
    output has closed (all senders exited) or the daemon went away."""

    def __init__(self) -> None:
        cfg = NodeConfig.from_env()
        if cfg is None:
            raise NodeError("a tap must be started by the dora daemon (DORA_NODE_CONFIG missing)")
        self._cfg = cfg
        self._lock = threading.Lock()
        self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control.connect(cfg.daemon_socket)
        self._send_control(["REG", cfg.node_id, os.getpid()])
        self._mapper = ShmMapper(cfg.shm_allowed_prefix)
        self._events = EventStream(
            cfg, self._mapper, self._control, self._send_control, _ignore, pump_after_s=0.01
        )

    @property
    def channels(self) -> list[str]:
        return list(self._cfg.inputs)

    @property
    def drops(self) -> dict[str, int]:
        """Messages per channel dropped because this tap fell behind."""
        return dict(self._events.drops)

    def dataflow_yaml(self) -> str:
        if not self._cfg.descriptor_path:
            return ""
        with open(self._cfg.descriptor_path, encoding="utf-8") as f:
            return f.read()

    def __iter__(self) -> Iterator[TapMessage]:
        while True:
            item = self._events.pop_nowait()
            if item is None:
                item = self._events.pop(None)
                # Woken by a message the dataflow's own receivers got at the same moment: let
                # them run first instead of competing with them for the CPUs and caches.
                time.sleep(TAP_DEFER_S)
            if item is None or item is False:
                return
            if item.kind != "INPUT":  # STOP is ignored: a tap records until its inputs close
                continue
            frame = decode_body(item.frame)
            cause, taken, took = frame[3], None, None
            if isinstance(cause, list):  # [cause, {source: seq}, took]: see EdgeConfig.taken
                packed = cause
                cause, taken = packed[0], packed[1]
                took = [(src, seq) for src, seq in packed[2]] if len(packed) > 2 else None
            yield TapMessage(
                channel=item.input_id,
                seq=frame[1],
                publish_time_ns=frame[2],
                cause=cause,
                metadata=frame[4] or {},
                value=decode(frame[5:], self._mapper, copy=True),
                taken=taken,
                took=took,
            )

    def _send_control(self, msg: list[Any]) -> None:
        with self._lock:
            try:
                self._control.sendall(_framing.encode(msg))
            except OSError:
                pass

    def close(self) -> None:
        self._events.report_drops()
        self._send_control(["DONE"])
        self._events.close()
        self._control.close()


def _ignore(_node_id: str) -> None:
    pass
