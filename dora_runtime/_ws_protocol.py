"""Coordinator WebSocket protocol: JSON messages, request/reply matching, tokens, state paths.

Every message is one JSON object with a ``type``. A request carries ``rid`` (an integer unique on
its connection); its answer is ``{"type": "reply", "rid": ..., "ok": true, ...}`` or
``{"type": "reply", "rid": ..., "ok": false, "error": "one line"}``. Anything else is an event.
The message types are listed in ``docs/protocol.md`` (section "Coordinator and daemons").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from dora_runtime.errors import DoraError

PROTOCOL_VERSION = 1
DEFAULT_PORT = 6012
TOKEN_ENV = "DORA_TOKEN"
HOME_ENV = "DORA_HOME"
AUTH_HEADER = "Authorization"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Message = dict[str, Any]
Handler = Callable[[Message], Awaitable[None]]


class CoordinatorError(DoraError):
    """A coordinator request failed, or the coordinator cannot be reached; the message says why."""


def dora_home() -> Path:
    """State directory of ``dora up``: ``$DORA_HOME``, default ``~/.local/state/dora``."""
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path.home() / ".local" / "state" / "dora"


def encode(msg: Message) -> str:
    return json.dumps(msg, separators=(",", ":"))


def decode(text: str | bytes) -> Message:
    """Parse one message; raises ``CoordinatorError`` on anything but a JSON object with a type."""
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise CoordinatorError(f"malformed message (not JSON): {e}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise CoordinatorError("malformed message: expected a JSON object with a `type`")
    return msg


def reply(rid: Any, ok: bool = True, **fields: Any) -> Message:
    return {"type": "reply", "rid": rid, "ok": ok, **fields}


def error_reply(rid: Any, error: str) -> Message:
    return reply(rid, False, error=error)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> str:
    """The token in ``path``; refuses a file that others can read (it must be mode 0600)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CoordinatorError(f"token file {path} does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CoordinatorError(
            f"token file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 600 {path}`"
        )
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise CoordinatorError(f"token file {path} is empty")
    return token


def find_token(token_file: Path | None = None) -> str | None:
    """``--token-file``, else ``$DORA_TOKEN``, else ``$DORA_HOME/token`` if it exists."""
    if token_file is not None:
        return read_token_file(token_file)
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    default = dora_home() / "token"
    return read_token_file(default) if default.exists() else None


def auth_headers(token: str | None) -> dict[str, str]:
    return {AUTH_HEADER: f"Bearer {token}"} if token else {}


class Peer:
    """One side of an asyncio WebSocket connection: send events, make requests, answer them.

    ``serve(handler)`` reads until the connection closes, resolving replies to our requests and
    passing every other message to ``handler`` (each in its own task, so a slow handler never
    blocks the reader).
    """

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._rids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def send(self, msg: Message) -> None:
        if self.closed:
            return
        try:
            await self.ws.send(encode(msg))
        except Exception:  # noqa: BLE001 - a closed connection: the reader notices and cleans up
            self.closed = True

    async def request(self, msg: Message, timeout_s: float = 30.0) -> Message:
        """Send a request and wait for its reply; raises ``CoordinatorError`` on a failed reply,
        a timeout or a closed connection."""
        rid = next(self._rids)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            await self.send({**msg, "rid": rid})
            if self.closed:
                raise CoordinatorError(f"connection closed before `{msg['type']}` was sent")
            answer = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise CoordinatorError(f"no answer to `{msg['type']}` within {timeout_s:g} s") from None
        finally:
            self._waiting.pop(rid, None)
        if not answer.get("ok", False):
            raise CoordinatorError(answer.get("error", "request failed"))
        return answer

    async def serve(self, handler: Handler) -> None:
        try:
            async for text in self.ws:
                msg = decode(text)
                if msg["type"] == "reply":
                    fut = self._waiting.get(msg.get("rid"))  # type: ignore[arg-type]
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                task = asyncio.create_task(self._handle(handler, msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            self.closed = True
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(CoordinatorError("connection closed"))

    async def _handle(self, handler: Handler, msg: Message) -> None:
        try:
            await handler(msg)
        except DoraError as e:
            if "rid" in msg:
                await self.send(error_reply(msg["rid"], str(e)))
        except Exception as e:  # noqa: BLE001 - one bad request must not end the connection
            if "rid" in msg:
                await self.send(error_reply(msg["rid"], f"internal error: {type(e).__name__}: {e}"))
            else:
                raise

    async def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close()
