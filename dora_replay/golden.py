"""Updating a golden recording with the outputs of a replay (``--dora-update-golden``).

The compared channels (outputs of the nodes that ran live) are rewritten with the replayed
messages; every other channel (the recorded inputs) is copied unchanged, so the next replay feeds
exactly the same inputs. The new file is written beside the golden one and then atomically
replaces it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dora_replay._recording import Message, Recording
from dora_replay._recording import open as open_recording
from dora_replay._writer import open_writer
from dora_replay.errors import RecordingError

if TYPE_CHECKING:
    from dora_replay._result import ReplayResult


@dataclass
class GoldenUpdate:
    """What ``update_golden`` did: per rewritten channel (old count, new count); copied inputs."""

    path: Path
    rewritten: dict[str, tuple[int, int]] = field(default_factory=dict)
    copied: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{c}: {a} -> {b} message(s)" for c, (a, b) in self.rewritten.items()]
        return f"updated {self.path}: " + ("; ".join(parts) or "nothing to rewrite")


def _replayed_of(
    source: ReplayResult | str | os.PathLike[str],
) -> tuple[dict[str, list[Message]], dict[str, list[int]]]:
    """(replayed live outputs per channel, the feeders' sequence maps)."""
    if isinstance(source, str | os.PathLike):
        from dora_replay.compare import read_channels, seq_maps_of

        with open_recording(source) as rec:
            fed = seq_maps_of(rec)
            return {c: m for c, m in read_channels(rec).items() if c not in fed}, fed
    return {c: source.replayed.get(c, []) for c in source.comparison.channels}, source.seq_maps


def _retimed(
    rec: Recording, new: dict[str, list[Message]], seq_maps: dict[str, list[int]]
) -> list[Message]:
    """The replayed outputs in the golden's numbering and timeline.

    A cause on a fed channel gets the recorded seq back. Times: an output is placed just after
    the lockstep order key of the recorded input at the root of its cause chain (the recorded
    time of that input's first effect), one ns per hop, so replaying the updated golden in
    lockstep delivers its inputs in the same order as the replay that produced it.
    """
    fed = list(seq_maps)
    root_time: dict[tuple[str, int], int] = {}
    for m in rec.iter_messages([c for c in fed if c in rec.channels]):
        root_time[(m.channel, m.seq)] = m.publish_time_ns
    effect: dict[tuple[str, int], int] = {}
    for m in rec.iter_messages([c for c in rec.channels if c not in seq_maps]):
        src, sep, seq = (m.cause or "").rpartition("#")
        key = (src, int(seq)) if sep and seq.isdigit() else None
        if key is not None and key in root_time:
            effect[key] = min(effect.get(key, m.publish_time_ns), m.publish_time_ns)
    root_time.update({k: t - 1 for k, t in effect.items()})
    merged = sorted((m for msgs in new.values() for m in msgs), key=lambda m: m.log_time_ns)
    time_of: dict[str, int] = {}
    last_of: dict[str, int] = {}
    last = rec.start_time_ns
    out = []
    for m in merged:
        src, sep, seq = (m.cause or "").rpartition("#")
        cause = m.cause
        t = last + 1
        if sep and src in seq_maps and seq.isdigit() and int(seq) < len(seq_maps[src]):
            rec_seq = seq_maps[src][int(seq)]
            cause = f"{src}#{rec_seq}"
            t = root_time.get((src, rec_seq), t) + 1
        elif m.cause in time_of:
            t = time_of[m.cause] + 1
        t = max(t, last_of.get(m.channel, t - 1) + 1)
        time_of[f"{m.channel}#{m.seq}"] = last_of[m.channel] = last = t
        out.append(m._replace(cause=cause, log_time_ns=t, publish_time_ns=t))
    return out


def update_golden(
    golden_path: str | os.PathLike[str],
    replayed: ReplayResult | str | os.PathLike[str],
    channels: list[str] | None = None,
) -> GoldenUpdate:
    """Rewrite the recorded outputs of ``golden_path`` with the replayed ones.

    ``replayed``: a :class:`ReplayResult` (its compared channels are rewritten) or the path of
    a replayed run saved with ``out=`` (its live channels are rewritten); ``channels`` narrows
    that set. Header, metadata and every other channel are copied unchanged. Raises
    ``RecordingError`` when the golden file is a split recording.
    """
    golden = Path(golden_path)
    new, seq_maps = _replayed_of(replayed)
    if channels is not None:
        new = {c: new.get(c, []) for c in channels}
    tmp = golden.with_name(f".{golden.name}.update-{os.getpid()}.tmp")
    result = GoldenUpdate(golden)
    with open_recording(golden) as rec:
        if len(rec.parts) != 1:
            raise RecordingError(f"{golden}: updating a split recording is not supported")
        header = rec.header
        codec = header.compression or "zstd"
        writer = open_writer(tmp, header.dataflow_yaml, dict(header.metadata), compression=codec)
        try:
            kept = [m for m in rec.iter_messages() if m.channel not in new]
            for m in sorted([*kept, *_retimed(rec, new, seq_maps)], key=lambda m: m.log_time_ns):
                writer.write(
                    m.channel,
                    m.data,
                    log_time_ns=m.log_time_ns,
                    publish_time_ns=m.publish_time_ns,
                    seq=m.seq,
                    cause=m.cause,
                    metadata=m.metadata or None,
                )
                if m.channel in new:
                    continue
                result.copied[m.channel] = result.copied.get(m.channel, 0) + 1
            for channel, msgs in new.items():
                old = rec.channels[channel].message_count if channel in rec.channels else 0
                result.rewritten[channel] = (old, len(msgs))
            writer.close()
        except BaseException:
            writer.close()
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, golden)
    return result


__all__ = ["GoldenUpdate", "update_golden"]
