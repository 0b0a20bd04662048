"""The floor: one-way latency of a bare shared-memory + eventfd ping between two Python processes.

No runtime, no framing, no Arrow: the sender writes the payload into an ``mmap`` of a
``/dev/shm`` file, stamps ``time.monotonic_ns()`` (CLOCK_MONOTONIC, ns) into the first 8
bytes and signals an eventfd; the receiver wakes, reads the stamp, records the latency and
acks on a second eventfd. The sender's copy is excluded (the stamp is written after it), as
the fastest any Python runtime could deliver one message on this machine.

Used by ``bench/latency.py``; runnable alone: ``python bench/_floor.py --count 200``.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import struct
import subprocess
import sys
import time
import uuid

_STAMP = struct.Struct("<q")
_SIZES = (4096, 65536, 1 << 20, 4 << 20)


def _receiver(shm_path: str, ready_fd: int, ack_fd: int, total: int) -> None:
    """Child side: wait ``total`` signals, print latencies (ns) as JSON on stdout."""
    with open(shm_path, "r+b") as f:
        mem = mmap.mmap(f.fileno(), 0)
    latencies = []
    for _ in range(total):
        os.eventfd_read(ready_fd)
        recv_ns = time.monotonic_ns()
        latencies.append(recv_ns - _STAMP.unpack_from(mem, 0)[0])
        os.eventfd_write(ack_fd, 1)
    mem.close()
    json.dump(latencies, sys.stdout)


def measure_floor(
    sizes: tuple[int, ...] = _SIZES, count: int = 200, warmup: int = 10, interval_s: float = 0.01
) -> dict[int, list[int]]:
    """One-way latencies in ns per payload size (warm-up messages dropped)."""
    shm_path = f"/dev/shm/dora-bench-floor-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    ready_fd = os.eventfd(0)
    ack_fd = os.eventfd(0)
    per_size = warmup + count
    fd = os.open(shm_path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    child = None
    try:
        os.ftruncate(fd, max(sizes))
        mem = mmap.mmap(fd, max(sizes))
        cmd = [sys.executable, __file__, "--child", shm_path, str(ready_fd), str(ack_fd)]
        cmd.append(str(per_size * len(sizes)))
        child = subprocess.Popen(
            cmd, pass_fds=(ready_fd, ack_fd), stdout=subprocess.PIPE, start_new_session=True
        )
        time.sleep(0.2)
        for size in sizes:
            payload = bytes(range(256)) * (size // 256)
            next_t = time.monotonic()
            for _ in range(per_size):
                next_t += interval_s
                mem[:size] = payload
                _STAMP.pack_into(mem, 0, time.monotonic_ns())
                os.eventfd_write(ready_fd, 1)
                os.eventfd_read(ack_fd)
                time.sleep(max(0.0, next_t - time.monotonic()))
        out, _ = child.communicate(timeout=30)
        mem.close()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        os.close(fd)
        os.unlink(shm_path)
        os.close(ready_fd)
        os.close(ack_fd)
    flat = json.loads(out)
    return {size: flat[i * per_size + warmup : (i + 1) * per_size] for i, size in enumerate(sizes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, ready, ack, total = args.child
        _receiver(path, int(ready), int(ack), int(total))
        return
    import numpy as np

    for size, lat in measure_floor(count=args.count).items():
        p50, p90, p99 = np.percentile(np.array(lat) / 1e3, [50, 90, 99])
        print(f"{size:>8} B  p50 {p50:7.1f} us  p90 {p90:7.1f} us  p99 {p99:7.1f} us")


if __name__ == "__main__":
    main()
