"""The sending half of a node: one stream socket per (output, receiver input) edge.

Outputs go straight from the sending node to each receiving node; the daemon is not in the
per-message path (one process hop less, see ``docs/protocol.md``). The daemon still sees every
edge: it hands out the edge list, receivers report drops to it, and taps (recorders) are edges too.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
import pyarrow as pa

from dora_runtime import _framing
from dora_runtime._codec import encode_bytes, encode_payload
from dora_runtime._config import EdgeConfig, NodeConfig
from dora_runtime._shm import SLOTS_OFFSET, Region, ShmPool, wait_released
from dora_runtime.errors import NodeError

_BACKPRESSURE_POLL_S = 0.05

Taken = Callable[[], list[Any]] | None
"""What the sending node had taken on its inputs (``Node._taken_now``), asked for only when an
edge keeps it (``EdgeConfig.taken``: a recorder)."""


class _Edge:
    __slots__ = ("cfg", "sock", "alive", "outstanding", "sent", "out")

    def __init__(self, cfg: EdgeConfig, sock: socket.socket | None) -> None:
        self.cfg = cfg
        self.sock = sock
        self.alive = sock is not None
        self.outstanding: deque[tuple[Region, int]] = deque()
        self.sent = 0
        self.out: _Output | None = None

    def kill(self) -> None:
        """Stop sending on this edge (its output recomputes its live edges)."""
        self.alive = False
        if self.out is not None:
            self.out.stale = True

    def send(self, frame: bytes) -> None:
        if not self.alive:
            return
        self.sent += 1
        try:
            self.sock.sendall(frame)  # type: ignore[union-attr]
        except (BrokenPipeError, ConnectionResetError):
            self.kill()  # the receiver is gone; its input is closed on its side

    def wait_for_room(self) -> None:
        """Backpressure for shared-memory payloads: at most ``queue_size`` unreleased regions.

        Released regions are dropped wherever they are in the queue: a receiver may keep one
        message (a background frame) and release the later ones, and the one it keeps must not
        hold back the room the others gave."""
        self._drop_released()
        while len(self.outstanding) >= self.cfg.queue_size and self.alive:
            region, slot = self.outstanding[0]
            wait_released(region, slot, _BACKPRESSURE_POLL_S)
            self._drop_released()

    def _drop_released(self) -> None:
        q = self.outstanding
        if any(r.slot_released(s) for r, s in q):
            self.outstanding = deque((r, s) for r, s in q if not r.slot_released(s))


class _Output:
    """Per-output state: the sequence counter and the edges, with the live ones precomputed
    (recomputed only when an edge changes) so a send walks no lists it does not need."""

    __slots__ = ("seq", "edges", "live", "owners", "backpressure", "stale", "pool", "taken")

    def __init__(self, edges: list[_Edge], pool: ShmPool) -> None:
        self.seq = 0
        self.pool = pool
        self.edges = edges
        for e in edges:
            e.out = self
        self.stale = True
        self.refresh()

    def refresh(self) -> list[_Edge]:
        if self.stale:
            self.live = [e for e in self.edges if e.alive]
            self.owners = [e.cfg.node for e in self.live]
            self.backpressure = [e for e in self.live if e.cfg.backpressure]
            self.taken = any(e.cfg.taken for e in self.live)
            self.stale = False
        return self.live

    def acquire(self, nbytes: int) -> Region:
        """A pool region for a message to the live edges, once backpressure allows it."""
        return _acquire(self.pool, self.backpressure, self.owners, nbytes)


def _acquire(pool: ShmPool, backpressure: list[_Edge], owners: list[str], nbytes: int) -> Region:
    """A region of ``pool`` with one slot per receiver in ``owners``, once each backpressure
    edge has room."""
    for e in backpressure:
        e.wait_for_room()
    return pool.acquire(nbytes, owners)


def _with_taken(head: list[Any], cause: str | None, taken: Taken) -> list[Any]:
    """``head`` with ``[cause, last, took]`` as its cause, for receivers that keep it: ``last``
    ``{source: seq}`` of the last message taken on each input, ``took`` ``[[source, seq], ...]``
    what was taken since the previous output a recorder got, in order."""
    return [*head[:3], [cause, *(taken() if taken is not None else ({}, []))], *head[4:]]


class Sender:
    """Thread-safe sender for every declared output of a node."""

    def __init__(self, cfg: NodeConfig, pool: ShmPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._outs: dict[str, _Output] = {}
        self._node_id = cfg.node_id
        self._packer = msgpack.Packer(use_bin_type=True)  # used under the lock only
        for output, edges in cfg.outputs.items():
            edges_out = [self._connect(cfg.node_id, output, e) for e in edges]
            self._outs[output] = _Output(edges_out, pool)

    @staticmethod
    def _connect(node_id: str, output: str, e: EdgeConfig) -> _Edge:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(e.socket)
            sock.sendall(_framing.encode(["H", node_id, output, e.input]))
        except (FileNotFoundError, ConnectionRefusedError, BrokenPipeError):
            sock.close()
            return _Edge(e, None)  # receiver already gone
        return _Edge(e, sock)

    def add_edge(self, output_id: str, cfg: EdgeConfig) -> None:
        """A receiver subscribed at run time (``SUB``: a recorder attached to a running
        dataflow). Messages sent from now on reach it too."""
        out = self._outs.get(output_id)
        if out is None:
            return
        edge = self._connect(self._node_id, output_id, cfg)
        edge.out = out
        with self._lock:
            out.edges = [*out.edges, edge]
            out.stale = True

    def remove_edge(self, output_id: str, node_id: str) -> None:
        """``UNSUB``: stop sending ``output_id`` to ``node_id``."""
        with self._lock:
            out = self._outs.get(output_id)
            if out is None:
                return
            for e in out.edges:
                if e.cfg.node == node_id:
                    e.kill()
                    if e.sock is not None:
                        e.sock.close()
            out.edges = [e for e in out.edges if e.cfg.node != node_id]
            out.stale = True

    def sent_counts(self) -> dict[str, int]:
        """Messages written per receiving ``node/input`` (lockstep accounting)."""
        counts: dict[str, int] = {}
        for out in self._outs.values():
            for e in out.edges:
                key = f"{e.cfg.node}/{e.cfg.input}"
                counts[key] = counts.get(key, 0) + e.sent
        return counts

    @property
    def outputs(self) -> list[str]:
        return list(self._outs)

    def send(
        self,
        output_id: str,
        arr: pa.Array | memoryview,
        metadata: dict[str, Any],
        cause: str | None,
        taken: Taken = None,
        skip: frozenset[str] = frozenset(),
    ) -> int:
        """Send ``arr`` to every receiver of ``output_id``; returns the message sequence number.

        A ``memoryview`` (of unsigned bytes) is sent as a UInt8 array. Receivers that keep
        ``taken`` (recorders) get ``[cause, *taken()]`` in the cause field. ``skip``: receiving
        nodes this message is not sent to (a replay's feeder: the node dropped it when
        recorded); the sequence number counts it all the same."""
        out = self._outs.get(output_id) or self._unknown_output(output_id)
        with self._lock:
            seq = out.seq
            out.seq = seq + 1
            live = out.refresh()
            acquire = out.acquire
            if skip:
                live = [e for e in live if e.cfg.node not in skip]
                bp = [e for e in live if e.cfg.backpressure]
                acquire = functools.partial(_acquire, out.pool, bp, [e.cfg.node for e in live])
            if not live:
                return seq
            if arr.__class__ is memoryview:
                region, payload = encode_bytes(arr, acquire)  # type: ignore[arg-type]
            else:
                region, payload = encode_payload(arr, acquire)  # type: ignore[arg-type]
            head = ["M", seq, time.time_ns(), cause, metadata]
            head_taken = _with_taken(head, cause, taken) if out.taken else head
            if region is None:
                frame = self._frame(head + payload)
                frame_taken = self._frame(head_taken + payload) if out.taken else frame
                for e in live:
                    e.send(frame_taken if e.cfg.taken else frame)
                return seq
            head[0] = head_taken[0] = "S"
            self._fan_out(live, head, payload, region, head_taken)
            return seq

    def _frame(self, obj: list[Any]) -> bytes:
        return _framing.frame(self._packer.pack(obj))

    def send_region(
        self,
        output_id: str,
        region: Region,
        payload: list[Any],
        live: list[_Edge],
        metadata: dict[str, Any],
        cause: str | None,
        taken: Taken = None,
    ) -> int:
        """Send a region filled in place (``send_output_raw``)."""
        out = self._outs[output_id]
        with self._lock:
            seq = out.seq
            out.seq = seq + 1
            head = ["S", seq, time.time_ns(), cause, metadata]
            head_taken = _with_taken(head, cause, taken) if out.taken else head
            self._fan_out(live, head, payload, region, head_taken)
            return seq

    def acquire_raw(self, output_id: str, length: int) -> tuple[Region, list[_Edge]]:
        out = self._outs.get(output_id) or self._unknown_output(output_id)
        with self._lock:
            live = out.refresh()
            return out.acquire(length), live

    def _fan_out(
        self,
        live: list[_Edge],
        head: list[Any],
        payload: list[Any],
        region: Region,
        head_taken: list[Any],
    ) -> None:
        for slot, e in enumerate(live):
            payload[4] = slot
            e.send(self._frame((head_taken if e.cfg.taken else head) + payload))
            if e.alive and e.cfg.backpressure:
                e.outstanding.append((region, slot))
            elif not e.alive:
                region.mm[SLOTS_OFFSET + slot] = 0

    def check_output(self, output_id: str) -> None:
        """Raise ``NodeError`` unless ``output_id`` is declared."""
        if output_id not in self._outs:
            self._unknown_output(output_id)

    def _unknown_output(self, output_id: str) -> _Output:
        declared = ", ".join(self._outs) or "(none)"
        raise NodeError(
            f"output `{output_id}` is not declared for this node; declared outputs: "
            f"{declared}. Add it under `outputs:` in the dataflow file."
        )

    def receiver_exited(self, node_id: str) -> None:
        """A receiving node exited: stop sending to it and release what it still held."""
        # No lock: a send blocked on backpressure towards this receiver holds it, and must see
        # ``alive`` turn false to give up. Flag writes and list reads are safe under the GIL.
        for out in self._outs.values():
            for e in out.edges:
                if e.cfg.node == node_id:
                    e.kill()
        self._pool.release_owner(node_id)

    def close(self) -> None:
        with self._lock:
            for out in self._outs.values():
                for e in out.edges:
                    if e.sock is not None:
                        e.sock.close()
                    e.kill()
