"""Errors raised by the runtime. One root, specific subclasses, messages that say how to fix."""

from __future__ import annotations


class DoraError(Exception):
    """Root of every error raised by dora-py."""


class DescriptorError(DoraError):
    """A dataflow descriptor is invalid.

    ``problems`` lists every problem found, each a ``(line, message)`` pair; ``line`` is 1-based
    or ``None`` when the problem has no single place in the file.
    """

    def __init__(self, path: str, problems: list[tuple[int | None, str]]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = [f"{path}:{ln}: {msg}" if ln else f"{path}: {msg}" for ln, msg in self.problems]
        super().__init__("\n".join(lines))


class NodeError(DoraError):
    """A node API call was used wrongly (unknown output, bad data, not running under a daemon)."""


class TransportError(DoraError):
    """The connection to the daemon or to a peer node failed."""


class DataflowFailed(DoraError):
    """A dataflow ended with one or more failed nodes."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = dict(failures)
        detail = "; ".join(f"{k}: {v}" for k, v in self.failures.items())
        super().__init__(f"{len(self.failures)} node(s) failed: {detail}")
