"""``send_output_raw``: fill a shared-memory buffer in place, then send it as a UInt8 array."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dora_runtime._codec import INLINE_THRESHOLD
from dora_runtime._shm import DATA_OFFSET
from dora_runtime.errors import NodeError

if TYPE_CHECKING:
    from dora_runtime._sender import Sender


class SampleHandler:
    """A writable sample. Below the inline threshold it is heap memory, else a pool region."""

    def __init__(
        self, sender: Sender, output_id: str, length: int, metadata: dict[str, Any], node: Any
    ) -> None:
        if length < 0:
            raise NodeError(f"send_output_raw length must be >= 0, got {length}")
        self._sender = sender
        self._output = output_id
        self._length = length
        self._metadata = metadata
        self._node = node
        self._sent = False
        self._region = None
        self._live: list[Any] = []
        if length >= INLINE_THRESHOLD:
            self._region, self._live = sender.acquire_raw(output_id, length)
            self._view = self._region.payload(length)
        else:
            sender.check_output(output_id)
            self._heap = bytearray(length)
            self._view = memoryview(self._heap)

    def as_memoryview(self) -> memoryview:
        """The writable buffer (``len == data_length``)."""
        return self._view

    def __buffer__(self, flags: int) -> memoryview:  # Python 3.12+ buffer protocol
        return self._view

    def __enter__(self) -> memoryview:
        return self._view

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.send()

    def send(self) -> None:
        """Send the buffer. A sample is sent at most once."""
        if self._sent:
            raise NodeError("this sample was already sent")
        self._sent = True
        cause = self._node._cause
        if self._region is None:  # inline: packed straight from the heap buffer, no copy first
            self._sender.send(
                self._output, memoryview(self._heap), self._metadata, cause, self._node._taken_now
            )
            return
        payload = ["q", self._region.name, DATA_OFFSET, self._length, 0, "uint8", self._length]
        self._sender.send_region(
            self._output,
            self._region,
            payload,
            self._live,
            self._metadata,
            cause,
            self._node._taken_now,
        )
