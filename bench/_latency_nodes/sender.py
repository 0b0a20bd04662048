"""Benchmark sender node: the same script runs on dora-py and on dora-rs.

It only uses the public dora-rs Python node API (``from dora import Node``). The mode
and the sizes come from environment variables set in the dataflow YAML:

- ``BENCH_MODE``: ``latency`` (fixed-rate stamped messages), ``throughput`` (8-byte
  messages as fast as possible) or ``once`` (one message, for start-up timing).
- ``BENCH_SIZES`` (bytes, comma separated), ``BENCH_COUNT``, ``BENCH_WARMUP``,
  ``BENCH_INTERVAL_S``, ``BENCH_RAW`` (``1``: ``send_output_raw``), ``BENCH_DURATION_S``.

Latency payloads carry ``time.monotonic_ns()`` (CLOCK_MONOTONIC, ns) in their first
8 bytes, written just before the message is handed to the runtime.
"""

import json
import os
import struct
import time

import numpy as np
import pyarrow as pa

from dora import Node

_STAMP = struct.Struct("<q")


def _send_stamped(node: Node, payload: np.ndarray, raw: bool) -> None:
    if raw:
        with node.send_output_raw("data", payload.nbytes) as buf:
            view = np.frombuffer(buf, np.uint8)
            view[:] = payload
            view[:8] = np.frombuffer(_STAMP.pack(time.monotonic_ns()), np.uint8)
            del view  # the runtime refuses to send while a view is alive
    else:
        payload[:8] = np.frombuffer(_STAMP.pack(time.monotonic_ns()), np.uint8)
        node.send_output("data", pa.array(payload))


def run_latency(node: Node) -> None:
    sizes = [int(s) for s in os.environ["BENCH_SIZES"].split(",")]
    count = int(os.environ["BENCH_COUNT"])
    warmup = int(os.environ["BENCH_WARMUP"])
    interval_s = float(os.environ["BENCH_INTERVAL_S"])
    raw = os.environ.get("BENCH_RAW") == "1"
    sent = 0
    for size in sizes:
        payload = np.arange(size, dtype=np.uint64).astype(np.uint8)
        next_t = time.monotonic()
        for _ in range(warmup + count):
            next_t += interval_s
            _send_stamped(node, payload, raw)
            sent += 1
            time.sleep(max(0.0, next_t - time.monotonic()))
    _finish(node, {"sent": sent})


def _finish(node: Node, counts: dict[str, int]) -> None:
    """Report the counts twice: as a ``done`` message and in a file beside the runtime.

    The file is what the benchmark trusts: dora-rs 1.1 can drop ``done`` itself when the
    receiver is flooded (its backpressure queue drops beyond a hard cap of 100).
    """
    node.send_output("done", pa.array([counts["sent"]], pa.int64()), counts)
    with open(os.environ["BENCH_SENDER_RESULT"], "w", encoding="utf-8") as f:
        json.dump(counts, f)


def run_throughput(node: Node) -> None:
    duration_s = float(os.environ["BENCH_DURATION_S"])
    msg = pa.array(np.zeros(8, np.uint8))
    sent = 0
    start_ns = time.monotonic_ns()
    deadline = start_ns + int(duration_s * 1e9)
    while True:
        for _ in range(100):  # checking the clock every message would cost a third of the loop
            node.send_output("data", msg)
        sent += 100
        if time.monotonic_ns() >= deadline:
            break
    end_ns = time.monotonic_ns()
    _finish(node, {"sent": sent, "start_ns": start_ns, "end_ns": end_ns})


def main() -> None:
    node = Node()
    mode = os.environ.get("BENCH_MODE", "latency")
    time.sleep(float(os.environ.get("BENCH_SETTLE_S", "0.2")))  # let the receiver subscribe
    if mode == "latency":
        run_latency(node)
    elif mode == "throughput":
        run_throughput(node)
    elif mode == "once":
        node.send_output("data", pa.array(np.zeros(8, np.uint8)))
        _finish(node, {"sent": 1})
    else:
        raise SystemExit(f"BENCH_MODE={mode!r}: expected latency, throughput or once")


if __name__ == "__main__":
    main()
