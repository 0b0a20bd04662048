"""Messaging benchmark: the same two-node Python dataflow on dora-py and on dora-rs 1.1.0.

    python bench/latency.py                 # our runtime only
    python bench/latency.py --vs-dora-rs    # both, one table with ours/dora-rs ratios
    python bench/latency.py --vs-dora-rs --memory --write-results   # also RSS, bench/RESULTS.md

Each case writes a dataflow YAML into a temporary directory and runs ``<venv>/bin/dora run``
on it; the node scripts in ``bench/_latency_nodes/`` only use ``from dora import Node``, so both
runtimes run identical Python. Latency is CLOCK_MONOTONIC at receive minus at send.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import yaml

BENCH_DIR = Path(__file__).resolve().parent
NODES_DIR = BENCH_DIR / "_latency_nodes"
sys.path.insert(0, str(BENCH_DIR))
from _floor import measure_floor  # noqa: E402

SIZES = (4096, 65536, 1 << 20, 4 << 20)
DORA_RS_PINS = ("dora-rs==1.1.0", "dora-rs-cli==1.1.0", "numpy", "pyarrow")


@dataclass
class Side:
    """One runtime under test: its ``dora`` executable and the interpreter its nodes get."""

    name: str
    bin_dir: Path

    @property
    def dora(self) -> str:
        return str(self.bin_dir / "dora")

    def env(self) -> dict[str, str]:
        # dora-rs starts `.py` nodes with whatever `python` is first on PATH.
        env = dict(os.environ)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env.pop("VIRTUAL_ENV", None)
        return env


@dataclass
class Settings:
    count: int = 200
    warmup: int = 10
    interval_s: float = 0.01
    duration_s: float = 3.0
    memory_s: float = 60.0
    timeout_s: float = 120.0


class RunError(RuntimeError):
    """A `dora run` failed, timed out or produced no result file; carries its log tail."""


def ensure_dora_rs(venv: Path) -> Side:
    """Install dora-rs 1.1.0 into ``venv`` unless it is there already."""
    if not (venv / "bin" / "dora").exists():
        print(f"installing {' '.join(DORA_RS_PINS)} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *DORA_RS_PINS], check=True)
    return Side("dora-rs", venv / "bin")


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for p in [*children]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _wait_exit(proc: subprocess.Popen, timeout_s: float) -> int | None:
    """The exit code of ``proc``, or None after ``timeout_s``. Sleeps on the process's pidfd:
    ``Popen.wait(timeout)`` polls every 50 ms, which woke this script 20 times a second next
    to the nodes being measured and added up to 50 ms to the start-up wall time."""
    fd = os.pidfd_open(proc.pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
    finally:
        os.close(fd)
    return proc.wait() if ready else None


def run_dataflow(
    side: Side, nodes: list[dict], settings: Settings, sampler=None
) -> tuple[dict, float]:
    """Run one dataflow to completion; return the receiver's JSON result and the wall time (s)."""
    with tempfile.TemporaryDirectory(prefix="dora-bench-") as tmp:
        result_path = Path(tmp) / "result.json"
        sender_path = Path(tmp) / "sender.json"
        for node in nodes:
            paths = {"BENCH_RESULT": str(result_path), "BENCH_SENDER_RESULT": str(sender_path)}
            node["env"] = {**node.get("env", {}), **paths}
        df = Path(tmp) / "dataflow.yml"
        df.write_text(yaml.safe_dump({"nodes": nodes}, sort_keys=False))
        log_path = Path(tmp) / "run.log"
        shm_before = _shm_files()
        with open(log_path, "wb") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [side.dora, "run", str(df)],
                cwd=tmp,
                env=side.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                if sampler is not None:
                    sampler(proc)
                rc = _wait_exit(proc, settings.timeout_s)
            finally:
                wall_s = time.perf_counter() - t0
                _kill_tree(proc)
                # dora-rs 1.1's `dora run` leaves a Zenoh segment (``<n>.zenoh``) in /dev/shm
                for name in _shm_files() - shm_before:
                    if name.endswith(".zenoh"):
                        Path("/dev/shm", name).unlink(missing_ok=True)
        if rc != 0 or not result_path.exists() or not sender_path.exists():
            tail = log_path.read_text(errors="replace")[-3000:]
            why = "timed out" if rc is None else f"exit code {rc}"
            raise RunError(f"{side.name}: `dora run` {why}; log tail:\n{tail}")
        result = {**json.loads(result_path.read_text()), **json.loads(sender_path.read_text())}
        result["reported_drops"] = reported_drops(log_path.read_text(errors="replace"))
        return result, wall_s


def _shm_files() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def reported_drops(log: str) -> int:
    """Drops the runtime itself reported in the `dora run` output.

    dora-py prints one summary line per input (``input `receiver/data` dropped 95042
    message(s)``); dora-rs 1.1 logs one line per message dropped past its backpressure cap
    and nothing for its default drop-oldest queues.
    """
    ours = sum(int(n) for n in re.findall(r"dropped (\d+) message", log))
    return ours + log.count("dropping oldest to prevent OOM")


def _two_nodes(env: dict[str, str], policy: str | None = None) -> list[dict]:
    data_input: str | dict = "sender/data"
    if policy is not None:
        data_input = {"source": "sender/data", "queue_policy": policy}
    return [
        {
            "id": "sender",
            "path": str(NODES_DIR / "sender.py"),
            "outputs": ["data", "done"],
            "env": dict(env),
        },
        {
            "id": "receiver",
            "path": str(NODES_DIR / "receiver.py"),
            "inputs": {"data": data_input, "done": "sender/done"},
            "env": dict(env),
        },
    ]


def bench_latency(
    side: Side, settings: Settings, raw: bool, sizes: tuple[int, ...] = SIZES
) -> dict[int, list[int]]:
    env = {
        "BENCH_MODE": "latency",
        "BENCH_SIZES": ",".join(str(s) for s in sizes),
        "BENCH_COUNT": str(settings.count),
        "BENCH_WARMUP": str(settings.warmup),
        "BENCH_INTERVAL_S": str(settings.interval_s),
        "BENCH_RAW": "1" if raw else "0",
    }
    result, _ = run_dataflow(side, _two_nodes(env), settings)
    return {int(k): v for k, v in result["latencies_ns"].items()}


def bench_throughput(side: Side, settings: Settings, policy: str | None) -> dict[str, float]:
    env = {"BENCH_MODE": "throughput", "BENCH_DURATION_S": str(settings.duration_s)}
    r, _ = run_dataflow(side, _two_nodes(env, policy), settings)
    sent, received = r.get("sent", 0), r["received"]
    span_s = max(1e-9, (r.get("end_ns", 0) - r.get("start_ns", 0)) / 1e9)
    recv_span_s = max(1e-9, (r["last_recv_ns"] - r.get("start_ns", 0)) / 1e9)
    return {
        "sent/s": sent / span_s,
        "received/s": received / recv_span_s,
        "lost": sent - received,
        "drops reported by runtime": r["reported_drops"],
    }


def bench_startup(side: Side, settings: Settings) -> float:
    env = {"BENCH_MODE": "once", "BENCH_SETTLE_S": "0"}
    result, wall_s = run_dataflow(side, _two_nodes(env), settings)
    if result.get("received") != 1:
        raise RunError(f"{side.name}: start-up dataflow delivered no message: {result}")
    return wall_s


def bench_memory(side: Side, settings: Settings) -> dict[str, float]:
    """RSS (MB) of the `dora run` process and of its nodes, sampled every second."""
    daemon: list[float] = []
    nodes: list[float] = []
    n = int(settings.memory_s * 30)
    env = {
        "BENCH_MODE": "latency",
        "BENCH_SIZES": str(4 << 20),
        "BENCH_COUNT": str(n),
        "BENCH_WARMUP": "0",
        "BENCH_INTERVAL_S": str(1 / 30),
        "BENCH_RAW": "0",
    }

    def sample(proc: subprocess.Popen) -> None:
        def loop() -> None:
            while proc.poll() is None:
                try:
                    root = psutil.Process(proc.pid)
                    kids = root.children(recursive=True)
                    d = root.memory_info().rss / 1e6
                    k = sum(c.memory_info().rss for c in kids) / 1e6
                except psutil.NoSuchProcess:
                    return
                if len(kids) >= 2:  # both nodes up
                    daemon.append(d)
                    nodes.append(k)
                time.sleep(1.0)

        threading.Thread(target=loop, daemon=True).start()

    settings = Settings(**{**settings.__dict__, "timeout_s": settings.memory_s + 60})
    run_dataflow(side, _two_nodes(env), settings, sampler=sample)
    out = {"samples (1/s)": float(len(daemon))}
    for name, xs in (("daemon", daemon), ("nodes", nodes)):
        xs = xs or [0.0]
        out.update({f"{name} first": xs[0], f"{name} last": xs[-1], f"{name} max": max(xs)})
    return out


def cases(settings: Settings) -> list:
    """Every case of a repetition, each a function ``side -> {row name: figure}``."""

    def latency(raw: bool, size: int):
        method = "send_output_raw" if raw else "send_output"

        def run(side: Side) -> dict[str, float]:
            rows = {}
            for size_, lat in bench_latency(side, settings, raw, (size,)).items():
                us = np.array(lat) / 1e3
                for q in (50, 90, 99):
                    rows[f"{method} {_fmt_size(size_)} p{q} (us)"] = float(np.percentile(us, q))
            return rows

        return run

    def throughput(label: str, policy: str | None):
        def run(side: Side) -> dict[str, float]:
            got = bench_throughput(side, settings, policy)
            return {f"8 B {label} {k}": v for k, v in got.items()}

        return run

    def startup(side: Side) -> dict[str, float]:
        return {"startup dora run wall (s)": bench_startup(side, settings)}

    # One size per case: both sides measure a size seconds apart, not a whole size sweep apart.
    return [
        *(latency(False, size) for size in SIZES),
        *(latency(True, size) for size in SIZES),
        throughput("default", None),
        throughput("backpressure", "backpressure"),
        startup,
    ]


def run_repetition(
    sides: list[Side], settings: Settings, first: int, errors: list[str]
) -> dict[str, dict[str, float]]:
    """One repetition, case by case: each case runs on every side back to back (sides in turn
    first, from ``first``), so the host's slow swings hit both sides of a ratio alike. A side
    whose run fails is left out of this repetition."""
    order = sides[first % len(sides) :] + sides[: first % len(sides)]
    rows: dict[str, dict[str, float]] = {s.name: {} for s in sides}
    failed: set[str] = set()
    for case in cases(settings):
        for side in order:
            if side.name in failed:
                continue
            try:
                rows[side.name].update(case(side))
            except RunError as e:
                errors.append(str(e))
                print(e, file=sys.stderr)
                failed.add(side.name)
    return {name: r for name, r in rows.items() if name not in failed}


def run_floor(settings: Settings) -> dict[str, float]:
    rows = {}
    for size, lat in measure_floor(SIZES, settings.count, settings.warmup).items():
        us = np.array(lat) / 1e3
        for q in (50, 90, 99):
            rows[f"{_fmt_size(size)} p{q} (us)"] = float(np.percentile(us, q))
    return rows


def _fmt_size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def medians(reps: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in reps[0] if all(k in r for r in reps)]
    return {k: statistics.median(r[k] for r in reps) for k in keys}


def at_least(low: int, high: int | None = None):
    """An argparse type: an integer of at least ``low`` (and at most ``high``), a one-line usage
    error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vs-dora-rs", action="store_true", help="also run dora-rs 1.1.0")
    p.add_argument(
        "--dora-rs-venv",
        type=Path,
        default=BENCH_DIR / ".venv-dora-rs",
        help="virtual environment with dora-rs 1.1.0; created and filled from PyPI if missing "
        "(default: bench/.venv-dora-rs)",
    )
    p.add_argument(
        "--ours-bin",
        type=Path,
        default=Path(sys.executable).parent,
        help="directory holding our `dora` (default: this interpreter's)",
    )
    p.add_argument(
        "--repeat",
        type=at_least(1),
        default=None,
        help="repetitions; the table shows medians (default: 3, 1 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    p.add_argument("--memory", action="store_true", help="60 s RSS run at 30 Hz, 4 MiB")
    p.add_argument("--no-ours", action="store_true", help="skip our runtime")
    p.add_argument("--write-results", action="store_true", help="write bench/RESULTS.md")
    p.add_argument("--json", type=Path, help="also dump raw numbers as JSON here")
    args = p.parse_args(argv)
    if args.no_ours and not args.vs_dora_rs:
        p.error("--no-ours without --vs-dora-rs leaves nothing to run")
    if not args.no_ours and not args.ours_bin.is_dir():
        p.error(f"--ours-bin: {args.ours_bin} is not a folder (name the one holding our `dora`)")
    if not args.no_ours and not (args.ours_bin / "dora").is_file():
        p.error(
            f"--ours-bin: no `dora` in {args.ours_bin} (install dora-py there: pip install -e .)"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    from _latency_nodes.report import render, write_results

    args = parse_args(argv)
    settings = Settings()
    if args.quick:
        settings = Settings(count=20, warmup=3, duration_s=0.5, memory_s=3.0, timeout_s=60.0)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    sides = [] if args.no_ours else [Side("dora-py", args.ours_bin)]
    if args.vs_dora_rs:
        sides.append(ensure_dora_rs(args.dora_rs_venv.resolve()))
    raw: dict[str, list[dict[str, float]]] = {s.name: [] for s in sides}
    raw["floor"] = []
    errors: list[str] = []
    for rep in range(args.repeat):
        names = " and ".join(s.name for s in sides)
        print(f"[{rep + 1}/{args.repeat}] {names}, case by case ...", flush=True)
        for name, rows in run_repetition(sides, settings, rep, errors).items():
            raw[name].append(rows)
        print(f"[{rep + 1}/{args.repeat}] floor ...", flush=True)
        raw["floor"].append(run_floor(settings))
    memory = {}
    if args.memory:
        for side in sides:
            print(f"memory: {side.name} for {settings.memory_s:.0f} s ...", flush=True)
            try:
                memory[side.name] = bench_memory(side, settings)
            except RunError as e:
                errors.append(str(e))
                print(e, file=sys.stderr)
    med = {name: medians(reps) for name, reps in raw.items() if reps}
    note = " [--quick: tiny counts, not figures]" if args.quick else ""
    render(med, memory, note=note, quick=args.quick)
    if args.json:
        args.json.write_text(json.dumps({"raw": raw, "memory": memory}, indent=1))
    if args.write_results:
        command = " ".join(
            ["python bench/latency.py", *(argv if argv is not None else sys.argv[1:])]
        )
        write_results(BENCH_DIR / "RESULTS.md", med, raw, memory, settings, args.repeat, command)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
