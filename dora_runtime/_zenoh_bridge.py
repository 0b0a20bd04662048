"""Cross-daemon edges over Zenoh.

Sending machine: for every output with a receiver elsewhere, the daemon adds one more edge to the
sending node's edge list, pointing at the bridge's Unix socket (like a tap). The bridge reads the
``M``/``S`` frames, copies shared-memory payloads out (``q`` becomes ``p``, ``s`` becomes ``i``: the
payload travels inline, as an Arrow IPC stream or raw values, and the slot is released at once) and
publishes an ``M`` frame, msgpack-encoded, on ``dora/<dataflow>/<node>/<output>``. When the sender's
edge closes it publishes ``["C"]``. A message larger than a Zenoh message may be
(:func:`max_message_bytes`) is not published: the daemon says so in one line naming the output
and the limit, and the receivers see the next message.

Receiving machine: before any node starts, the bridge opens one data connection per remote input
into the local receiver's listening socket (hello ``["H", node, output, input]``, exactly like a
timer) and subscribes to the channel; each sample is written to those connections as a frame,
payloads of ``INLINE_THRESHOLD`` bytes or more through a shared-memory region the bridge owns
(``p`` becomes ``q``, ``i`` becomes ``s``), exactly as a local sender would: no frame to a receiver
comes near the 64 MiB frame limit. A ``["C"]`` sample, or the coordinator saying the sending node
exited, closes them, so the receiver gets ``INPUT_CLOSED`` as it would locally.

Zenoh runs in peer mode with explicit endpoints only: ``listen`` on this daemon's endpoint,
``connect`` to the others' (the coordinator hands them out), multicast and gossip scouting off.
Backpressure does not cross machines: a remote input behaves as ``drop_oldest`` at the receiver.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack

from dora_runtime import _framing
from dora_runtime._codec import INLINE_THRESHOLD, encode_ipc, encode_primitive
from dora_runtime._config import EdgeConfig
from dora_runtime._shm import MAX_SLOTS, ShmMapper, ShmPool
from dora_runtime.errors import TransportError

BRIDGE_NODE = "dora-bridge"
CLOSE = msgpack.packb(["C"])
_MATCH_TIMEOUT_S = 5.0
OPEN_TIMEOUT_S = 30.0
"""How long a dataflow's bridge waits for the daemon's Zenoh session (opened on registering)."""

MAX_MESSAGE_ENV = "DORA_ZENOH_MAX_MESSAGE_BYTES"
DEFAULT_MAX_MESSAGE = 1 << 30
"""Zenoh's ``transport/link/rx/max_message_size`` (its default, set explicitly). Zenoh drops a
larger message at the receiving end without a word, so the sending bridge refuses it instead."""
_MIN_MAX_MESSAGE = 1 << 20
_MAX_MAX_MESSAGE = (1 << 32) - 1  # msgpack ``bin 32``
_ZENOH_HEADROOM = 64 * 1024
"""Room left in a Zenoh message for its own headers (a few dozen bytes measured)."""
_PUBLISH_WINDOW = 256
"""Frames of one sending edge read ahead of the one being published."""
_DRAIN_TIMEOUT_S = 30.0
"""How long closing a bridge waits for its sending edges to publish what they read."""
_EXITED_QUIET_S = 30.0
"""A remote channel that carried messages closes with its sender's ``["C"]``; after the sender
exited, this long without a message closes it anyway (its daemon may be gone)."""


def max_message_bytes() -> int:
    """The largest Zenoh message, from ``$DORA_ZENOH_MAX_MESSAGE_BYTES`` (the same on every
    daemon) or 1 GiB; kept between 1 MiB and 4 GiB."""
    try:
        value = int(os.environ.get(MAX_MESSAGE_ENV, "") or DEFAULT_MAX_MESSAGE)
    except ValueError:
        value = DEFAULT_MAX_MESSAGE
    return min(max(value, _MIN_MAX_MESSAGE), _MAX_MAX_MESSAGE)


def _stderr_printer(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
    c.insert_json5("transport/link/rx/max_message_size", str(max_message_bytes()))
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
    ``(socket_path, input_id)`` receivers to feed; ``printer`` gets the one-line reports of
    messages that could not cross (default: this process's stderr).
    """

    def __init__(
        self,
        link: ZenohLink,
        dataflow_id: str,
        socket_path: str,
        shm_prefix: str,
        publish: list[str],
        receivers: dict[str, list[tuple[str, str]]],
        printer: Callable[[str], None] | None = None,
    ) -> None:
        self.link = link
        self.dataflow_id = dataflow_id
        self.socket_path = socket_path
        self.publish = publish
        self.receivers = receivers
        self.printer = printer or _stderr_printer
        self.max_body = max_message_bytes() - _ZENOH_HEADROOM
        """Largest msgpack body published (the rest of a Zenoh message is its headers)."""
        self._mapper = ShmMapper(shm_prefix)
        # Regions for large payloads handed to local receivers; segment names under the
        # dataflow's prefix, so receivers may map them and the daemon unlinks them at the end.
        self._shm: ShmPool | None = ShmPool(f"{shm_prefix}{BRIDGE_NODE}")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dora-zenoh-pub")
        self._publishers: dict[str, Any] = {}
        self._subscribers: list[Any] = []
        self._writers: dict[str, list[_Target]] = {}
        self._last_sample: dict[str, float] = {}
        """Per remote channel, the loop time its last message arrived."""
        self._edge_tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def edges(self) -> dict[str, list[EdgeConfig]]:
        """The extra edge per published channel, for ``Daemon(extra_edges=...)``."""
        return {
            c: [
                EdgeConfig(
                    node=BRIDGE_NODE, input=c, socket=self.socket_path, queue_size=1000, taken=True
                )
            ]
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
                writers.append(_Target(w, f"{input_id}@{socket_path}"))
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
        """One sending node's edge: read its frames as they come (mapping shared memory at
        once, so a region stays readable after its sender exited and the daemon removed the
        segment files) and publish them in order on the publishing thread, at most
        ``_PUBLISH_WINDOW`` behind; ``["C"]`` once the edge closed and everything went out."""
        task = asyncio.current_task()
        assert task is not None
        self._edge_tasks.add(task)
        buf = _framing.FrameBuffer()
        channel: str | None = None
        loop = asyncio.get_running_loop()
        window: collections.deque[asyncio.Future[None]] = collections.deque()
        try:
            while data := await reader.read(1 << 18):
                buf.feed(data)
                for frame in buf.frames():
                    if frame[0] == "H":
                        channel = f"{frame[1]}/{frame[2]}"
                    elif frame[0] in ("M", "S") and channel in self._publishers:
                        lease = self._take(channel, frame)
                        if lease is not None:
                            window.append(
                                loop.run_in_executor(
                                    self._pool, self._publish, channel, frame, lease
                                )
                            )
                        while len(window) >= _PUBLISH_WINDOW:
                            await window.popleft()
        except (ConnectionResetError, _framing.TransportError, RuntimeError):
            pass  # RuntimeError: the publishing thread is shut down (the bridge is closing)
        finally:
            writer.close()
            for fut in window:
                with contextlib.suppress(Exception):
                    await fut
            if channel in self._publishers:
                with contextlib.suppress(RuntimeError):  # pool already shut down
                    await loop.run_in_executor(self._pool, self._publishers[channel].put, CLOSE)
            self._edge_tasks.discard(task)

    def _take(self, channel: str, frame: list[Any]) -> list[Any] | None:
        """On reading a frame: ``[lease]`` to publish it (the payload's Arrow buffer for a
        shared-memory payload, else None), or None when it cannot cross (said why)."""
        if frame[0] != "S":
            return [None]
        segment, offset, nbytes, slot = frame[6:10]
        if nbytes > self.max_body:  # refused before copying anything
            self._release(segment, slot)
            self._refuse(channel, frame[1], nbytes)
            return None
        try:
            return [self._mapper.lease(segment, offset, nbytes, slot)]
        except (OSError, ValueError) as e:
            self._release(segment, slot)
            self._say(
                f"output `{channel}`: message {frame[1]} not sent to other machines: "
                f"its shared memory is unreadable: {e}"
            )
            return None

    def _release(self, segment: str, slot: int) -> None:
        """Give a region back to its sender unread (a segment it may not map is left alone)."""
        with contextlib.suppress(ValueError):
            self._mapper.release(segment, slot)

    def _publish(self, channel: str, frame: list[Any], lease: list[Any]) -> None:
        """The publishing thread: pack the sample (a shared-memory payload copied straight
        into it, its slot released right after) and publish it, off the event loop."""
        try:
            body = msgpack.packb(self._inline(frame, lease), use_bin_type=True)
            if len(body) > self.max_body:
                self._refuse(channel, frame[1], len(body))
                return
            self._publishers[channel].put(body)
        except Exception as e:  # noqa: BLE001 - one bad message must not end the edge
            self._say(
                f"output `{channel}`: message {frame[1]} not sent to other machines: "
                f"{type(e).__name__}: {e}"
            )
        finally:
            lease.clear()

    def _say(self, line: str) -> None:
        """``printer(line)`` on the event loop, from any thread."""
        if self._loop is None or self._loop.is_closed():
            _stderr_printer(line)
            return
        with contextlib.suppress(RuntimeError):  # loop closed meanwhile
            self._loop.call_soon_threadsafe(self.printer, line)

    def _refuse(self, channel: str, seq: int, nbytes: int) -> None:
        self._say(
            f"output `{channel}`: message {seq} of {nbytes} bytes not sent to other machines: "
            f"the limit is {self.max_body} bytes ({MAX_MESSAGE_ENV}="
            f"{self.max_body + _ZENOH_HEADROOM} less room for Zenoh's headers)"
        )

    @staticmethod
    def _inline(frame: list[Any], lease: list[Any]) -> list[Any]:
        """An ``M`` frame; a shared-memory payload (an ``S`` frame, kind ``q`` or ``s``, whose
        buffer is ``lease[0]``) goes in as ``p`` or ``i``, packed from the region itself."""
        kind = frame[5]
        if kind not in ("q", "s"):
            return ["M", *frame[1:]]
        data = memoryview(lease.pop())  # the only reference: the slot goes with the list
        head = ["M", *frame[1:5]]
        if kind == "q":
            return [*head, "p", frame[10], frame[11], data]
        return [*head, "i", data]

    # -- receiving side --------------------------------------------------------------------

    def _sample_callback(self, channel: str) -> Any:
        loop = self._loop
        assert loop is not None

        def on_sample(sample: Any) -> None:  # a Zenoh thread: decode here, off the event loop
            body = sample.payload.to_bytes()
            if body == CLOSE:
                frame: Any = None
            else:
                try:
                    frame = msgpack.unpackb(body, raw=False, strict_map_key=False)
                except Exception as e:  # noqa: BLE001 - a bad sample must not stop the channel
                    self._say(f"input from `{channel}`: undecodable message dropped: {e}")
                    return
                del body
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                loop.call_soon_threadsafe(self._deliver, channel, frame)

        return on_sample

    def _deliver(self, channel: str, frame: list[Any] | None) -> None:
        if frame is None:
            self._close_channel(channel)
            return
        targets = self._writers.get(channel)
        if not targets:
            return
        self._last_sample[channel] = asyncio.get_running_loop().time()
        live = [t for t in targets if not t.writer.is_closing()]
        if len(live) < len(targets):  # receivers gone: release what they still held
            self._writers[channel] = live
            for t in targets:
                if t.writer.is_closing() and self._shm is not None:
                    self._shm.release_owner(t.owner)
        if not live:
            return
        try:
            self._write(channel, frame, live)
        except Exception as e:  # noqa: BLE001 - one bad message must not stop the channel
            self.printer(f"input from `{channel}`: message {frame[1]} dropped: {e}")

    def _write(self, channel: str, frame: list[Any], live: list[_Target]) -> None:
        """Write ``frame`` to the receivers ``live``; a payload of ``INLINE_THRESHOLD`` bytes or
        more goes through a shared-memory region (one slot per receiver), as from a local
        sender, so no frame comes near ``MAX_FRAME``."""
        kind = frame[5]
        data = frame[8] if kind == "p" else frame[6] if kind == "i" else None
        if data is None or len(data) < INLINE_THRESHOLD or self._shm is None:
            out = _framing.encode(frame)
            if len(out) - 4 > _framing.MAX_FRAME:
                raise TransportError(
                    f"{len(out) - 4} bytes of metadata and data exceed the "
                    f"{_framing.MAX_FRAME} byte frame limit"
                )
            for t in live:
                t.writer.write(out)
            return
        head = ["S", *frame[1:5]]
        pool = self._shm
        for first in range(0, len(live), MAX_SLOTS):
            group = live[first : first + MAX_SLOTS]
            acquire = functools.partial(pool.acquire, owners=[t.owner for t in group])
            if kind == "p":  # the same payload a local sender writes (``_codec``)
                _, payload = encode_primitive(frame[6], frame[7], memoryview(data), acquire, 0)
            else:
                _, payload = encode_ipc(data, acquire, 0)
            for slot, t in enumerate(group):
                payload[4] = slot
                t.writer.write(_framing.encode(head + payload))

    def _close_channel(self, channel: str) -> None:
        for t in self._writers.pop(channel, []):
            t.writer.close()

    def source_exited(self, node_id: str, delay_s: float = 1.0) -> None:
        """The coordinator says ``node_id`` (on another machine) exited: close its channels
        once what it sent before had time to arrive. A channel that carried messages gets its
        sender's close marker after the last of them, however long a large one takes to
        cross: it is closed here only after ``_EXITED_QUIET_S`` without a message. One that
        carried none (the sender may have died before opening its outputs) after ``delay_s``."""
        assert self._loop is not None
        for channel in list(self._writers):
            if channel.split("/", 1)[0] == node_id:
                quiet = _EXITED_QUIET_S if channel in self._last_sample else delay_s
                self._loop.call_later(quiet, self._close_if_quiet, channel, quiet)

    def _close_if_quiet(self, channel: str, quiet: float) -> None:
        assert self._loop is not None
        if channel not in self._writers:
            return
        idle = self._loop.time() - self._last_sample.get(channel, float("-inf"))
        if idle < quiet:
            self._loop.call_later(quiet - idle, self._close_if_quiet, channel, quiet)
        else:
            self._close_channel(channel)

    async def close(self) -> None:
        for channel in list(self._writers):
            self._close_channel(channel)
        self._shm = None  # the regions' mappings close with it (the daemon unlinks the files)
        for sub in self._subscribers:
            with contextlib.suppress(Exception):
                sub.undeclare()
        if self._server is not None:
            self._server.close()
        if self._edge_tasks:  # the senders exited: publish what they sent, then ["C"]
            _, late = await asyncio.wait(set(self._edge_tasks), timeout=_DRAIN_TIMEOUT_S)
            for task in late:
                task.cancel()
        self._pool.shutdown(wait=True)
        for pub in self._publishers.values():
            with contextlib.suppress(Exception):
                pub.undeclare()
        self._subscribers.clear()
        self._publishers.clear()


class _Target:
    """A local receiver of a remote channel: the data connection into its listening socket, and
    its owner name for the slots of the bridge's shared-memory regions."""

    __slots__ = ("writer", "owner")

    def __init__(self, writer: asyncio.StreamWriter, owner: str) -> None:
        self.writer = writer
        self.owner = owner
