"""What a failing dora item says: short, readable, and ending with the command that fixes it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_dora._session import DoraSession

_MAX_DETAIL_LINES = 25


class DoraItemError(Exception):
    """Base of the errors a dora item reports; ``str()`` is the whole failure text."""


class ChannelMismatch(DoraItemError):
    """A replayed channel differs from its golden recording."""

    def __init__(self, text: str, fix: str) -> None:
        self.text = text
        self.fix = fix
        self.report_path: Path | None = None
        super().__init__(text)

    def __str__(self) -> str:
        plot = f"\nplot: {self.report_path}" if self.report_path else ""
        return f"{self.text}{plot}\n{self.fix}"

    @classmethod
    def from_result(
        cls,
        session: DoraSession,
        path: Path,
        channel: str,
        result: Any,
        dataflow: Path | None = None,
    ) -> ChannelMismatch | None:
        """The failure for ``channel`` of ``result``, or ``None`` when it matches."""
        ch = result.comparison.channels.get(channel)
        if ch is None or ch.ok:
            return None
        rel = session.rel(path)
        lines = [
            *_clip(channel_detail(ch)),
            *(f"note: {n}" for n in result.notes),
            f"reproduce: {replay_command(session, path, dataflow)}",
        ]
        fix = (
            "accept the live outputs as the new golden: "
            f"pytest --dora-replay {shlex.quote(rel)} --dora-update-golden"
        )
        return cls("\n".join(lines), fix)


class ReplayCrashed(DoraItemError):
    """The replay itself failed (a node crashed, a timeout, a damaged file)."""

    def __init__(self, rel: str, error: BaseException, log_dir: Path | None = None) -> None:
        self.error = error
        logs = f"\nnode logs: {log_dir}" if log_dir else ""
        super().__init__(f"{rel}: replay failed: {type(error).__name__}: {error}{logs}")


class GoldenMissing(DoraItemError):
    """A golden recording named by the test or ``--dora-replay`` does not exist."""

    def __init__(self, session: DoraSession, target: Path) -> None:
        self.target = target
        rel = session.rel(target)
        cmd = " ".join(shlex.quote(c) for c in session.record_command(target))
        lines = [f"golden recording {rel} does not exist.", f"create it: {cmd}"]
        if session.settings.dataflow is None:
            lines.append(
                '(or set `dataflow = "path/to/dataflow.yml"` in [tool.pytest_dora] and run '
                "pytest with --dora-update-golden)"
            )
        else:
            lines.append(f"or let pytest make it: pytest --dora-replay {rel} --dora-update-golden")
        super().__init__("\n".join(lines))


def replay_command(session: DoraSession, path: Path, dataflow: Path | None = None) -> str:
    """The ``dora replay`` command line that reproduces what the plugin ran, configured
    tolerances included."""
    settings = session.settings
    parts = ["dora", "replay", session.rel(path)]
    if dataflow is not None:
        parts += ["--dataflow", session.rel(dataflow)]
    parts += ["--speed", f"{settings.speed:g}"]
    for node, impl in sorted(settings.replace.items()):
        parts += ["--replace", f"{node}={session.rel(Path(impl))}"]
    for channel, table in (settings.tolerances_for_replay() or {}).items():
        values = [
            f"{k}={'|'.join(v) if isinstance(v, list) else v}" for k, v in sorted(table.items())
        ]
        parts += ["--tolerance", f"{'*' if channel == 'default' else channel}:{','.join(values)}"]
    parts.append("--assert")
    return " ".join(shlex.quote(p) for p in parts)


def channel_detail(ch: Any) -> list[str]:
    """What differs on one channel: the comparer's summary, its first difference (expected vs
    got, error size), how many more, the tolerance in force and the comparer's notes."""
    lines = [ch.summary()]
    if ch.differences:
        text = ch.differences[0].describe().removeprefix(f"{ch.channel} ")
        text = text.replace("recorded:", "expected:").replace("replayed:", "got:     ")
        lines.append(f"first difference: {text}")
    more = len(ch.differences) - 1
    if more > 0:
        lines.append(f"... and {more} more difference(s) on this channel")
    tol = ch.tolerance
    ignored = (("ignore_fields", tol.ignore_fields), ("ignore_metadata", tol.ignore_metadata))
    extra = [f"{k}={','.join(v)}" for k, v in ignored if v]
    lines.append(f"tolerance: atol={tol.atol:g} rtol={tol.rtol:g} {' '.join(extra)}".rstrip())
    lines += [f"note: {n}" for n in ch.notes]
    return [line for chunk in lines for line in chunk.splitlines()]


def _clip(lines: list[str]) -> list[str]:
    if len(lines) <= _MAX_DETAIL_LINES:
        return lines
    hidden = len(lines) - _MAX_DETAIL_LINES
    return [
        *lines[:_MAX_DETAIL_LINES],
        f"... ({hidden} more lines; see `dora replay ... --assert`)",
    ]
