"""Cross-daemon edges over Zenoh.

Sending machine: for every output with a receiver elsewhere, the daemon adds one more edge to the
sending node's edge list, pointing at the bridge's Unix socket (like a tap). The bridge reads the
``M``/``S`` frames, copies shared-memory payloads out (``q`` becomes ``p``, ``s`` becomes ``i``: the
payload travels inline, as an Arrow IPC stream or raw values, and the slot is released at once) and
publishes an ``M`` frame, msgpack-encoded, on ``dora/<dataflow>/<node>/<output>``. When the sender's
edge closes it publishes ``["C"]``.

Receiving machine: before any node starts, the bridge opens one data connection per remote input
into the local receiver's listening socket (hello ``["H", node, output, input]``, exactly like a
timer) and subscribes to the channel; each sample is written to those connections as a frame. A
``["C"]`` sample, or the coordinator saying the sending node exited, closes them, so the receiver
gets ``INPUT_CLOSED`` as it would locally.

Zenoh runs in peer mode with explicit endpoints only: ``listen`` on this daemon's endpoint,
``connect`` to the others' (the coordinator hands them out), multicast and gossip scouting off.
Backpressure does not cross machines: a remote input behaves as ``drop_oldest`` at the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack

from dora_runtime import _framing
from dora_runtime._config import EdgeConfig
from dora_runtime._shm import ShmMapper
from dora_runtime.errors import TransportError

BRIDGE_NODE = "dora-bridge"
CLOSE = msgpack.packb(["C"])
_MATCH_TIMEOUT_S = 5.0
OPEN_TIMEOUT_S = 30.0
"""How long a dataflow's bridge waits for the daemon's Zenoh session (opened on registering)."""


def free_endpoint(host: str = "127.0.0.1") -> str:
    """``tcp/HOST:PORT`` with a port that was free a moment ago (Zenoh cannot report port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return f"tcp/{host}:{s.getsockname()[1]}"


def zenoh_config(listen: str, connect: list[str]) -> Any:
    """Peer mode, explicit endpoints, no scouting, no Zenoh shared memory; connections retried
    in the background."""
    import zenoh

    c = zenoh.Config()
    c.insert_json5("mode", '"peer"')
    c.insert_json5("listen/endpoints", json.dumps([listen]))
    c.insert_json5("connect/endpoints", json.dumps(connect))
    c.insert_json5("connect/timeout_ms", "-1")
    c.insert_json5("connect/exit_on_failure", "false")
    c.insert_json5(
        "connect/retry", "{period_init_ms: 100, period_max_ms: 2000, period_increase_factor: 2}"
    )
    c.insert_json5("scouting/multicast/enabled", "false")
    c.insert_json5("scouting/gossip/enabled", "false")
    # Zenoh's own shared-memory transport is unused (payloads cross machines inline) and leaves
    # a ``<n>.zenoh`` file in /dev/shm behind a process that is killed.
    c.insert_json5("transport/shared_memory/enabled", "false")
    return c


class ZenohLink:
    """This daemon's Zenoh session, opened once it knows its peers (after registering with the
    coordinator, which may already send it a dataflow: bridges wait with :meth:`wait_open`)."""

    def __init__(self, listen: str) -> None:
        self.listen = listen
        self.session: Any = None
        self._opened = threading.Event()

    def open(self, connect: list[str]) -> None:
        if self.session is None:
            import zenoh

            self.session = zenoh.open(zenoh_config(self.listen, connect))
        self._opened.set()

    async def wait_open(self, timeout_s: float = OPEN_TIMEOUT_S) -> Any:
        """The session, once :meth:`open` has run (in another thread); ``TransportError`` if it
        has not within ``timeout_s``."""
        if self.session is None:
            await asyncio.to_thread(self._opened.wait, timeout_s)
        if self.session is None:
            raise TransportError(
                f"this daemon's Zenoh session ({self.listen}) did not open within "
                f"{timeout_s:g} s: is the daemon registered with its coordinator?"
            )
        return self.session

    def close(self) -> None:
        self._opened.clear()
        if self.session is not None:
            with contextlib.suppress(Exception):
                self.session.close()
            self.session = None


def channel_key(dataflow_id: str, channel: str) -> str:
    return f"dora/{dataflow_id}/{channel}"


class DataflowBridge:
    """The cross-machine edges of one dataflow on one daemon.

    ``publish``: channels sent to other machines; ``receivers``: per remote channel, the local
    ``(socket_path, input_id)`` receivers to feed.
    """

    def __init__(
        self,
        link: ZenohLink,
        dataflow_id: str,
        socket_path: str,
        shm_prefix: str,
        publish: list[str],
        receivers: dict[str, list[tuple[str, str]]],
    ) -> None:
        self.link = link
        self.dataflow_id = dataflow_id
        self.socket_path = socket_path
        self.publish = publish
        self.receivers = receivers
        self._mapper = ShmMapper(shm_prefix)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dora-zenoh-pub")
        self._publishers: dict[str, Any] = {}
        self._subscribers: list[Any] = []
        self._writers: dict[str, list[asyncio.StreamWriter]] = {}
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def edges(self) -> dict[str, list[EdgeConfig]]:
        """The extra edge per published channel, for ``Daemon(extra_edges=...)``."""
        return {
            c: [EdgeConfig(node=BRIDGE_NODE, input=c, socket=self.socket_path, queue_size=1000)]
            for c in self.publish
        }

    async def start(self) -> None:
        """Subscribe and connect to local receivers, listen for local senders."""
        import zenoh

        self._loop = asyncio.get_running_loop()
        session = await self.link.wait_open()
        for channel, targets in self.receivers.items():
            node, output = channel.split("/", 1)
            writers = []
            for socket_path, input_id in targets:
                _, w = await asyncio.open_unix_connection(socket_path)
                w.write(_framing.encode(["H", node, output, input_id]))
                writers.append(w)
            self._writers[channel] = writers
            self._subscribers.append(
                session.declare_subscriber(
                    channel_key(self.dataflow_id, channel), self._sample_callback(channel)
                )
            )
        if self.publish:
            self._server = await asyncio.start_unix_server(self._on_edge, path=self.socket_path)
            for channel in self.publish:
                self._publishers[channel] = session.declare_publisher(
                    channel_key(self.dataflow_id, channel),
                    congestion_control=zenoh.CongestionControl.BLOCK,
                    reliability=zenoh.Reliability.RELIABLE,
                )

    async def wait_matched(self, timeout_s: float = _MATCH_TIMEOUT_S) -> list[str]:
        """Wait until every publisher sees a subscriber; returns the channels that still do not."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = [c for c, p in self._publishers.items() if not p.matching_status.matching]
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(0.01)

    # -- sending side ----------------------------------------------------------------------

    async def _on_edge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = _framing.FrameBuffer()
        channel: str | None = None
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(1 << 18):
                buf.feed(data)
                for frame in buf.frames():
                    if frame[0] == "H":
                        channel = f"{frame[1]}/{frame[2]}"
                    elif frame[0] in ("M", "S") and channel in self._publishers:
                        body = msgpack.packb(self._inline(frame), use_bin_type=True)
                        await loop.run_in_executor(self._pool, self._publishers[channel].put, body)
        except (ConnectionResetError, _framing.TransportError):
            pass
        finally:
            writer.close()
            if channel in self._publishers:
                with contextlib.suppress(RuntimeError):  # pool already shut down
                    await loop.run_in_executor(self._pool, self._publishers[channel].put, CLOSE)

    def _inline(self, frame: list[Any]) -> list[Any]:
        """An ``M`` frame: a shared-memory payload (an ``S`` frame, kind ``q`` or ``s``) is copied
        in, and the bridge's slot released at once."""
        kind = frame[5]
        if kind not in ("q", "s"):
            return ["M", *frame[1:]]
        _, segment, offset, nbytes, slot = frame[5:10]
        buf = self._mapper.lease(segment, offset, nbytes, slot)
        data = buf.to_pybytes()
        del buf  # releases the slot
        head = ["M", *frame[1:5]]
        if kind == "q":
            return [*head, "p", frame[10], frame[11], data]
        return [*head, "i", data]

    # -- receiving side --------------------------------------------------------------------

    def _sample_callback(self, channel: str) -> Any:
        loop = self._loop
        assert loop is not None

        def on_sample(sample: Any) -> None:  # a Zenoh thread
            body = sample.payload.to_bytes()
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                loop.call_soon_threadsafe(self._deliver, channel, body)

        return on_sample

    def _deliver(self, channel: str, body: bytes) -> None:
        if body == CLOSE:
            self._close_channel(channel)
            return
        writers = self._writers.get(channel)
        if not writers:
            return
        frame = _framing.encode(msgpack.unpackb(body, raw=False, strict_map_key=False))
        for w in writers:
            if not w.is_closing():
                w.write(frame)

    def _close_channel(self, channel: str) -> None:
        for w in self._writers.pop(channel, []):
            w.close()

    def source_exited(self, node_id: str, delay_s: float = 1.0) -> None:
        """The coordinator says ``node_id`` (on another machine) exited: close its channels once
        what it sent before had time to arrive (its own close marker normally comes first)."""
        assert self._loop is not None
        for channel in list(self._writers):
            if channel.split("/", 1)[0] == node_id:
                self._loop.call_later(delay_s, self._close_channel, channel)

    async def close(self) -> None:
        for channel in list(self._writers):
            self._close_channel(channel)
        for sub in self._subscribers:
            with contextlib.suppress(Exception):
                sub.undeclare()
        if self._server is not None:
            self._server.close()
        self._pool.shutdown(wait=True)
        for pub in self._publishers.values():
            with contextlib.suppress(Exception):
                pub.undeclare()
        self._subscribers.clear()
        self._publishers.clear()
