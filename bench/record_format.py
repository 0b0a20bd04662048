"""Write/read throughput of the .dora format next to the ``mcap`` Python writer/reader.

Two workloads, same data for both formats in the same run: camera-like frames (1 MiB uint8,
a gradient with sensor noise) and small IMU messages (8 x float64 = 64 B). Both use zstd. Write
time runs from the first write to the file being closed; read time iterates every message and
touches its payload, from a cold page cache (each file is synced and dropped from the cache
before it is read). ``--quick`` runs a tiny version (used by the test suite).

Usage: python bench/record_format.py [--quick] [--frames N] [--imu N] [--level L] [--repeat R]
       [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dora_replay  # noqa: E402

MIB = 1 << 20


@dataclass
class Result:
    workload: str
    fmt: str
    op: str
    messages: int
    nbytes: int
    seconds: float
    file_bytes: int

    @property
    def mib_s(self) -> float:
        return self.nbytes / MIB / self.seconds

    @property
    def msg_s(self) -> float:
        return self.messages / self.seconds


def make_frames(n_distinct: int, size: int) -> list[np.ndarray]:
    """Camera-like frames: a moving gradient plus noise of a few grey levels, with the clipped
    (over/under-exposed) regions real scenes have (about a third of the pixels)."""
    side = int(np.sqrt(size))
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side]
    frames = []
    for i in range(n_distinct):
        img = (x + 2 * y + 7 * i) % 384 - 64 + rng.integers(0, 6, (side, side))
        flat = np.zeros(size, np.uint8)
        flat[: side * side] = img.clip(0, 255).astype(np.uint8).reshape(-1)
        frames.append(flat)
    return frames


def make_imu(n_distinct: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.normal(size=8) for _ in range(n_distinct)]


def drop_from_cache(path: Path) -> None:
    """Put ``path`` on disk and out of the page cache, so the read that follows is a cold read
    (as when replaying a recording copied from a robot) for every format alike."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_dora(
    path: Path, name: str, payloads: list[np.ndarray], n: int, level: int, chunk: int
) -> tuple[float, float]:
    arrays = [pa.array(p) for p in payloads]
    k = len(arrays)

    def write() -> None:
        with dora_replay.open_writer(
            path,
            "nodes: []\n",
            compression=f"zstd:{level}",
            chunk_size_bytes=chunk,
            fsync=False,
            max_buffer_bytes=None,
        ) as w:
            for i in range(n):
                w.write(name, arrays[i % k], log_time_ns=i, publish_time_ns=i, seq=i)

    def read() -> None:
        count = 0
        with dora_replay.open(path) as r:
            for m in r.iter_messages():
                count += len(m.data)
        assert count == sum(len(arrays[i % k]) for i in range(min(n, k))) * (n // k) + sum(
            len(arrays[i]) for i in range(n % k)
        )

    wt = timed(write)
    drop_from_cache(path)
    return wt, timed(read)


def bench_mcap(
    path: Path, name: str, payloads: list[np.ndarray], n: int, level: int
) -> tuple[float, float]:
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    blobs = [p.tobytes() for p in payloads]
    k = len(blobs)

    def write() -> None:
        with path.open("wb") as f:
            w = Writer(f, compression=CompressionType.ZSTD)
            w.start()
            sid = w.register_schema(name="raw", encoding="", data=b"")
            cid = w.register_channel(topic=name, message_encoding="raw", schema_id=sid)
            for i in range(n):
                w.add_message(cid, log_time=i, data=blobs[i % k], publish_time=i, sequence=i)
            w.finish()

    def read() -> None:
        count = 0
        with path.open("rb") as f:
            for _s, _c, m in make_reader(f).iter_messages():
                count += len(m.data)
        assert count > 0

    wt = timed(write)
    drop_from_cache(path)
    return wt, timed(read)


def run(frames: int, imu: int, level: int, workdir: Path) -> list[Result]:
    results: list[Result] = []
    workloads = [
        ("camera 1 MiB", "camera/image", make_frames(16, MIB), frames, 8 * MIB),
        ("imu 64 B", "imu/data", make_imu(1000), imu, 4 * MIB),
    ]
    for label, name, payloads, n, chunk in workloads:
        nbytes = sum(payloads[i % len(payloads)].nbytes for i in range(n))
        fmts = ["mcap", f"dora:{level}"] + (
            ["dora:3"] if name == "camera/image" and level != 3 else []
        )
        for fmt in fmts:
            path = workdir / f"{name.replace('/', '_')}.{fmt}"
            if fmt.startswith("dora"):
                lvl = int(fmt.split(":")[1])
                wt, rt = bench_dora(path, name, payloads, n, lvl, chunk)
            else:
                wt, rt = bench_mcap(path, name, payloads, n, level)
            size = path.stat().st_size
            results.append(Result(label, fmt, "write", n, nbytes, wt, size))
            results.append(Result(label, fmt, "read", n, nbytes, rt, size))
            path.unlink()
    return results


def median_results(reps: list[list[Result]]) -> list[Result]:
    """Per (workload, format, op): the repetition with the median time."""
    out = []
    for i in range(len(reps[0])):
        runs = sorted((rep[i] for rep in reps), key=lambda r: r.seconds)
        out.append(runs[len(runs) // 2])
    return out


def render(reps: list[list[Result]]) -> str:
    results = median_results(reps)
    lines = [
        f"{'workload':<14} {'op':<6} {'format':<7} {'MiB/s':>9} {'msg/s':>12} {'file MiB':>9} "
        f"{'x mcap':>7}  per repetition",
    ]
    for i, r in enumerate(results):
        ratios = []
        for rep in reps:
            by = {(x.workload, x.fmt, x.op): x for x in rep}
            ratios.append(f"{rep[i].msg_s / by[(r.workload, 'mcap', r.op)].msg_s:.2f}")
        base = {(x.workload, x.fmt, x.op): x for x in results}[(r.workload, "mcap", r.op)]
        lines.append(
            f"{r.workload:<14} {r.op:<6} {r.fmt:<7} {r.mib_s:>9.1f} {r.msg_s:>12,.0f} "
            f"{r.file_bytes / MIB:>9.1f} {r.msg_s / base.msg_s:>7.2f}  {' '.join(ratios)}"
        )
    lines.append(
        f"median of {len(reps)} repetition(s); dora:L = zstd level L, multi-threaded for large "
        "chunks, fsync off; mcap = mcap Python Writer, default zstd chunks (level 3); reads "
        "start from a cold page cache"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny run (seconds)")
    ap.add_argument("--frames", type=int, default=2000, help="1 MiB frames (default 2000)")
    ap.add_argument("--imu", type=int, default=200_000, help="64 B messages (default 200000)")
    ap.add_argument("--level", type=int, default=1, help="dora zstd level (default 1)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions, medians shown (default 3)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.imu, args.repeat = 20, 5000, 1
    reps = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for i in range(max(1, args.repeat)):
            reps.append(run(args.frames, args.imu, args.level, Path(tmp)))
            if args.repeat > 1:
                print(f"repetition {i + 1}/{args.repeat} done", file=sys.stderr, flush=True)
    print(render(reps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
