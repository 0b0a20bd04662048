"""Length-prefixed msgpack frames: the byte layer of every node, daemon and tap connection.

A frame is a little-endian ``u32`` body length followed by a msgpack body. The frame kinds and their
fields are specified in ``docs/protocol.md``.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Iterator
from typing import Any

import msgpack

from dora_runtime.errors import TransportError

_LEN = struct.Struct("<I")
MAX_FRAME = 64 * 1024 * 1024
"""Largest accepted frame body in bytes. Payloads this big belong in shared memory."""


def encode(obj: Any) -> bytes:
    """Encode one message as a complete frame (length prefix included)."""
    return frame(msgpack.packb(obj, use_bin_type=True))


def frame(body: bytes) -> bytes:
    """A complete frame around an already packed msgpack ``body``."""
    return _LEN.pack(len(body)) + body


def single_body(data: bytes) -> bytes | None:
    """The body of ``data`` when it is exactly one whole frame, else None."""
    if len(data) >= 4:
        (n,) = _LEN.unpack_from(data)
        if n + 4 == len(data) and n <= MAX_FRAME:
            return data[4:]
    return None


decode_body = functools.partial(msgpack.unpackb, raw=False, strict_map_key=False)
"""Decode one frame body (bytes-like). A ``partial``, not a function: no Python frame on the
path of every message."""


class FrameBuffer:
    """Incremental frame parser for a byte stream read in arbitrary pieces."""

    __slots__ = ("_buf", "out")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.out: list[bytes] = []

    def feed(self, data: bytes | memoryview) -> None:
        self._buf += data

    def frames(self) -> Iterator[Any]:
        """Yield every complete frame body (decoded) currently buffered."""
        buf = self._buf
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if n > MAX_FRAME:
                raise TransportError(f"frame of {n} bytes exceeds the {MAX_FRAME} byte limit")
            if end - pos - 4 < n:
                break
            body = bytes(buf[pos + 4 : pos + 4 + n])
            pos += 4 + n
            yield decode_body(body)
        if pos:
            del buf[:pos]

    def take(
        self, data: bytes, keep_last: int | None = None, skipped: list[bytes] | None = None
    ) -> int:
        """``feed(data)`` then ``bodies(keep_last, skipped)``, without copying ``data`` through
        the buffer when it is exactly one whole frame (the usual case for a node that waits)."""
        if not self._buf:
            body = single_body(data)
            if body is not None:
                self.out = [body]
                return 1
        self._buf += data
        return self.bodies(keep_last, skipped)

    def bodies(self, keep_last: int | None = None, skipped: list[bytes] | None = None) -> int:
        """Take every complete frame body buffered, still msgpack-encoded.

        Returns how many frames were taken. Bodies go to ``self.out``; with ``keep_last``, only
        the last ``keep_last`` are materialised and the count of the others is in the return
        value; skipped bodies whose tag byte is ``S`` (shared memory to release) are appended
        to ``skipped``.
        """
        buf = self._buf
        spans = []
        pos = 0
        end = len(buf)
        unpack = _LEN.unpack_from
        while end - pos >= 4:
            (n,) = unpack(buf, pos)
            if n > MAX_FRAME:
                raise TransportError(f"frame of {n} bytes exceeds the {MAX_FRAME} byte limit")
            if end - pos - 4 < n:
                break
            spans.append(pos + 4)
            pos += 4 + n
        total = len(spans)
        first = 0 if keep_last is None else max(0, total - keep_last)
        for start in spans[:first]:
            if skipped is not None and buf[start + 2] == 0x53:
                (n,) = unpack(buf, start - 4)
                skipped.append(bytes(buf[start : start + n]))
        self.out = [bytes(buf[s : s + unpack(buf, s - 4)[0]]) for s in spans[first:]]
        if pos:
            del buf[:pos]
        return total

    @property
    def pending(self) -> int:
        return len(self._buf)


def recv_frame(sock: socket.socket) -> Any | None:
    """Blocking read of one frame; None on a clean end of stream."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n > MAX_FRAME:
        raise TransportError(f"frame of {n} bytes exceeds the {MAX_FRAME} byte limit")
    body = _recv_exact(sock, n)
    if body is None:
        raise TransportError("connection closed in the middle of a frame")
    return decode_body(body)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        part = sock.recv(n - len(chunks))
        if not part:
            if not chunks:
                return None
            raise TransportError("connection closed in the middle of a frame")
        chunks += part
    return bytes(chunks)
