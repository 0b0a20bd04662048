"""Where the time of one message goes: dora-py's one-way latency split into stages.

    python bench/latency_stages.py                  # 4 KiB, 200 messages, 10 ms apart
    python bench/latency_stages.py --size 1048576   # a shared-memory payload

Runs a two-node dataflow on our runtime whose nodes (``_latency_nodes/stages.py``) stamp
``monotonic_ns`` at each boundary of a message's path, and prints p50/p90/p99 per stage:

| stage | from -> to |
|---|---|
| pa.array (bench script) | stamp -> ``pa.array(payload)`` done (in ``bench/latency.py`` too, both runtimes) |
| send_output until socket write | -> the sender's socket write starts (output lookup, lock, inspect the array and copy it to shared memory from 16 KiB, msgpack frame) |
| socket write until poll returns | the ``sendall`` syscall wakes the receiver -> its ``poll`` returns |
| poll -> event decode | reading the socket and taking the frame (queued only if more came) |
| decode to event | msgpack, Arrow array, metadata, event dict |
| back to the node's code | -> ``node.next()`` has returned |
| total one-way | stamp -> ``node.next()`` has returned (what ``bench/latency.py`` measures) |

Each row's percentiles are taken over that stage alone, so the stage p50s add up to about the
total p50, not exactly.

Messages the receiver did not wait for in ``poll`` (it was busy: they were already queued, or
its pump thread read them) are left out of the split and counted. It also counts how many messages the receiver handled on the CPU the sender ran on (the
kernel places a receiver woken by a Unix-socket write beside its waker; waking the other, idle
CPU costs more on a VM) and the garbage collections that ran inside a message's window. The
figures vary with the host as much as ``bench/latency.py``'s do; the split is what this shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from latency import NODES_DIR, RunError, Settings, Side, at_least, run_dataflow  # noqa: E402

STAGES = (
    "pa.array (bench script)",
    "send_output until socket write",
    "socket write until poll returns",
    "poll -> event decode",
    "decode to event",
    "back to the node's code",
    "total one-way",
)


MAX_SIZE = 1 << 30
"""Largest ``--size``: the sender holds the payload and the runtime a copy in shared memory."""


def run(side: Side, size: int, count: int, interval_s: float) -> dict:
    env = {"BENCH_SIZE": str(size), "BENCH_COUNT": str(count), "BENCH_INTERVAL_S": str(interval_s)}
    script = str(NODES_DIR / "stages.py")
    nodes = [
        {
            "id": "sender",
            "path": script,
            "outputs": ["data"],
            "env": {**env, "BENCH_ROLE": "sender"},
        },
        {
            "id": "receiver",
            "path": script,
            "inputs": {"data": "sender/data"},
            "env": {"BENCH_ROLE": "receiver"},
        },
    ]
    result, _ = run_dataflow(side, nodes, Settings(timeout_s=60 + count * interval_s * 2))
    return result


def split(result: dict, warmup: int) -> tuple[np.ndarray, dict[str, float]]:
    """Stage durations (us, one column per stage) and the placement / GC counts."""
    snd = {r[0]: r for r in result["sender_rows"]}
    pairs = [(snd[r[0]], r) for r in result["receiver_rows"] if r[0] in snd][warmup:]
    # Only messages the receiver's own poll returned for: not those already queued or read
    # by the pump thread while the node was busy (its last poll then predates the write).
    waited = [p for p in pairs if p[1][1] >= p[0][2]]
    if not waited:
        raise SystemExit("no message found the receiver waiting: nothing to split")
    queued = len(pairs) - len(waited)
    pairs = waited
    s = np.array([p[0] for p in pairs], dtype=np.int64)
    r = np.array([p[1] for p in pairs], dtype=np.int64)
    # sender: t0, pa.array done, write start, write end (unused), cpu
    # receiver: t0, poll returned, _to_event in, _to_event out, user, cpu
    # (the receiver may return from poll before the sender's write call does: one stage)
    bounds = [s[:, 0], s[:, 1], s[:, 2], r[:, 1], r[:, 2], r[:, 3], r[:, 4]]
    cols = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)] + [r[:, 4] - r[:, 0]]
    gcs = np.array(result.get("sender_gc_ns", []) + result.get("receiver_gc_ns", []))
    with_gc = sum(
        bool(((gcs >= a) & (gcs <= b)).any()) for a, b in zip(s[:, 0], r[:, 4], strict=True)
    )
    counts = {
        "messages": len(pairs),
        "left out (receiver was busy: queued, or read by its pump thread)": queued,
        "receiver on the sender's CPU": int((s[:, 4] == r[:, 5]).sum()),
        "with a garbage collection inside": with_gc,
    }
    return np.stack(cols, axis=1) / 1e3, counts


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 10:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 10 s, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size",
        type=at_least(8, MAX_SIZE),
        default=4096,
        help="payload bytes, 8 (the send time is stamped in the first 8) to 1 GiB (default 4096)",
    )
    parser.add_argument("--count", type=at_least(1), default=200, help="messages (default 200)")
    parser.add_argument(
        "--warmup",
        type=at_least(0),
        default=10,
        help="messages sent first and left out, on top of --count (default 10)",
    )
    parser.add_argument(
        "--interval", type=_seconds, default=0.01, help="seconds between messages (default 0.01)"
    )
    parser.add_argument("--json", type=Path, help="also write the stage table here")
    args = parser.parse_args(argv)
    side = Side("dora-py", Path(sys.executable).parent)
    try:
        result = run(side, args.size, args.count + args.warmup, args.interval)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    cols, counts = split(result, args.warmup)
    pct = np.percentile(cols, [50, 90, 99], axis=0)
    print(f"dora-py one-way latency by stage, {args.size} B, {counts['messages']} messages (us)")
    print(f"{'stage':34} {'p50':>8} {'p90':>8} {'p99':>8}")
    table = {}
    for i, name in enumerate(STAGES):
        table[name] = {"p50": pct[0, i], "p90": pct[1, i], "p99": pct[2, i]}
        print(f"{name:34} {pct[0, i]:8.1f} {pct[1, i]:8.1f} {pct[2, i]:8.1f}")
    for name, n in counts.items():
        print(f"{name}: {n}")
    if args.json:
        args.json.write_text(json.dumps({"stages_us": table, **counts}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
