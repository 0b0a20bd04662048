"""Benchmark receiver node: records one-way latency or counts, writes JSON at the end.

Runs unchanged on dora-py and dora-rs. Results go to the file named by ``BENCH_RESULT``:
``{"latencies_ns": {"<size>": [...]}, "received": n, "sent": n, ...}``. Every event is
released (``del``) before the next one is taken, so a zero-copy runtime can recycle
the shared-memory region.
"""

import json
import os
import time

import numpy as np

from dora import Node


def main() -> None:
    warmup = int(os.environ.get("BENCH_WARMUP", "0"))
    stamped = os.environ.get("BENCH_MODE", "latency") == "latency"
    node = Node()
    latencies: dict[int, list[int]] = {}
    seen: dict[int, int] = {}
    received = 0
    first_recv_ns = last_recv_ns = 0
    done_meta: dict = {}
    while True:
        event = node.next()
        recv_ns = time.monotonic_ns()
        if event is None:
            break
        if event["type"] == "INPUT" and event["id"] == "data":
            value = event["value"]
            size = len(value)
            if stamped and size >= 8:
                buf = value.buffers()[1]
                sent_ns = int(np.frombuffer(buf, np.int64, count=1, offset=value.offset)[0])
                n = seen.get(size, 0)
                seen[size] = n + 1
                if n >= warmup:
                    latencies.setdefault(size, []).append(recv_ns - sent_ns)
                del buf
            received += 1
            if not first_recv_ns:
                first_recv_ns = recv_ns
            last_recv_ns = recv_ns
            del value
        elif event["type"] == "INPUT" and event["id"] == "done":
            done_meta = {"done_received": 1}
        del event
    result = {
        "latencies_ns": {str(k): v for k, v in latencies.items()},
        "received": received,
        "first_recv_ns": first_recv_ns,
        "last_recv_ns": last_recv_ns,
        **done_meta,
    }
    with open(os.environ["BENCH_RESULT"], "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
