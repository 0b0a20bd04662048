"""What a replay returns: comparison, captured messages, failures, timing, and how to rerun it."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dora_replay._reader import Problem
from dora_replay._recording import Message
from dora_replay.compare import Comparison


@dataclass
class TimingStats:
    """|actual - scheduled| send times of the feeders (speed > 0), in ns."""

    count: int = 0
    p50_ns: int = 0
    p99_ns: int = 0
    max_ns: int = 0

    @classmethod
    def of(cls, lateness_ns: list[int]) -> TimingStats:
        if not lateness_ns:
            return cls()
        import numpy as np

        a = np.abs(np.asarray(lateness_ns, dtype=np.int64))
        return cls(len(a), int(np.percentile(a, 50)), int(np.percentile(a, 99)), int(a.max()))

    def line(self) -> str:
        if not self.count:
            return "timing: not measured (lockstep or nothing sent)"
        return (
            f"timing: |actual - scheduled| p50 {self.p50_ns / 1e3:.0f} us, "
            f"p99 {self.p99_ns / 1e3:.0f} us, max {self.max_ns / 1e3:.0f} us "
            f"over {self.count} messages"
        )


REPLAY_ITSELF = "(replay)"
"""Key in ``ReplayResult.failures`` of the replay's own failure (a timeout), not a node's."""


def failure_line(name: str, why: str) -> str:
    """``node `x` exit 1; ...``, or ``the replay did not finish ...`` for the replay itself."""
    return f"the replay {why}" if name == REPLAY_ITSELF else f"node `{name}` {why}"


def damage_summary(problems: list[Problem]) -> str:
    """How much a recording lost, from its ``problems``, worst first: a cut-off end (everything
    recorded after the cut is gone), ``"23 recorded message(s) could not be read"``, unreadable
    bytes holding an unknown number; ``""`` when there is none."""
    if not problems:
        return ""
    parts = []
    if any(p.kind == "truncated" for p in problems):
        parts.append("the file is cut off: whatever was recorded after the cut is gone")
    known = sum(p.lost_messages or 0 for p in problems)
    if known or not parts:
        parts.append(f"{known} recorded message(s) could not be read")
    unknown = [p for p in problems if p.lost_messages is None and p.kind != "truncated"]
    if unknown:
        size = sum(p.lost_bytes for p in unknown)
        parts.append(f"{size} unreadable byte(s) held an unknown number of messages")
    return "; ".join(parts)


@dataclass
class ReplayResult:
    """Outcome of :func:`dora_replay.replay`.

    ``comparison``: replayed vs recorded outputs of the live nodes; ``recorded``/``replayed``:
    those outputs per channel (``replayed`` also has the fed channels when ``out`` was given);
    ``failures``: live nodes (or feeders) that failed -> reason with their last log lines;
    ``warnings``: damaged recording, unrecorded outputs...; ``notes``: what was worth saying
    (which dataflow file was used when it is not the recorded one); ``stopped_by_user``: ``q``
    was answered to a ``step`` prompt, so only the outputs of the messages sent until then were
    compared; ``problems``: what the replay found damaged or lost in the recording (empty for an
    intact one; see :attr:`damaged`); ``command``: the ``dora replay`` command line that
    reproduces this replay.
    """

    comparison: Comparison
    recorded: dict[str, list[Message]]
    replayed: dict[str, list[Message]]
    failures: dict[str, str]
    warnings: list[str]
    replayed_nodes: list[str]
    live_nodes: list[str]
    messages_sent: int
    timing: TimingStats
    log_dir: Path
    out: Path | None
    command: str
    drops: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False
    seq_maps: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    stopped_by_user: bool = False
    problems: list[Problem] = field(default_factory=list)
    recording: Path | None = None  #: the replayed file, as given
    replaced: dict[str, str] = field(default_factory=dict)  #: node -> the file it ran, as given

    @property
    def ok(self) -> bool:
        """No live node failed and every compared output matches. Says nothing about damage
        to the recording (see :attr:`damaged`; :meth:`assert_matches` checks both)."""
        return not self.failures and self.comparison.ok

    @property
    def damaged(self) -> bool:
        """The recording lost messages (a chunk failed its CRC, the file was cut off...): the
        comparison covered only what was readable."""
        return bool(self.problems)

    @property
    def lost_messages(self) -> int:
        """Recorded messages that could not be read (those of damage with a known count)."""
        return sum(p.lost_messages or 0 for p in self.problems)

    def damage_summary(self) -> str:
        """``"23 recorded message(s) could not be read"`` (and unknown losses); ``""`` when the
        recording is intact."""
        return damage_summary(self.problems)

    def damage_fix(self) -> str:
        """What to do about a damaged recording (``""`` when intact)."""
        if not self.problems:
            return ""
        name = shlex.quote(str(self.recording)) if self.recording else "FILE"
        return (
            f"`dora record repair {name}` rewrites it with what is readable (then replay it "
            "again), or record it again"
        )

    def report(self) -> str:
        live = [
            f"{n} (replaced by {self.replaced[n]})" if n in self.replaced else n
            for n in self.live_nodes
        ]
        lines = [
            f"replayed nodes: {', '.join(self.replayed_nodes) or '(none)'}; "
            f"live nodes: {', '.join(live) or '(none)'}; "
            f"{self.messages_sent} message(s) sent",
        ]
        lines += [f"note: {n}" for n in self.notes]
        if self.stopped_by_user:
            lines.append(
                f"stopped by user after {self.messages_sent} message(s): only their outputs "
                "are compared"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        for node, why in self.failures.items():
            lines.append(f"FAILED: {failure_line(node, why)}")
        lines.append(self.comparison.report(damage=self.damage_summary()))
        if self.damaged:
            lines.append(f"damaged recording: {self.damage_fix()}")
        return "\n".join(lines)

    def assert_matches(self) -> None:
        """Raise ``AssertionError`` (the readable report + the command that reproduces it)
        unless every live node ran fine, every compared output matches and the recording was
        read whole (a damaged recording checks less than it claims)."""
        if self.ok and not self.damaged:
            return
        # the CLI fails as this did only with --assert (the pytest items' command has it too)
        command = self.command if " --assert" in self.command else f"{self.command} --assert"
        raise AssertionError(f"{self.report()}\n\nreproduce with:\n  {command}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "command": self.command,
            "replayed_nodes": self.replayed_nodes,
            "live_nodes": self.live_nodes,
            "replaced": self.replaced,
            "messages_sent": self.messages_sent,
            "failures": self.failures,
            "warnings": self.warnings,
            "notes": self.notes,
            "drops": self.drops,
            "timed_out": self.timed_out,
            "stopped_by_user": self.stopped_by_user,
            "damaged": self.damaged,
            "lost_messages": self.lost_messages,
            "problems": [
                {
                    "path": str(p.path),
                    "offset": p.offset,
                    "kind": p.kind,
                    "message": p.message,
                    "lost_messages": p.lost_messages,
                    "lost_bytes": p.lost_bytes,
                    "channel": p.channel,
                }
                for p in self.problems
            ],
            "timing": self.timing.__dict__,
            "log_dir": str(self.log_dir),
            "out": str(self.out) if self.out else None,
            "comparison": self.comparison.to_dict(),
        }

    def write_report(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str), encoding="utf-8")
