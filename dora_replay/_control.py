"""The replay's control socket: feeders say hello, get the common start time, report progress,
ask before each message in ``--step`` mode, and hand in their timing statistics at the end.

JSON lines over a Unix socket. Feeder -> replay: ``{"hello": id}``, ``{"sent": n, "t": ns}``,
``{"step": id, "desc": text}``, ``{"done": id, "sent": n, "per_channel": {channel: n},
"lateness_ns": [...]}``. Replay -> feeder: ``{"start": monotonic_ns}``, ``{"go": bool}``.

``q`` at a step prompt stops the whole replay: from then on every feeder's next step is
refused, so each stops before sending its next message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

StepPrompt = Callable[[str], Awaitable[bool]]


class Controller:
    """Serves the feeders of one replay. ``sent``/``t_ns``: per feeder, messages sent and the
    recorded time (ns from the replay origin) of the last one; ``sent_per_channel``: what the
    feeders that finished sent, per channel; ``complete``: the feeders that sent their whole
    schedule; ``stopped_by_user``: ``q`` was answered to a step."""

    def __init__(self, path: str, feeders: set[str], step: StepPrompt | None = None) -> None:
        self.path = path
        self.feeders = set(feeders)
        self.step = step
        self.writers: dict[str, asyncio.StreamWriter] = {}
        self.sent: dict[str, int] = {f: 0 for f in feeders}
        self.t_ns: dict[str, int] = {f: 0 for f in feeders}
        self.done: set[str] = set()
        self.sent_per_channel: dict[str, int] = {}
        self.complete: set[str] = set()  # feeders that sent their whole schedule
        self.stopped_by_user = False
        self.lateness_ns: list[int] = []
        self.started = False
        self._server: asyncio.AbstractServer | None = None
        self._step_lock = asyncio.Lock()
        self._start_ns: int | None = None
        self._started = asyncio.Event()

    async def open(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)

    async def wait_start(self) -> int:
        """The monotonic time (ns) the feeders count their schedule from, once it is set."""
        await self._started.wait()
        assert self._start_ns is not None
        return self._start_ns

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self.writers.values():
            w.close()

    @property
    def all_hello(self) -> bool:
        return set(self.writers) >= self.feeders

    @property
    def cut_short(self) -> bool:
        """A feeder did not send its whole schedule: the replay was stopped (``q``, Ctrl-C,
        ``--stop-after``, nobody reading its output) or a feeder died."""
        return self.started and not self.complete >= self.feeders

    @property
    def messages_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def recorded_time_ns(self) -> int:
        return max(self.t_ns.values(), default=0)

    def start(self, delay_s: float = 0.05) -> None:
        """Give every feeder (now and later) the start time: now + ``delay_s`` (monotonic)."""
        self.started = True
        self._start_ns = time.monotonic_ns() + int(delay_s * 1e9)
        self._started.set()
        for w in self.writers.values():
            self._send(w, start=self._start_ns)

    @staticmethod
    def _send(w: asyncio.StreamWriter, **msg: Any) -> None:
        if not w.is_closing():
            w.write((json.dumps(msg) + "\n").encode())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me: str | None = None
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                msg = json.loads(line)
                if "hello" in msg:
                    me = msg["hello"]
                    self.writers[me] = writer
                    if self._start_ns is not None:
                        self._send(writer, start=self._start_ns)
                elif "sent" in msg and me is not None and "done" not in msg:
                    self.sent[me] = msg["sent"]
                    self.t_ns[me] = msg["t"]
                elif "step" in msg:
                    self._send(writer, go=await self._ask(msg["desc"]))
                elif "done" in msg:
                    self.done.add(msg["done"])
                    self.sent[msg["done"]] = msg["sent"]
                    self.sent_per_channel.update(msg.get("per_channel", {}))
                    if msg.get("complete"):
                        self.complete.add(msg["done"])
                    self.lateness_ns.extend(msg.get("lateness_ns", []))

    async def _ask(self, desc: str) -> bool:
        """Whether a feeder may send the message ``desc``: one prompt at a time; no once the
        user stopped the replay."""
        if self.step is None:
            return True
        async with self._step_lock:
            if self.stopped_by_user:
                return False
            go = await self.step(desc)
            self.stopped_by_user = not go
            return go


def stdin_stepper(echo: Callable[[str], None]) -> StepPrompt:
    """``--step``: show the next message and wait for Enter; ``c`` or end of input stops
    stepping (the rest is sent), ``q`` stops the replay (the prompt answers False). Standard
    input is read by a daemon thread, so a replay that ends while waiting never hangs on it."""
    state: dict[str, Any] = {"stepping": True, "queue": None}

    def reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
        while True:
            line = sys.stdin.readline()
            loop.call_soon_threadsafe(queue.put_nowait, line if line else None)
            if not line:
                return

    async def prompt(desc: str) -> bool:
        if not state["stepping"]:
            return True
        if state["queue"] is None:
            state["queue"] = asyncio.Queue()
            loop = asyncio.get_running_loop()
            threading.Thread(target=reader, args=(loop, state["queue"]), daemon=True).start()
        echo(f"next: {desc}")
        echo("  Enter: send · c+Enter: continue without stepping · q+Enter: stop")
        while True:
            answer = await state["queue"].get()
            if answer is None:
                state["stepping"] = False
                return True
            answer = answer.strip().lower()
            if answer in ("", "c", "q"):
                break
            echo(f"  {answer!r}? Enter: send · c+Enter: continue · q+Enter: stop")
        if answer == "q":
            return False
        if answer == "c":
            state["stepping"] = False
        return True

    return prompt
