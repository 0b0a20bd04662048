"""The comparer: aligns replayed outputs with recorded ones and reports every difference.

Alignment is causal. Every output carries ``cause`` = ``node/output#seq`` of the input the node
was handling when it sent it. A replayed cause is translated into the recording's numbering: for
a channel the feeders sent, through the feeders' sequence map (the k-th message a feeder sent is
the recording's message with seq ``map[k]``); for a compared live channel, through the
alignment of that channel, computed first (channels are visited in cause order). Messages with
the same translated cause are paired in order; messages without a usable cause (timers, none,
unrecorded channels) are then paired in order.

A recorded output whose input was handled in the recording but produced nothing in the replay
is ``missing``; a replayed output is ``extra`` when the recording has no counterpart although
the recorded node handled the same input. Replayed outputs for inputs the recorded node never
handled (it dropped them from a full queue, or its outputs were lost from a damaged recording)
are counted as ``unpaired`` and do not fail the comparison.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow.types as pt

from dora_replay._align import UNRECORDED, Aligner, cause_order
from dora_replay._recording import Message, Recording
from dora_replay._values import (
    Errors,
    ValueDiff,
    compare_arrays,
    compare_metadata,
    short,
    unknown_fields,
)
from dora_replay.tolerances import Tolerance, Tolerances, as_tolerances

_MAX_SHOWN = 5
SKIP_REASON = "their inputs were not replayed"
UNPAIRED_REASON = "for inputs the recording did not handle"
#: ``unpaired_reason`` when the recording lost messages: the recorded outputs the replayed ones
#: would pair with, or the recorded inputs that link them, were not readable
DAMAGED_UNPAIRED_REASON = (
    "not compared: their recorded outputs or inputs were lost (damaged recording)"
)


@dataclass
class Difference:
    """One difference. ``index``: position of the message in the recorded channel (or in the
    replayed one for ``extra``); ``kind``: ``value``, ``metadata``, ``type``, ``length``,
    ``missing`` or ``extra``; ``recorded``/``replayed``: short reprs."""

    channel: str
    index: int
    kind: str
    recorded: str | None
    replayed: str | None
    cause: str | None = None
    recorded_seq: int | None = None
    replayed_seq: int | None = None
    changes: list[str] = field(default_factory=list)
    max_abs: float | None = None
    max_rel: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def describe(self) -> str:
        head = f"{self.channel} message #{self.index}"
        if self.cause:
            head += f" (cause {self.cause})"
        if self.kind == "missing":
            return f"{head}: missing in the replay; recorded {self.recorded}"
        if self.kind == "extra":
            return f"{head}: extra in the replay, no recorded counterpart; replayed {self.replayed}"
        lines = [f"{head}: {self.kind} differs"]
        lines.append(f"    recorded: {self.recorded}")
        lines.append(f"    replayed: {self.replayed}")
        lines += [f"    {c}" for c in self.changes]
        if self.max_abs is not None and self.max_abs > 0:
            lines.append(
                f"    in this message: max abs error {self.max_abs:.6g}, "
                f"max rel error {self.max_rel:.6g}"
            )
        return "\n".join(lines)


@dataclass
class ChannelComparison:
    """Comparison of one ``node/output`` channel."""

    channel: str
    tolerance: Tolerance
    recorded_count: int = 0
    replayed_count: int = 0
    matched: int = 0
    unpaired: int = 0
    not_reproduced: int = 0
    """Recorded outputs with no replayed counterpart while inputs were dropped on their way
    (queue full, ``--speed`` above 0): not counted as missing."""
    skipped: int = 0
    skip_reason: str = SKIP_REASON
    unpaired_reason: str = UNPAIRED_REASON
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_abs: float = 0.0
    max_rel: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences

    def count(self, kind: str) -> int:
        return sum(d.kind == kind for d in self.differences)

    def summary(self) -> str:
        """One line: matched (or differing, missing, extra), skipped, unpaired and not
        reproduced counts; matched, differing, missing, not reproduced and skipped add up to
        ``recorded_count``."""
        skipped = f", {self.skipped} skipped: {self.skip_reason}" if self.skipped else ""
        if self.ok:
            s = f"{self.channel}: ok ({self.matched} message(s) match"
            if self.max_abs:
                s += f", max abs error {self.max_abs:.3g}"
            s += f"{skipped})"
        else:
            changed = len(self.differences) - self.count("missing") - self.count("extra")
            largest = (
                f", largest error abs {self.max_abs:.3g} rel {self.max_rel:.3g}"
                if self.max_abs
                else ""
            )  # what a tolerance would have to allow
            s = (
                f"{self.channel}: {changed} of {self.recorded_count} message(s) differ, "
                f"{self.count('missing')} missing, {self.count('extra')} extra{largest}{skipped}"
            )
        if self.unpaired:
            s += f"; {self.unpaired} replayed output(s) {self.unpaired_reason}"
        if self.not_reproduced:
            s += (
                f"; {self.not_reproduced} recorded output(s) not reproduced: inputs were "
                "dropped on the way (queue full)"
            )
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "ok": self.ok,
            "tolerance": self.tolerance.to_dict(),
            "recorded_count": self.recorded_count,
            "replayed_count": self.replayed_count,
            "matched": self.matched,
            "unpaired": self.unpaired,
            "not_reproduced": self.not_reproduced,
            "skipped": self.skipped,
            "skip_reason": self.skip_reason,
            "unpaired_reason": self.unpaired_reason,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "notes": list(self.notes),
            "differences": [d.to_dict() for d in self.differences],
        }


@dataclass
class Comparison:
    """Result of comparing replayed outputs with recorded ones, channel by channel."""

    channels: dict[str, ChannelComparison] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.channels.values())

    @property
    def differences(self) -> list[Difference]:
        return [d for c in self.channels.values() for d in c.differences]

    def report(self, max_per_channel: int = _MAX_SHOWN, damage: str = "") -> str:
        """A readable report: one line per channel, then the first differences of each.
        ``damage``: what the recording lost (``ReplayResult.damage_summary()``); the verdict
        then says that only the readable part was compared."""
        bad = [c for c in self.channels.values() if not c.ok]
        if not self.channels:
            head = "no channel was compared"
        elif bad:
            head = f"{len(bad)} of {len(self.channels)} channel(s) differ"
        elif not any(c.matched for c in self.channels.values()):
            head = f"no output message was compared ({len(self.channels)} channel(s))"
        else:
            head = f"all {len(self.channels)} channel(s) match"
        if damage:
            head += f" in the readable part; the recording is damaged: {damage}"
        lines = [head]
        lines += [f"  {c.summary()}" for c in self.channels.values()]
        for c in bad:
            lines.append("")
            for d in c.differences[:max_per_channel]:
                lines.append("  " + d.describe().replace("\n", "\n  "))
            if len(c.differences) > max_per_channel:
                lines.append(f"  ... {len(c.differences) - max_per_channel} more in {c.channel}")
        for c in self.channels.values():
            lines += [f"  note: {c.channel}: {n}" for n in c.notes]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "channels": {k: v.to_dict() for k, v in self.channels.items()},
            "notes": list(self.notes),
        }


def compare_outputs(
    recorded: dict[str, list[Message]],
    replayed: dict[str, list[Message]],
    *,
    tolerances: Tolerances | None = None,
    channels: Iterable[str] | None = None,
    seq_maps: dict[str, list[int]] | None = None,
    window: tuple[int | None, int | None] = (None, None),
    dropping_nodes: Iterable[str] | dict[str, str] = (),
    skip_reason: str = SKIP_REASON,
    unpaired_reason: str = UNPAIRED_REASON,
    cut_ns: int | None = None,
    left_out: Iterable[str] = (),
) -> Comparison:
    """Compare replayed outputs with recorded ones (see the module docstring).

    ``recorded``/``replayed``: messages per channel in send order; ``channels``: the channels to
    compare (default: every recorded channel that is not a fed one); ``seq_maps``: per channel
    the feeders sent, the recorded seq of each message they sent, in order; ``window``: recorded
    log times (ns since the epoch) that were replayed, for outputs without a usable cause;
    ``dropping_nodes``: nodes whose inputs dropped messages during the replay, or that are
    downstream of one (their missing outputs are counted as ``not_reproduced``, not as
    missing); a dict gives each one's note, else a note says the node dropped inputs;
    ``skip_reason``: why recorded outputs whose inputs were not replayed are left out
    (``ChannelComparison.skipped``), as the report words it;
    ``unpaired_reason``: what the report says of replayed outputs with no recorded counterpart
    that do not count as extra (``ChannelComparison.unpaired``), e.g.
    :data:`DAMAGED_UNPAIRED_REASON` when the recording lost messages; ``cut_ns``: a replay
    stopped early had sent the recorded messages up to this publish time (ns since the epoch):
    a missing output recorded later than that was still on its way (a node was handling its
    input) and counts as skipped; ``left_out``: recorded channels deliberately not compared
    (``--channels``), which the notes name as such rather than as absent from the recording.
    """
    tol = tolerances or Tolerances()
    seq_maps = seq_maps or {}
    wanted = list(channels) if channels is not None else [c for c in recorded if c not in seq_maps]
    aligner = Aligner(recorded, replayed, seq_maps, window)
    dropping = (
        dict(dropping_nodes)
        if isinstance(dropping_nodes, dict)
        else {n: dropped_note(n) for n in dropping_nodes}
    )
    result = Comparison()
    for channel in cause_order(sorted({*wanted, *recorded} - set(seq_maps)), recorded):
        if channel not in wanted:  # not compared, but causes are traced through it
            aligner.align(channel)
            continue
        result.channels[channel] = _compare_channel(channel, aligner, tol, dropping, cut_ns)
        result.channels[channel].skip_reason = skip_reason
        result.channels[channel].unpaired_reason = unpaired_reason
    result.channels = {c: result.channels[c] for c in wanted if c in result.channels}
    unselected = set(left_out)
    new = sorted(set(replayed) - set(recorded) - set(seq_maps) - unselected)
    if new:
        result.notes.append(f"not in the recording, not compared: {', '.join(new)}")
    skipped = sorted(set(replayed) & unselected)
    if skipped:
        result.notes.append(f"not compared (left out by --channels): {', '.join(skipped)}")
    result.notes += _unused_tolerances(tol, result.channels, recorded)
    return result


def _unused_tolerances(
    tol: Tolerances, compared: dict[str, ChannelComparison], recorded: dict[str, list[Message]]
) -> list[str]:
    """Notes on tolerances that cannot apply, most likely typos: a channel pattern that matches
    no compared channel, a struct field a channel's values do not have."""
    notes = []
    for pattern in tol.channels:
        if not any(c == pattern or fnmatch.fnmatchcase(c, pattern) for c in compared):
            notes.append(
                f"tolerance for `{pattern}` matches no compared channel "
                f"(compared: {', '.join(compared) or 'none'})"
            )
    for channel in compared:
        msgs = recorded.get(channel)
        fields = tol.for_channel(channel).ignore_fields
        if not (msgs and fields):
            continue
        kind = msgs[0].data.type
        if not pt.is_struct(kind):
            notes.append(f"ignore_fields of {channel}: its values are {kind}, not structs")
        elif bad := unknown_fields(kind, fields):
            names = ", ".join(f"`{n}`" for n in bad)
            notes.append(f"ignore_fields of {channel}: {names} not in its values' fields")
    return notes


def dropped_note(node: str, upstream: str | None = None) -> str:
    """The note on the channels of ``node`` when inputs were dropped during a replay: by
    ``node`` itself, or (``upstream``) by a node it depends on."""
    who = f"node `{node}`" if upstream is None else f"node `{upstream}`, upstream of `{node}`,"
    return (
        f"{who} dropped inputs during the replay (queue full); recorded outputs they would "
        "have led to are not counted as missing. Replay with --speed 0 for an exact comparison."
    )


def _compare_channel(
    channel: str,
    aligner: Aligner,
    tols: Tolerances,
    dropping: dict[str, str],
    cut_ns: int | None = None,
) -> ChannelComparison:
    tol = tols.for_channel(channel)
    rec = aligner.recorded.get(channel, [])
    rep = aligner.replayed.get(channel, [])
    cc = ChannelComparison(channel, tol, recorded_count=len(rec), replayed_count=len(rep))
    node = channel.split("/", 1)[0]
    errors = Errors()
    in_flight = 0
    for i, j, _cause in aligner.align(channel):
        if i is not None and j is not None:
            d = _compare_pair(channel, i, rec[i], rep[j], tol, errors)
            if d is None:
                cc.matched += 1
            else:
                cc.differences.append(d)
        elif i is not None:
            if node in dropping:
                cc.not_reproduced += 1
                continue
            if cut_ns is not None and rec[i].publish_time_ns > cut_ns:
                in_flight += 1
                continue
            cc.differences.append(
                Difference(
                    channel,
                    i,
                    "missing",
                    short(rec[i].data),
                    None,
                    rec[i].cause,
                    recorded_seq=rec[i].seq,
                )
            )
        else:
            assert j is not None
            m = rep[j]
            key = aligner.rep_key(m)
            if key == UNRECORDED or (key is not None and key not in aligner.handled[node]):
                cc.unpaired += 1
                continue
            cc.differences.append(
                Difference(
                    channel, j, "extra", None, short(m.data), key or m.cause, replayed_seq=m.seq
                )
            )
    cc.skipped = len(rec) - len(aligner.rec_in_scope.get(channel, ())) + in_flight
    cc.max_abs, cc.max_rel = errors.max_abs, errors.max_rel
    if node in dropping:
        cc.notes.append(dropping[node])
    if not rec and rep:
        cc.notes.append("the recording has no message on this channel")
    return cc


def _compare_pair(
    channel: str, index: int, a: Message, b: Message, tol: Tolerance, errors: Errors
) -> Difference | None:
    vd: ValueDiff | None = compare_arrays(a.data, b.data, tol, errors)
    if vd is None:
        vd = compare_metadata(a.metadata, b.metadata, tol, errors)
        if vd is None:
            return None
        rec_s, rep_s = short(a.metadata), short(b.metadata)
    else:
        rec_s, rep_s = short(a.data), short(b.data)
    return Difference(
        channel,
        index,
        vd.kind,
        rec_s,
        rep_s,
        a.cause,
        a.seq,
        b.seq,
        vd.changes,
        vd.max_abs if vd.kind != "metadata" else None,
        vd.max_rel if vd.kind != "metadata" else None,
    )


# -- recordings ------------------------------------------------------------------------------


def read_channels(
    rec: Recording, channels: Iterable[str] | None = None
) -> dict[str, list[Message]]:
    """Every message of ``channels`` (default all) of an open recording, per channel."""
    names = [c for c in (channels if channels is not None else rec.channels) if c in rec.channels]
    out: dict[str, list[Message]] = {c: [] for c in names}
    if names:
        for m in rec.iter_messages(names):
            out[m.channel].append(m)
    return out


def seq_maps_of(rec: Recording) -> dict[str, list[int]]:
    """The feeders' sequence maps a replayed run stored in its metadata (``replay.seq_map``)."""
    import json

    text = rec.metadata.get("replay.seq_map")
    if not text:
        return {}
    runs = json.loads(text)
    return {c: [s for first, n in rs for s in range(first, first + n)] for c, rs in runs.items()}


def compare_recordings(
    expected: str | os.PathLike[str] | Recording,
    actual: str | os.PathLike[str] | Recording,
    tolerances: Tolerances | dict[str, Any] | str | os.PathLike[str] | None = None,
    channels: Iterable[str] | None = None,
) -> Comparison:
    """Compare two recordings, e.g. a golden one and ``dora replay --out`` of it.

    Compared by default: every channel of ``expected`` that the replayed run did not feed (a
    replayed run names its fed channels in its metadata), or that both have when ``actual`` is
    not a replayed run and no ``channels`` are given... in that case every common channel.
    """
    from dora_replay._recording import open as open_recording

    exp = expected if isinstance(expected, Recording) else open_recording(expected)
    act = actual if isinstance(actual, Recording) else open_recording(actual)
    try:
        seq_maps = seq_maps_of(act)
        names = (
            list(channels)
            if channels is not None
            else [c for c in exp.channels if c not in seq_maps and (seq_maps or c in act.channels)]
        )
        return compare_outputs(
            read_channels(exp, names),
            read_channels(act, names),
            tolerances=as_tolerances(tolerances),
            channels=names,
            seq_maps=seq_maps,
        )
    finally:
        if not isinstance(expected, Recording):
            exp.close()
        if not isinstance(actual, Recording):
            act.close()


__all__ = [
    "ChannelComparison",
    "Comparison",
    "Difference",
    "compare_outputs",
    "compare_recordings",
    "read_channels",
]
