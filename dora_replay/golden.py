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
from typing import TYPE_CHECKING, Any

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
) -> tuple[dict[str, list[Message]], dict[str, list[Message]], dict[str, list[int]]]:
    """(the live outputs to rewrite, every replayed live output, the feeders' sequence maps)."""
    if isinstance(source, str | os.PathLike):
        from dora_replay.compare import read_channels, seq_maps_of

        with open_recording(source) as rec:
            fed = seq_maps_of(rec)
            live = {c: m for c, m in read_channels(rec).items() if c not in fed}
            return live, live, fed
    fed = source.seq_maps
    live = {c: m for c, m in source.replayed.items() if c not in fed}
    return {c: live.get(c, []) for c in source.comparison.channels}, live, fed


def _retimed(
    rec: Recording,
    new: dict[str, list[Message]],
    replayed: dict[str, list[Message]],
    seq_maps: dict[str, list[int]],
) -> list[Message]:
    """The replayed outputs in the golden's numbering and timeline.

    A cause on a fed channel gets the recorded seq back. Times: a replayed output paired with a
    recorded one (same cause, then same order, as the comparer pairs them) keeps the recorded
    log and publish times, so rates stay real and a lockstep replay of the updated golden
    orders its inputs exactly as before. An unpaired output is placed just after its cause:
    the lockstep order key of the recorded input at the root of its cause chain (the recorded
    time of that input's first effect), one ns per hop, so replaying the updated golden in
    lockstep delivers its inputs in the same order as the replay that produced it.
    """
    from dora_replay._align import Aligner, cause_order, first_effects, parse_cause
    from dora_replay.compare import read_channels

    fed = list(seq_maps)
    root_time: dict[tuple[str, int], int] = {}
    for m in rec.iter_messages([c for c in fed if c in rec.channels]):
        root_time[(m.channel, m.seq)] = m.publish_time_ns
    recorded = read_channels(rec, [c for c in rec.channels if c not in seq_maps])
    effect = first_effects(recorded, fed)
    root_time.update({k: t - 1 for k, t in effect.items() if k in root_time})
    # Pair replayed with recorded outputs, channel by channel in cause order (as the comparer).
    aligner = Aligner(recorded, replayed, seq_maps, (None, None))
    paired: dict[tuple[str, int], Message] = {}  # (channel, replayed seq) -> recorded message
    for channel in cause_order(sorted(set(recorded) | set(replayed)), recorded):
        rec_msgs, rep_msgs = recorded.get(channel, []), replayed.get(channel, [])
        for i, j, _cause in aligner.align(channel):
            if i is not None and j is not None:
                paired[(channel, rep_msgs[j].seq)] = rec_msgs[i]
    golden_time = {(c, m.seq): m.publish_time_ns for c, ms in recorded.items() for m in ms}
    merged = sorted((m for msgs in new.values() for m in msgs), key=lambda m: m.log_time_ns)
    queues = {c: sorted(msgs, key=lambda m: m.seq) for c, msgs in new.items()}
    done = dict.fromkeys(queues, 0)  # per channel: how many of its messages have their times
    time_of: dict[str, int] = {}
    last_of: dict[str, int] = {}
    last = rec.start_time_ns
    out = []

    def recorded_seq(src: str, s: int) -> int:
        """A fed channel's seq as the golden numbers it (the feeders number from 0)."""
        return seq_maps[src][s] if src in seq_maps and s < len(seq_maps[src]) else s

    def place_upto(channel: str, seq: int) -> None:
        """Give ``channel``'s messages up to ``seq`` their golden times, in seq order, each
        after its cause when that is rewritten too (the capture's log times need not follow
        causes: outputs of several nodes can reach it in one read)."""
        nonlocal last
        q = queues.get(channel, [])
        while done.get(channel, 0) < len(q) and q[done[channel]].seq <= seq:
            m = q[done[channel]]
            done[channel] += 1
            p = parse_cause(m.cause)
            if p is not None and p[0] in queues:
                place_upto(*p)
            cause = f"{p[0]}#{recorded_seq(*p)}" if p is not None and p[0] in seq_maps else m.cause
            match = paired.get((m.channel, m.seq))
            if match is not None:
                log_t, pub_t = match.log_time_ns, match.publish_time_ns
            else:
                pub_t = _after_cause(m, cause, time_of, root_time, aligner, golden_time, last) + 1
                pub_t = max(pub_t, last_of.get(m.channel, pub_t - 1) + 1)
                log_t = pub_t
            time_of[f"{m.channel}#{m.seq}"] = last_of[m.channel] = pub_t
            last = max(last, pub_t)
            taken = (
                {src: recorded_seq(src, s) for src, s in m.taken.items()} if m.taken else m.taken
            )
            took = [(src, recorded_seq(src, s)) for src, s in m.took] if m.took else m.took
            out.append(
                m._replace(
                    cause=cause, log_time_ns=log_t, publish_time_ns=pub_t, taken=taken, took=took
                )
            )

    for m in merged:
        place_upto(m.channel, m.seq)
    return out


def _after_cause(
    m: Message,
    cause: str | None,
    time_of: dict[str, int],
    root_time: dict[tuple[str, int], int],
    aligner: Any,
    golden_time: dict[tuple[str, int], int],
    last: int,
) -> int:
    """The time an unpaired replayed output follows: its cause's (ns since the epoch)."""
    from dora_replay._align import split_cause

    key = split_cause(cause)
    if key is None:
        return last
    if key in root_time:  # a fed input (in the golden's numbering)
        return root_time[key]
    if m.cause in time_of:  # a rewritten output, placed before this one
        return time_of[m.cause]
    rec_seq = aligner.rep_to_rec.get(key[0], {}).get(key[1])
    if isinstance(rec_seq, int) and (key[0], rec_seq) in golden_time:  # a kept output
        return golden_time[(key[0], rec_seq)]
    return last


def update_golden(
    golden_path: str | os.PathLike[str],
    replayed: ReplayResult | str | os.PathLike[str],
    channels: list[str] | None = None,
) -> GoldenUpdate:
    """Rewrite the recorded outputs of ``golden_path`` with the replayed ones.

    ``replayed``: a :class:`ReplayResult` (its compared channels are rewritten) or the path of
    a replayed run saved with ``out=`` (its live channels are rewritten); ``channels`` narrows
    that set. Header, metadata and every other channel are copied unchanged. Raises
    ``RecordingError`` when the golden file is a split recording or the replay was stopped
    by the user before the end.
    """
    golden = Path(golden_path)
    if getattr(replayed, "stopped_by_user", False):
        raise RecordingError(
            f"{golden}: not updated: the replay was stopped by the user (q at a --step prompt), "
            "so its outputs cover only part of the recording; replay it to the end first"
        )
    new, replayed_all, seq_maps = _replayed_of(replayed)
    if channels is not None:
        new = {c: new.get(c, []) for c in channels}
    tmp = golden.with_name(f".{golden.name}.update-{os.getpid()}.tmp")
    result = GoldenUpdate(golden)
    with open_recording(golden) as rec:
        if len(rec.parts) != 1:
            raise RecordingError(f"{golden}: updating a split recording is not supported")
        damage = rec.verify()
        if damage:
            lost = sum(p.lost_messages or 0 for p in damage)
            raise RecordingError(
                f"{golden}: not updated: it is damaged ({lost} recorded message(s) cannot be "
                f"read: {damage[0].message}); updating cannot bring back the lost inputs: run "
                f"`dora record repair {golden}` or record it again"
            )
        header = rec.header
        codec = header.compression or "zstd"
        # the recording's own start (and, from its messages, end), not the time of the update:
        # --start/--end and a replay's timer ticks count from it
        writer = open_writer(
            tmp,
            header.dataflow_yaml,
            dict(header.metadata),
            compression=codec,
            start_time_ns=header.start_time_ns,
        )
        try:
            kept = [m for m in rec.iter_messages() if m.channel not in new]
            for m in sorted(
                [*kept, *_retimed(rec, new, replayed_all, seq_maps)], key=lambda m: m.log_time_ns
            ):
                writer.write_message(m)
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
