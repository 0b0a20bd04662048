"""Node for ``bench/latency_stages.py``: dora-py only, times every stage of one message.

It wraps (never replaces) three internals of ``dora_runtime`` to take a ``monotonic_ns``
stamp at each boundary: ``_Edge.send`` (around the socket write), ``_Poller.wait`` (when
``poll`` returns in the receiver) and ``Node._to_event`` (decoding). ``BENCH_ROLE`` is
``sender`` or ``receiver``; each writes its rows (one per message, stamps in ns, plus the CPU
it ran on and the garbage collections it saw) as JSON: the receiver to ``BENCH_RESULT``, the
sender to ``BENCH_SENDER_RESULT`` (the files ``bench/latency.py``'s ``run_dataflow`` reads).
"""

import ctypes
import gc
import json
import os
import struct
import threading
import time

import numpy as np
import pyarrow as pa

import dora_runtime._events as _events
import dora_runtime._sender as _sender
import dora_runtime.node as _node
from dora import Node

_STAMP = struct.Struct("<q")
_libc = ctypes.CDLL(None)
marks: list[int] = []
gcs: list[int] = []
gc.callbacks.append(lambda phase, _info: phase == "start" and gcs.append(time.monotonic_ns()))


def _wrap(cls: type, name: str, before: bool, after: bool) -> None:
    """Stamp around ``cls.name`` when the node's main thread calls it (not the pump thread)."""
    inner = getattr(cls, name)
    main = threading.main_thread()

    def wrapper(*args):
        mine = threading.current_thread() is main
        if before and mine:
            marks.append(time.monotonic_ns())
        out = inner(*args)
        if after and mine:
            marks.append(time.monotonic_ns())
        return out

    setattr(cls, name, wrapper)


def sender(node: Node) -> list[list[int]]:
    _wrap(_sender._Edge, "send", before=True, after=True)
    size = int(os.environ["BENCH_SIZE"])
    interval_s = float(os.environ["BENCH_INTERVAL_S"])
    payload = np.arange(size, dtype=np.uint64).astype(np.uint8)
    rows = []
    next_t = time.monotonic()
    for _ in range(int(os.environ["BENCH_COUNT"])):
        next_t += interval_s
        marks.clear()
        t0 = time.monotonic_ns()
        payload[:8] = np.frombuffer(_STAMP.pack(t0), np.uint8)
        arr = pa.array(payload)
        t1 = time.monotonic_ns()
        node.send_output("data", arr)
        rows.append([t0, t1, *marks[:2], _libc.sched_getcpu()])
        time.sleep(max(0.0, next_t - time.monotonic()))
    return rows


def receiver(node: Node) -> list[list[int]]:
    _wrap(_events._Poller, "wait", before=False, after=True)
    _wrap(_node.Node, "_to_event", before=True, after=True)
    rows = []
    while True:
        marks.clear()
        event = node.next()
        t_user = time.monotonic_ns()
        if event is None:
            return rows
        if event["type"] == "INPUT":
            value = event["value"]
            buf = value.buffers()[1]
            t0 = int(np.frombuffer(buf, np.int64, count=1, offset=value.offset)[0])
            # the last poll that returned in this call (0: none, the message was already
            # queued), then _to_event's entry and exit
            polled = marks[-3] if len(marks) >= 3 else 0
            rows.append([t0, polled, *marks[-2:], t_user, _libc.sched_getcpu()])
            del buf, value
        del event


def main() -> None:
    node = Node()
    role = os.environ["BENCH_ROLE"]
    if role == "sender":
        time.sleep(0.2)  # let the receiver subscribe
    if role == "sender":
        out, result = {"sender_rows": sender(node)}, "BENCH_SENDER_RESULT"
    else:
        out, result = {"receiver_rows": receiver(node)}, "BENCH_RESULT"
    with open(os.environ[result], "w", encoding="utf-8") as f:
        json.dump({**out, f"{role}_gc_ns": gcs}, f)


if __name__ == "__main__":
    main()
