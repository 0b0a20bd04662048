"""Errors raised by the recording, replay and comparison code."""

from __future__ import annotations

from dora_runtime.errors import DoraError


class RecordingError(DoraError):
    """A recording could not be written or read."""


class RecordingCorruptError(RecordingError):
    """A recording is damaged beyond what a reader can skip over."""


class RecordingNotFoundError(RecordingError):
    """A recording path does not exist (or a pattern matched no file)."""


class OutputRefusedError(RecordingError):
    """Writing ``output`` would replace something that must not be replaced silently (an
    existing file without ``--overwrite``, the file being read...)."""

    def __init__(self, output: object, why: str) -> None:
        self.output = output
        super().__init__(f"{output} {why}")
