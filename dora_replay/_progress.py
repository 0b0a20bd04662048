"""Progress of a replay: recording time elapsed / total, messages sent, live nodes' status.

On a terminal a ``rich`` live panel redrawn a few times a second; elsewhere a plain line every
few seconds (CI logs stay readable). While stepping (``--step``) the periodic line is left out:
it would push the prompt away and land in the middle of what the user types; the last status
is printed once at the end.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

_PLAIN_EVERY_S = 2.0


@dataclass
class Snapshot:
    """``elapsed_ns``/``total_ns``: recorded time replayed so far / in total (ns);
    ``status``: live node id -> running / exited / failed (...)."""

    elapsed_ns: int
    total_ns: int
    sent: int
    total: int
    status: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        nodes = ", ".join(f"{k} {v}" for k, v in self.status.items())
        return (
            f"replay {self.elapsed_ns / 1e9:6.2f}/{self.total_ns / 1e9:.2f} s, "
            f"{self.sent}/{self.total} messages sent; live: {nodes or '(none)'}"
        )


class Progress:
    """``update(snapshot)`` often; ``close()`` once. ``mode``: ``rich``, ``plain`` or ``off``;
    ``periodic``: in ``plain`` mode, print the status line every few seconds (else only at
    ``close()``)."""

    def __init__(self, mode: str, *, periodic: bool = True) -> None:
        self.mode = mode
        self.periodic = periodic
        #: nobody reads stdout any more (``dora replay ... | head``): nothing more is printed,
        #: and the replay stops as on Ctrl-C
        self.output_closed = False
        self._live: Any = None
        self._last_plain = 0.0
        self._last: Snapshot | None = None
        if mode == "rich":
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(), refresh_per_second=8, transient=False)
            self._live.start()

    @staticmethod
    def choose(progress: bool | None) -> str:
        """``None``: rich on a terminal, else off; ``True``: rich or plain; ``False``: off."""
        tty = sys.stdout.isatty()
        if progress is False or (progress is None and not tty):
            return "off"
        return "rich" if tty else "plain"

    def print(self, line: str) -> None:
        """A line above the panel (node output, step prompts)."""
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
        else:
            self._plain(line)

    def _plain(self, line: str) -> None:
        if self.output_closed:
            return
        try:
            print(line, flush=True)
        except BrokenPipeError:
            from dora_runtime.daemon import stdout_to_devnull

            self.output_closed = True
            stdout_to_devnull()

    def update(self, snap: Snapshot) -> None:
        self._last = snap
        if self.mode == "rich":
            self._live.update(self._render(snap))
        elif self.mode == "plain" and self.periodic:
            now = time.monotonic()
            if now - self._last_plain >= _PLAIN_EVERY_S:
                self._last_plain = now
                self._plain(snap.line())

    @staticmethod
    def _render(snap: Snapshot) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        frac = snap.elapsed_ns / snap.total_ns if snap.total_ns else 1.0
        table.add_row(
            "recorded time",
            ProgressBar(total=1.0, completed=min(frac, 1.0), width=30),
            f"{snap.elapsed_ns / 1e9:.2f} / {snap.total_ns / 1e9:.2f} s",
        )
        table.add_row("sent", "", f"{snap.sent} / {snap.total} messages")
        for node, status in snap.status.items():
            style = "red" if status.startswith("failed") else "green"
            table.add_row("live", node, f"[{style}]{status}[/{style}]")
        return table

    def close(self) -> None:
        if self._live is not None:
            if self._last is not None:
                self._live.update(self._render(self._last))
            self._live.stop()
        elif self.mode == "plain" and self._last is not None:
            self._plain(self._last.line())
