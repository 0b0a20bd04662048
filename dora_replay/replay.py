"""``replay()``: re-run a recorded dataflow with its sensors played back, compare the outputs.

The recorded source nodes are replaced by feeders (``_feeder.py``) that send what they recorded;
every other node runs live, possibly with a new implementation (``replace``). A recorder tap
captures what the live nodes send; afterwards the comparer (``compare.py``) aligns those outputs
with the recorded ones. ``speed=0`` is lockstep: the daemon releases the next recorded message
only when every live node is idle, so the outcome does not depend on machine speed or load.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import os
import shlex
import tempfile
from collections import defaultdict
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

from dora_replay._align import first_effects, parse_cause
from dora_replay._control import Controller
from dora_replay._index import REPAIRED_KEY, REPAIRED_LOST_KEY
from dora_replay._plan import (
    NodeOptionError,
    ReplayError,
    ReplayPlan,
    load_dataflow,
    make_plan,
    same_file,
)
from dora_replay._recording import Message, Recording
from dora_replay._recording import open as open_recording
from dora_replay._result import ReplayResult, TimingStats
from dora_replay._run import Run, Schedule
from dora_replay.compare import (
    DAMAGED_UNPAIRED_REASON,
    UNPAIRED_REASON,
    compare_outputs,
    dropped_note,
    read_channels,
)
from dora_replay.info import problem_text
from dora_replay.tolerances import Tolerances, as_tolerances

MIN_SPEED, MAX_SPEED = 0.1, 100.0


def _check_speed(speed: float) -> None:
    if speed != 0 and not MIN_SPEED <= speed <= MAX_SPEED:
        raise ReplayError(
            f"speed {speed:g} out of range: use {MIN_SPEED:g} to {MAX_SPEED:g}, or 0 for lockstep"
        )


def _window(
    rec: Recording, start: float | None, end: float | None
) -> tuple[int | None, int | None]:
    lo = None if start is None else rec.start_time_ns + int(start * 1e9)
    hi = None if end is None else rec.start_time_ns + int(end * 1e9)
    if lo is not None and hi is not None and hi <= lo:
        raise ReplayError(f"--end {end:g} s must be after --start {start:g} s")
    return lo, hi


def _schedule(
    rec: Recording,
    plan: ReplayPlan,
    window: tuple[int | None, int | None],
    recorded: dict[str, list[Message]],
    lockstep: bool,
    timers: bool = False,
) -> Schedule:
    """What the feeders send, and with ``lockstep``, in which order; with ``timers`` too, the
    ticks of the live nodes' timers (see :func:`_timer_ticks`), ranked among the messages in
    lockstep, else sent at their recorded times (scaled by the speed) as the messages are."""
    seq_maps: dict[str, list[int]] = {c: [] for c in plan.fed_channels}
    fed: list[tuple[str, int, int]] = []  # (channel, seq, publish time) in recorded order
    first = last = None
    if seq_maps:
        for m in rec.iter_messages(list(seq_maps), *window):
            seq_maps[m.channel].append(m.seq)
            if lockstep:
                fed.append((m.channel, m.seq, m.publish_time_ns))
            first = m.publish_time_ns if first is None else min(first, m.publish_time_ns)
            last = m.publish_time_ns if last is None else max(last, m.publish_time_ns)
    count = sum(len(v) for v in seq_maps.values())
    seq_maps.update({c: [] for c in plan.unsent})  # their outputs' effects are out of scope
    origin = window[0] if window[0] is not None else (first or rec.start_time_ns)
    total = max(0, (window[1] if window[1] is not None else (last or origin)) - origin)
    if window[1] is not None and last is not None:
        total = max(0, min(total, last - origin))
    ticks: dict[str, list[tuple[int, int]]] = {}
    notes: list[str] = []
    if timers:
        ends = [m.publish_time_ns for msgs in recorded.values() for m in msgs[-1:]]
        end_ns = window[1] if window[1] is not None else max([last or origin, *ends])
        ticks, notes = _timer_ticks(plan, recorded, (window[0], end_ns), rec.start_time_ns)
        if lockstep:
            fed += [(src, seq, t) for src, lst in ticks.items() for seq, t in lst]
    takes = _take_sequences(recorded) if lockstep else {}
    ranks = (
        _lockstep_ranks(plan, fed, recorded, {**seq_maps, **dict.fromkeys(ticks, [])}, takes)
        if lockstep
        else {}
    )
    timer_keys = (
        {src: [(seq, ranks[src][str(seq)]) for seq, _ in lst] for src, lst in ticks.items()}
        if lockstep
        else {}
    )
    for src in ticks:
        ranks.pop(src, None)  # the daemon sends the ticks; the feeders need only their own keys
    skip = _dropped_when_recorded(plan, seq_maps, recorded, takes) if lockstep else {}
    return Schedule(seq_maps, origin, total, count, ranks, timer_keys, notes, ticks, skip)


def _dropped_when_recorded(
    plan: ReplayPlan,
    seq_maps: dict[str, list[int]],
    recorded: dict[str, list[Message]],
    takes: dict[str, list[tuple[str, int]]],
) -> dict[str, dict[str, list[str]]]:
    """Lockstep: {channel: {seq: [live node, ...]}}, the fed messages a live node did not take
    when recorded (its input queue was full: ``queue_size``), between the first and the last
    it took, as its outputs' ``took`` say. Its feeder does not send them to that node, so a
    node that keeps state across inputs sees what it saw then."""
    from dora_runtime.node import TOOK_MAX

    desc = plan.descriptor
    # the oldest of a long run were not kept: a gap in what such a node took is not a drop
    cut = {
        c.partition("/")[0]
        for c, ms in recorded.items()
        for m in ms
        if len(m.took or ()) >= TOOK_MAX
    }
    skip: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for node in plan.live:
        if node in cut:
            continue
        took = takes.get(node, [])
        for inp in desc.node(node).inputs.values():
            seqs = seq_maps.get(inp.source)
            got = {s for src, s in took if src == inp.source}
            if not seqs or len(got) < 2:
                continue
            lo, hi = min(got), max(got)
            for s in seqs:
                if lo < s < hi and s not in got:
                    skip[inp.source][str(s)].append(node)
    return {c: dict(v) for c, v in skip.items()}


MAX_REPLAYED_TICKS = 1_000_000
"""More ticks than this of one timer in a replay, and that timer runs on its own clock."""


def _timer_ticks(
    plan: ReplayPlan,
    recorded: dict[str, list[Message]],
    span: tuple[int | None, int],
    fallback_epoch: int,
) -> tuple[dict[str, list[tuple[int, int]]], list[str]]:
    """The ticks of every timer a live node reads, as (seq, recorded time), so that a replay
    sends them among the recorded messages (in lockstep, in order; timed, at their recorded
    times scaled by the speed) instead of on its own clock: a node sending on a 10 Hz tick
    would otherwise see as many ticks as the replay takes tenths of a second, at any phase.

    Tick ``k`` of a timer was due at ``epoch + (k + 1) * period``; the epoch is the latest one
    every recorded output caused by a tick (cause ``dora/timer/...#k``) allows, or the
    recording's start when none was. Returns the ticks inside ``span`` and notes."""
    from dora_runtime._timer import parse_timer

    desc = plan.descriptor
    sources = sorted(
        {i.source for n in plan.live for i in desc.node(n).inputs.values() if i.is_timer}
    )
    effects: dict[str, dict[int, int]] = {src: {} for src in sources}
    for (src, seq), t in first_effects(recorded, effects).items():
        effects[src][seq] = t
    lo, hi = span
    ticks: dict[str, list[tuple[int, int]]] = {}
    notes: list[str] = []
    for src in sources:
        period = parse_timer(src)
        got = effects[src]
        epoch = min((t - (k + 1) * period for k, t in got.items()), default=fallback_epoch)
        first = 0 if lo is None else max(0, -(-(lo - epoch) // period) - 1)
        last = (hi - epoch) // period - 1
        if got:  # none after the last tick that caused an output: the recording may have
            last = min(last, max(got))  # stopped right after it (later messages: a slow node)
        if last - first + 1 > MAX_REPLAYED_TICKS:
            notes.append(
                f"timer {src} would tick {last - first + 1} times in this replay; it runs on "
                "its own clock instead, so the outputs of nodes it drives may differ"
            )
            continue
        # A tick's time orders it among what its nodes received: just before its first effect
        # when it had one (a scan sent a few microseconds after the tick was due was taken
        # first if the tick's output already had it), else when it was due; never before the
        # previous tick.
        lst: list[tuple[int, int]] = []
        for k in range(first, last + 1):
            t = got[k] - 1 if k in got else epoch + (k + 1) * period
            lst.append((k, max(t, lst[-1][1] + 1) if lst else t))
        ticks[src] = lst
    return ticks, notes


def _lockstep_ranks(
    plan: ReplayPlan,
    fed: list[tuple[str, int, int]],
    recorded: dict[str, list[Message]],
    seq_maps: dict[str, list[int]],
    takes: dict[str, list[tuple[str, int]]],
) -> dict[str, dict[str, int]]:
    """The order a lockstep replay sends the fed messages in: {channel: {seq: rank}}.

    A fed message is placed at the recorded time of its first effect (an output of a live node
    with it as cause), so inputs that the live nodes received while it was being processed come
    first, as they did when recorded; a message without effects at its publish time. Two
    constraints hold whatever those times say: each channel keeps its order, and each live node
    gets its inputs in the order they were published (it took them in that order). So the
    outputs of one replayed node may go out in another order than they were logged: a status
    sent just after a scan reaches its node before the scan's effects do, as it did.
    """
    effect = first_effects(recorded, seq_maps)
    live = set(plan.live)
    desc = plan.descriptor
    chains_of: dict[str, list[str]] = {}  # channel -> the chains its messages are ordered in
    readers_of: dict[str, set[str]] = {}
    for channel in {c for c, _, _ in fed}:
        node, _, output = channel.partition("/")
        readers_of[channel] = {n.id for n, _ in desc.subscribers(node, output) if n.id in live}
        chains_of[channel] = [
            f"channel {channel}",
            *(f"node {n}" for n in sorted(readers_of[channel])),
        ]
    chains: dict[str, list[int]] = defaultdict(list)
    for i, (c, _, _) in enumerate(fed):  # recorded order: seq order within a channel
        chains[f"channel {c}"].append(i)
    fed_order = _FedOrder(fed, {c: chains[f"channel {c}"] for c in readers_of})
    for node in sorted({n for rs in readers_of.values() for n in rs}):
        inputs = sorted(c for c, rs in readers_of.items() if node in rs)
        chains[f"node {node}"] = _taking_order(node, inputs, fed_order, recorded, takes)
    key_of = [effect.get((c, seq), publish + 1) - 1 for c, seq, publish in fed]
    waiting = [len(chains_of[c]) for c, _, _ in fed]  # chains where it is not first yet
    unblocks = _taken_through_live_nodes(fed_order, recorded, takes)  # j -> what waits for j
    for followers in unblocks.values():
        for i in followers:
            waiting[i] += 1
    heads = dict.fromkeys(chains, 0)
    ready: list[tuple[int, int, int]] = []
    ranks: dict[str, dict[str, int]] = defaultdict(dict)
    ranked = [False] * len(fed)

    def reach(chain: str) -> None:
        members = chains[chain]
        while heads[chain] < len(members) and ranked[members[heads[chain]]]:
            heads[chain] += 1  # placed already, out of turn (below)
        if heads[chain] < len(members):
            i = members[heads[chain]]
            waiting[i] -= 1
            if waiting[i] == 0:
                heapq.heappush(ready, (key_of[i], fed[i][2], i))

    for chain in chains:
        reach(chain)
    rank = 0
    while rank < len(fed):
        if not ready:
            # Two live nodes took the same inputs in different orders (they ran in parallel);
            # one order must win: the earliest message at the head of a chain goes first.
            heads_now = {chains[ch][h] for ch, h in heads.items() if h < len(chains[ch])}
            i = min((i for i in heads_now if not ranked[i]), key=lambda i: (key_of[i], i))
            waiting[i] = 0
            heapq.heappush(ready, (key_of[i], fed[i][2], i))
        _, _, i = heapq.heappop(ready)
        if ranked[i]:
            continue
        ranked[i] = True
        c, seq, _ = fed[i]
        ranks[c][str(seq)] = rank
        rank += 1
        for chain in chains_of[c]:
            if heads[chain] < len(chains[chain]) and chains[chain][heads[chain]] == i:
                heads[chain] += 1
                reach(chain)
        for j in unblocks.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0 and not ranked[j]:
                heapq.heappush(ready, (key_of[j], fed[j][2], j))
    return dict(ranks)


class _FedOrder:
    """The fed messages (``fed``, the lockstep schedule's list) looked up by (channel, seq),
    and each fed channel's messages in seq order (``members``: indices into ``fed``)."""

    def __init__(self, fed: list[tuple[str, int, int]], members: dict[str, list[int]]) -> None:
        self.fed = fed
        self.members = members
        self.seqs = {c: [fed[i][1] for i in ms] for c, ms in members.items()}
        self.index = {(c, seq): i for i, (c, seq, _) in enumerate(fed)}

    def after(self, channel: str, seq: int) -> int | None:
        """The fed message of ``channel`` that comes after its seq ``seq``, if any."""
        seqs = self.seqs[channel]
        k = bisect.bisect_right(seqs, seq)
        return self.members[channel][k] if k < len(seqs) else None


def _taken_through_live_nodes(
    order: _FedOrder,
    recorded: dict[str, list[Message]],
    takes: dict[str, list[tuple[str, int]]],
) -> dict[int, set[int]]:
    """What ``Message.taken`` says about the order of fed messages, also for inputs that reach
    a node through other live nodes: {fed message j: fed messages that must be sent after j}.

    A planner's output caused by a detection of frame ``k``, with ``taken["imu/imu"] == s``,
    means IMU sample ``s`` (the fed message at the root of its cause chain, for an input from
    a live node) went before frame ``k``, and sample ``s + 1`` after it: in lockstep each fed
    message's effects are over before the next one is sent, so that order is the order the
    planner takes them in. ``takes`` (every message each node took, in order) gives the same
    for consecutive messages."""
    index = order.index
    by_key = {(m.channel, m.seq): m for msgs in recorded.values() for m in msgs}
    live_seqs = {c: sorted(m.seq for m in msgs) for c, msgs in recorded.items()}

    def root(channel: str, seq: int) -> int | None:
        for _ in range(64):  # a cause chain back to the fed message it started from
            if (channel, seq) in index:
                return index[channel, seq]
            m = by_key.get((channel, seq))
            p = parse_cause(m.cause) if m is not None else None
            if p is None:
                return None
            channel, seq = p
        return None

    def next_root(channel: str, seq: int) -> int | None:
        if channel in order.seqs:
            return order.after(channel, seq)
        seqs = live_seqs.get(channel, [])
        k = bisect.bisect_right(seqs, seq)
        return root(channel, seqs[k]) if k < len(seqs) else None

    unblocks: dict[int, set[int]] = defaultdict(set)
    for took in takes.values():  # what each node took, in order
        known = [r for r in (root(src, seq) for src, seq in took) if r is not None]
        for a, b in itertools.pairwise(known):
            if a != b:
                unblocks[a].add(b)
    for msgs in recorded.values():
        for m in msgs:
            p = parse_cause(m.cause)
            if not m.taken or p is None:
                continue
            src = p[0]
            c = root(*p)
            if c is None:
                continue
            for other, seq in m.taken.items():
                if other == src:
                    continue
                x, y = root(other, seq), next_root(other, seq)
                if x is not None and x != c:
                    unblocks[x].add(c)
                if y is not None and y != c:
                    unblocks[c].add(y)
    return unblocks


def _take_sequences(recorded: dict[str, list[Message]]) -> dict[str, list[tuple[str, int]]]:
    """{node: every message it took, in order}, as far as its recorded outputs say (``took``:
    what it took since its previous recorded output), up to its last recorded output."""
    outs: dict[str, list[Message]] = defaultdict(list)
    for channel, msgs in recorded.items():
        outs[channel.partition("/")[0]] += msgs
    takes = {}
    for node, msgs in outs.items():
        msgs.sort(key=lambda m: m.publish_time_ns)
        takes[node] = [t for m in msgs if m.took for t in m.took]
    return takes


def _taking_order(
    node: str,
    inputs: list[str],
    order: _FedOrder,
    recorded: dict[str, list[Message]],
    takes: dict[str, list[tuple[str, int]]],
) -> list[int]:
    """The order ``node`` took its fed messages in (indices into ``fed``), each input's in seq
    order: by time (publish time; a tick's, see ``_timer_ticks``), corrected by what its recorded
    outputs say it had taken (``Message.taken``): an output caused by message ``c`` with
    ``taken[src] == s`` means the node took ``src#s`` before ``c`` and ``src``'s next message
    after it, however close their times were."""
    fed, index = order.fed, order.index
    before: dict[int, set[int]] = defaultdict(set)  # i -> what must be taken before it
    for channel, msgs in recorded.items():
        if channel.partition("/")[0] != node:
            continue
        for m in msgs:
            p = parse_cause(m.cause)
            if p is None or not m.taken or p not in index:
                continue
            c = index[p]
            for other, s in m.taken.items():
                if other == p[0] or other not in inputs:
                    continue
                if (other, s) in index:
                    before[c].add(index[other, s])
                nxt = order.after(other, s)
                if nxt is not None:
                    before[nxt].add(c)
    # ``Message.took``: every message it took, in order, up to its last recorded output
    took = [index[t] for t in takes.get(node, []) if t[0] in inputs and t in index]
    for a, b in itertools.pairwise(took):
        before[b].add(a)
    pos = dict.fromkeys(inputs, 0)
    taken: set[int] = set()
    result: list[int] = []
    while True:
        heads = [order.members[c][k] for c, k in pos.items() if k < len(order.members[c])]
        if not heads:
            return result
        free = [i for i in heads if before[i] <= taken] or heads  # conflicting: by time
        i = min(free, key=lambda i: (fed[i][2], i))
        result.append(i)
        taken.add(i)
        pos[fed[i][0]] += 1


def _with_downstream(desc: Any, dropping: set[str], live: list[str]) -> dict[str, str]:
    """The note for each live node that dropped inputs, and for each live node fed (directly or
    through others) by one: a message dropped upstream is an output missing downstream too."""
    reached = desc.downstream(sorted(dropping), within=set(live))
    return {n: dropped_note(n, None if origin == n else origin) for n, origin in reached.items()}


def _command(path: Any, **opts: Any) -> str:
    parts = ["dora", "replay", str(path)]
    for key, value in opts.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False or value == {} or value == []:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, dict):
            parts += [x for k, v in value.items() for x in (flag, f"{k}={v}")]
        elif key == "tolerance":
            parts += [x for v in value for x in (flag, v)]
        elif isinstance(value, list):
            parts += [flag, ",".join(value)]
        else:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(parts)


def replay(
    path: str | os.PathLike[str],
    *,
    dataflow: str | os.PathLike[str] | None = None,
    speed: float = 1.0,
    replace: dict[str, str] | None = None,
    replay_nodes: list[str] | None = None,
    live_nodes: list[str] | None = None,
    start: float | None = None,
    end: float | None = None,
    channels: list[str] | None = None,
    tolerances: Tolerances | dict[str, Any] | str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    loop: bool = False,
    step: bool = False,
    progress: bool | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    timeout_s: float | None = None,
    printer: Any = None,
    grace_s: float = 5.0,
) -> ReplayResult:
    """Replay the recording at ``path`` and compare the live nodes' outputs with the recorded ones.

    ``speed``: recorded timing scaled by this factor (0.1 to 100), 0 for lockstep; ``replace``:
    node id -> new implementation (runs live); ``replay_nodes``/``live_nodes`` override which
    nodes are replayed; ``start``/``end``: seconds from the start of the recording;
    ``channels``: restrict what is sent (replayed outputs) and compared (live outputs);
    ``tolerances``: :class:`Tolerances`, a dict shaped like the TOML file, or a TOML path;
    ``out``: also save the replayed run there; ``loop``: replay the window over and over (until
    ``timeout_s`` or Ctrl-C; later passes are not compared); ``step``: ask on standard input
    before each message (implies lockstep); ``progress``: None = a rich panel on a terminal,
    True = also plain lines elsewhere, False = nothing; ``timeout_s``: stop after this long
    (s, wall clock); ``printer(source, line)``: receives node output lines (default: only the
    log files in ``log_dir``). Raises :class:`ReplayError` / ``RecordingError`` on bad input.

    A damaged recording replays what is readable; what was lost (as far as the replay read:
    the fed channels in the window and the compared ones) is in ``result.problems``.
    """
    _check_speed(speed)
    tol = as_tolerances(tolerances)
    command = _command(
        path,
        dataflow=dataflow,
        speed=speed,
        replace=replace,
        replay_nodes=replay_nodes,
        live_nodes=live_nodes,
        tolerance=tol.to_flags(),
        start=start,
        end=end,
        channels=channels,
        loop=loop,
    )
    lockstep = speed == 0 or step
    rec = open_recording(path)
    if out is not None and any(same_file(Path(out), p) for p in rec.paths):
        rec.close()
        raise ReplayError(f"--out {out} is the recording being replayed: save to another file")
    try:
        desc, dataflow_notes = load_dataflow(rec, dataflow)
        plan = make_plan(
            rec,
            desc,
            replay_nodes=replay_nodes,
            live_nodes=live_nodes,
            replace_paths=replace,
            channels=channels,
        )
        window = _window(rec, start, end)
        live_recorded = [
            f"{n}/{o}"
            for n in plan.live
            for o in desc.node(n).outputs
            if f"{n}/{o}" in rec.channels
        ] + list(plan.absent)
        recorded_all = read_channels(rec, live_recorded)
        sched = _schedule(rec, plan, window, recorded_all, lockstep, timers=not loop)
        said = [problem_text(rec, p) for p in rec.problems]
        warnings = list(rec.warnings) + list(plan.warnings) + said + sched.notes
        with tempfile.TemporaryDirectory(prefix="dora-replay-") as tmp:
            # a replay killed with -9 leaves this folder: the next dora run or replay removes
            # it, as it removes a killed daemon's run folder (``clean_stale_runs``)
            Path(tmp, "daemon.pid").write_text(str(os.getpid()))
            run = Run(
                rec,
                plan,
                sched,
                window,
                Path(tmp),
                speed=speed,
                lockstep=lockstep,
                loop=loop,
                step=step,
                out=out,
                progress=progress,
                printer=printer,
            )
            outcome = run.execute(log_dir, timeout_s, grace_s)
        warnings += [t for p in rec.problems if (t := problem_text(rec, p)) not in warnings]
        # as `dora info` words them: times in seconds from the start, not epoch ns
        problems = [dc_replace(p, message=problem_text(rec, p)) for p in rec.problems]
        damaged = bool(problems)
    finally:
        rec.close()
    replayed, failures, drops, log_path, timed_out = outcome
    dropping = _with_downstream(
        desc, {k.split("/", 1)[0] for k in drops if k.split("/", 1)[0] in plan.live}, plan.live
    )
    stopped = run.controller.stopped_by_user
    cut = not loop and run.controller.cut_short  # stopped before every message was sent
    seq_maps, compared_window = sched.seq_maps, window
    if stopped or cut:
        seq_maps, compared_window = _up_to_stop(sched, window, run.controller)
    comparison = compare_outputs(
        recorded_all,  # not only the compared channels: causes are traced through the others
        replayed,
        tolerances=tol,
        channels=plan.compared,
        seq_maps=seq_maps,
        window=compared_window,
        dropping_nodes=dropping,
        skip_reason=_skip_reason(window, plan, damaged, stopped, cut),
        unpaired_reason=DAMAGED_UNPAIRED_REASON if damaged else UNPAIRED_REASON,
        cut_ns=sched.origin_ns + run.controller.recorded_time_ns if stopped or cut else None,
        left_out=[c for c in rec.channels if c not in plan.compared] if channels else (),
    )
    for channel, reason in plan.absent.items():
        comparison.channels[channel].notes.append(reason)
    if plan.unsent:
        comparison.notes.append(
            f"not sent (left out by --channels): {', '.join(plan.unsent)}; outputs computed "
            "from them differ or are skipped"
        )
    cut_note = []
    if cut and not stopped and not timed_out:  # Ctrl-C, nobody reading, or a feeder ended
        cut_note.append(
            f"the replay stopped after {run.controller.messages_sent} of {sched.count} recorded "
            "message(s) were sent: only their outputs are compared"
        )
    lost_inputs = sorted({p.channel for p in problems if p.channel in plan.fed_channels})
    if lost_inputs and not comparison.ok:
        comparison.notes.append(
            f"the damage took recorded input(s) of the live nodes ({', '.join(lost_inputs)}): "
            "outputs computed from them (state, filters, later messages) can differ without "
            "any change to the nodes; compare a replay of an undamaged recording to be sure"
        )
    return ReplayResult(
        comparison=comparison,
        recorded={c: recorded_all[c] for c in plan.compared},
        replayed=replayed,
        failures=failures,
        warnings=warnings,
        replayed_nodes=plan.replayed,
        live_nodes=plan.live,
        messages_sent=run.controller.messages_sent,
        timing=TimingStats.of(run.controller.lateness_ns),
        log_dir=log_path,
        out=Path(out) if out else None,
        command=command,
        drops=drops,
        timed_out=timed_out,
        seq_maps=seq_maps,
        notes=dataflow_notes + _repaired_note(rec.metadata) + cut_note,
        stopped_by_user=stopped,
        problems=problems,
        recording=Path(path),
        replaced=dict(replace or {}),
    )


def _up_to_stop(
    sched: Schedule, window: tuple[int | None, int | None], controller: Controller
) -> tuple[dict[str, list[int]], tuple[int | None, int | None]]:
    """What a replay stopped early (``q``, a timeout, Ctrl-C) covered: per fed channel the seqs
    actually sent, and the window cut at the recorded time of the last message sent (for
    outputs without a usable cause), so only the outputs of what was sent are compared."""
    sent = controller.sent_per_channel
    seq_maps = {c: seqs[: sent.get(c, 0)] for c, seqs in sched.seq_maps.items()}
    end = sched.origin_ns + controller.recorded_time_ns + 1
    return seq_maps, (window[0], end if window[1] is None else min(end, window[1]))


def _skip_reason(
    window: tuple[int | None, int | None],
    plan: ReplayPlan,
    damaged: bool,
    stopped: bool,
    cut: bool = False,
) -> str:
    """Why recorded outputs may be left out of the comparison: their inputs were not fed."""
    why = [
        text
        for text, applies in (
            ("outside --start/--end", window != (None, None)),
            ("not sent, see --channels", bool(plan.unsent)),
            ("lost from the damaged recording", damaged),
            ("stopped by user", stopped),
            ("the replay stopped before they were sent or handled", cut and not stopped),
        )
        if applies
    ]
    head = "their inputs were not replayed" + (", or not handled yet" if stopped or cut else "")
    return head + (f" ({'; '.join(why)})" if why else "")


def _repaired_note(metadata: dict[str, str]) -> list[str]:
    """A note when the recording was repaired after losing messages (it now covers less);
    none otherwise."""
    lost = metadata.get(REPAIRED_LOST_KEY, "0")
    if lost == "0":
        return []
    return [
        f"the recording was repaired ({metadata.get(REPAIRED_KEY, '')}): it replays and checks "
        "only what survived; record it again for the full run"
    ]


__all__ = ["NodeOptionError", "ReplayError", "replay"]
