"""Causal alignment of replayed outputs with recorded ones (see ``compare.py``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container
from typing import Any

from dora_replay._recording import Message

SKIP = "\0skip"  # the message is outside what was replayed
UNRECORDED = "\0unrecorded"  # caused by a replayed output that has no recorded counterpart


def _is_tick(cause: str | None) -> bool:
    """A cause that is a timer tick (``dora/timer/hz/10#7``)."""
    return cause is not None and cause.startswith("dora/timer/")


def parse_cause(cause: str | None) -> tuple[str, int] | None:
    """``(source, seq)`` of a cause (``node/output#seq`` or a timer tick), else ``None``."""
    if not cause:
        return None
    source, sep, seq = cause.rpartition("#")
    if not sep or not seq.isdigit():
        return None
    return source, int(seq)


def split_cause(cause: str | None) -> tuple[str, int] | None:
    """:func:`parse_cause` of a cause that is a node's output (not a timer tick)."""
    if not cause or cause.startswith("dora/"):
        return None
    return parse_cause(cause)


def first_effects(
    recorded: dict[str, list[Message]], sources: Container[str]
) -> dict[tuple[str, int], int]:
    """{(source, seq): the earliest publish time of a recorded output it caused}, for causes
    whose source is in ``sources``: when the message's effects began."""
    effect: dict[tuple[str, int], int] = {}
    for msgs in recorded.values():
        for m in msgs:
            key = parse_cause(m.cause)
            if key is not None and key[0] in sources:
                effect[key] = min(effect.get(key, m.publish_time_ns), m.publish_time_ns)
    return effect


def cause_order(channels: list[str], recorded: dict[str, list[Message]]) -> list[str]:
    """Channels sorted so that a channel comes after the channels its causes name."""
    deps = {
        c: {p[0] for m in recorded.get(c, ()) if (p := split_cause(m.cause)) and p[0] != c}
        for c in channels
    }
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(c: str) -> None:
        if state.get(c):
            return  # done, or on the stack (a cycle): leave it where it is
        state[c] = 1
        for d in sorted(deps.get(c, ())):
            if d in deps:
                visit(d)
        state[c] = 2
        order.append(c)

    for c in channels:
        visit(c)
    return order


class Aligner:
    def __init__(
        self,
        recorded: dict[str, list[Message]],
        replayed: dict[str, list[Message]],
        seq_maps: dict[str, list[int]],
        window: tuple[int | None, int | None],
    ) -> None:
        self.recorded = recorded
        self.replayed = replayed
        self.seq_maps = seq_maps
        self.fed_sets = {c: set(v) for c, v in seq_maps.items()}
        self.window = window
        self.rep_to_rec: dict[str, dict[int, int | None]] = {}
        self.rec_in_scope: dict[str, set[int]] = {}
        self.handled: dict[str, set[str]] = defaultdict(set)  # node -> recorded causes
        for channel, msgs in recorded.items():
            node = channel.split("/", 1)[0]
            self.handled[node].update(m.cause for m in msgs if m.cause)

    def _outside(self, m: Message) -> bool:
        """Logged outside the replayed window (for outputs whose cause cannot say)."""
        lo, hi = self.window
        return (lo is not None and m.log_time_ns < lo) or (hi is not None and m.log_time_ns >= hi)

    def rec_key(self, m: Message) -> str | None:
        if _is_tick(m.cause):  # a replay sends the recorded ticks, with their seqs
            return SKIP if self._outside(m) else m.cause
        p = split_cause(m.cause)
        if p is None or (p[0] not in self.fed_sets and p[0] not in self.rec_in_scope):
            return SKIP if self._outside(m) else None
        src, seq = p
        scope = self.fed_sets.get(src)
        if scope is None:
            scope = self.rec_in_scope[src]
        return m.cause if seq in scope else SKIP

    def rep_key(self, m: Message) -> str | None:
        if _is_tick(m.cause):
            return m.cause
        p = split_cause(m.cause)
        if p is None:
            return None
        src, k = p
        if src in self.seq_maps:
            fed = self.seq_maps[src]
            return f"{src}#{fed[k]}" if k < len(fed) else SKIP  # later passes of --loop
        if src in self.rep_to_rec:
            rec = self.rep_to_rec[src].get(k, UNRECORDED)
            if rec is None or rec == UNRECORDED:
                return UNRECORDED
            if rec == SKIP:
                return SKIP
            return f"{src}#{rec}"
        return None

    def align(self, channel: str) -> list[tuple[int | None, int | None, str | None]]:
        """Pairs (recorded index, replayed index, cause); None on one side = unpaired."""
        rec = self.recorded.get(channel, [])
        rep = self.replayed.get(channel, [])
        rec_groups: dict[str | None, list[int]] = defaultdict(list)
        rep_groups: dict[str | None, list[int]] = defaultdict(list)
        scope: set[int] = set()
        for i, m in enumerate(rec):
            k = self.rec_key(m)
            if k != SKIP:
                rec_groups[k].append(i)
                scope.add(m.seq)
        self.rec_in_scope[channel] = scope
        mapping: dict[int, Any] = {}
        for j, m in enumerate(rep):
            k = self.rep_key(m)
            if k == SKIP:
                mapping[m.seq] = SKIP
                continue
            rep_groups[k].append(j)
        pairs: list[tuple[int | None, int | None, str | None]] = []
        keys = [k for k in dict.fromkeys([*rec_groups, *rep_groups]) if k is not None]
        for k in [*keys, None]:
            a, b = rec_groups.get(k, []), rep_groups.get(k, [])
            for n in range(max(len(a), len(b))):
                i = a[n] if n < len(a) else None
                j = b[n] if n < len(b) else None
                pairs.append((i, j, None if k in (None, UNRECORDED) else k))
                if j is not None:
                    mapping[rep[j].seq] = rec[i].seq if i is not None else None
        self.rep_to_rec[channel] = mapping
        pairs.sort(key=lambda p: (p[0] if p[0] is not None else 1 << 62, p[1] or 0))
        return pairs
