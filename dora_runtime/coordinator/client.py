"""A blocking client of the coordinator, for the CLI and tests."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dora_runtime._spawn import pid_alive
from dora_runtime._ws_protocol import (
    MAX_MESSAGE_BYTES,
    CoordinatorError,
    Message,
    auth_headers,
    decode,
    dora_home,
    encode,
    find_token,
)

COORDINATOR_ENV = "DORA_COORDINATOR"


class CoordinatorLost(CoordinatorError):
    """The connection to the coordinator closed (it stopped, was killed, or the network went
    away) while a request or a stream of events was under way."""


def read_info(home: Path | None = None) -> dict[str, Any] | None:
    """``$DORA_HOME/coordinator.json`` (pid, host, port, url) if present."""
    path = (home or dora_home()) / "coordinator.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def coordinator_url(url: str | None = None) -> str:
    """``--coordinator``, else ``$DORA_COORDINATOR``, else the one ``dora up`` started."""
    if url:
        return url
    if os.environ.get(COORDINATOR_ENV):
        return os.environ[COORDINATOR_ENV]
    info = read_info()
    if info is None:
        raise CoordinatorError(
            f"no coordinator is running (nothing in {dora_home()}); start one with `dora up`, "
            "or pass --coordinator ws://HOST:PORT"
        )
    return str(info["url"])


class CoordinatorClient:
    """``with CoordinatorClient(url) as c: c.request({"type": "list"})``."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout_s: float = 5):
        from websockets.sync.client import connect

        self.url = coordinator_url(url)
        token = token if token is not None else find_token()
        self._rids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        try:
            self._ws = self._stack.enter_context(
                connect(
                    self.url,
                    additional_headers=auth_headers(token),
                    max_size=MAX_MESSAGE_BYTES,
                    open_timeout=timeout_s,
                )
            )
        except OSError as e:
            hint = ""
            info = read_info()
            if info is not None and info.get("url") == self.url and not pid_alive(info["pid"]):
                hint = (
                    f" (its process {info['pid']} is gone; restart it with `dora up` or "
                    "`dora coordinator`)"
                )
            raise CoordinatorError(
                f"cannot reach the coordinator at {self.url}: {e}{hint}"
            ) from None
        except Exception as e:  # noqa: BLE001 - handshake refusals (401) and the like
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status == 401:
                raise CoordinatorError(
                    f"the coordinator at {self.url} refused the connection: wrong or missing token "
                    f"(set DORA_TOKEN, or write it to {dora_home() / 'token'}, mode 0600)"
                ) from None
            raise CoordinatorError(f"cannot connect to {self.url}: {e}") from None

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def request(self, msg: Message, timeout_s: float | None = 60.0) -> Message:
        """Send a request and return its reply; raises ``CoordinatorError`` if it failed."""
        from websockets.exceptions import ConnectionClosed

        rid = next(self._rids)
        try:
            self._ws.send(encode({**msg, "rid": rid}))
            while True:
                answer = decode(self._ws.recv(timeout=timeout_s))
                if answer["type"] == "reply" and answer.get("rid") == rid:
                    break
        except TimeoutError:
            raise CoordinatorError(f"no answer to `{msg['type']}` within {timeout_s} s") from None
        except ConnectionClosed:
            raise CoordinatorLost(
                f"lost the coordinator at {self.url} while waiting for `{msg['type']}`"
            ) from None
        if not answer.get("ok"):
            raise CoordinatorError(answer.get("error", "request failed"))
        return answer

    def events(self, timeout_s: float | None = None) -> Iterator[Message]:
        """Events after a request (``log`` lines, then ``end``); stops at ``end`` or after
        ``timeout_s`` without one. Raises ``CoordinatorLost`` when the connection closes first:
        the coordinator went away, and what it was reporting on may well go on without it."""
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                msg = decode(self._ws.recv(timeout=timeout_s))
            except TimeoutError:
                return
            except ConnectionClosed:
                raise CoordinatorLost(f"lost the coordinator at {self.url}") from None
            yield msg
            if msg["type"] == "end":
                return
