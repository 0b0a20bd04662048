"""What a failing dora item says: short, readable, and ending with the command that fixes it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dora_runtime.errors import DoraError

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
        lines = _difference_lines(session, path, ch, result, dataflow)
        fix = (
            "accept the live outputs as the new golden: "
            f"pytest --dora-replay {shlex.quote(rel)} --dora-update-golden"
        )
        return cls("\n".join(lines), fix)


def _difference_lines(
    session: DoraSession, path: Path, ch: Any, result: Any, dataflow: Path | None
) -> list[str]:
    """A differing channel's detail (clipped), the replay's notes, the command to reproduce."""
    return [
        *_clip(channel_detail(ch)),
        *(f"note: {n}" for n in result.notes),
        f"reproduce: {replay_command(session, path, dataflow)}",
    ]


class GoldenDamaged(DoraItemError):
    """The golden recording lost messages (a chunk fails its CRC, the file is cut off): a gate
    that checks only the readable part would pass while checking less than it claims."""

    @classmethod
    def from_result(
        cls,
        session: DoraSession,
        path: Path,
        channel: str,
        result: Any,
        dataflow: Path | None = None,
    ) -> GoldenDamaged:
        """The failure of ``channel``: what was lost, how the readable part compared (the
        channel's difference, if any), and what to do."""
        lines = _damage_lines(session, path, result.problems)
        ch = result.comparison.channels.get(channel)
        if ch is not None and ch.ok:
            lines.append(f"the readable part was compared: {ch.summary()}")
        elif ch is not None:
            lines += _difference_lines(session, path, ch, result, dataflow)
        return cls("\n".join([*lines, *damage_fix(session, path)]))

    @classmethod
    def nothing_left(cls, session: DoraSession, path: Path, problems: list[Any]) -> GoldenDamaged:
        """No compared channel has a readable message left (so the recording has no item)."""
        lines = _damage_lines(session, path, problems)
        lines.append("no output of a live node is left to compare, so nothing was compared")
        return cls("\n".join([*lines, *damage_fix(session, path)]))


def _damage_lines(session: DoraSession, path: Path, problems: list[Any]) -> list[str]:
    """How a damaged golden's failure starts: how much was lost, then each loss."""
    from dora_replay._result import damage_summary

    return [
        f"{session.rel(path)} is damaged: {damage_summary(problems)}",
        *(f"lost: {p.message}" for p in problems),
    ]


class UnreadableRecording(DoraItemError):
    """A ``.dora`` file given to pytest that cannot be opened at all (no readable header)."""

    def __init__(self, session: DoraSession, path: Path, error: BaseException) -> None:
        rel = session.rel(path)
        why = str(error).removeprefix(f"{path}: ")
        record = " ".join(shlex.quote(c) for c in session.record_command(path))
        lines = [
            f"{rel} cannot be read: {why}",
            "none of its messages can be replayed, so nothing was compared",
            f"record the golden again: {record}",
            "or restore it from version control (`dora record repair` needs a readable header)",
        ]
        super().__init__("\n".join(lines))


def damage_fix(session: DoraSession, path: Path) -> list[str]:
    """What to do about a damaged golden: record it again (a repaired golden gates less)."""
    rel = shlex.quote(session.rel(path))
    record = " ".join(shlex.quote(c) for c in session.record_command(path, like=path))
    return [
        f"record the golden again: {record}",
        f"or restore it from version control; `dora record repair {rel}` makes it readable, "
        "but a repaired golden checks only what survived",
    ]


class ReplayCrashed(DoraItemError):
    """The replay itself failed (a node crashed, a timeout, a damaged file)."""

    def __init__(self, rel: str, error: BaseException, log_dir: Path | None = None) -> None:
        self.error = error
        logs = f"\nnode logs: {log_dir}" if log_dir else ""
        # Our own errors say what is wrong in words; the class name is for the unexpected ones.
        why = str(error) if isinstance(error, DoraError) else f"{type(error).__name__}: {error}"
        notes = "".join(f"\n{n}" for n in getattr(error, "__notes__", []))
        super().__init__(f"{rel}: replay failed: {why}{notes}{logs}")


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
