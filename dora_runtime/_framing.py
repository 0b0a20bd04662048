"""Length-prefixed msgpack frames: the byte layer of every node, daemon and tap connection.

A frame is a little-endian ``u32`` body length followed by a msgpack body. The frame kinds and their
fields are specified in ``docs/protocol.md``.
"""

from __future__ import annotations

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
    body = msgpack.packb(obj, use_bin_type=True)
    return _LEN.pack(len(body)) + body


def decode_body(body: bytes | memoryview) -> Any:
    return msgpack.unpackb(body, raw=False, strict_map_key=False)


class FrameBuffer:
    """Incremental frame parser for a byte stream read in arbitrary pieces."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

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
