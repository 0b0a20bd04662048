"""Live recording benchmark: what `dora run --record` costs a running dataflow.

    python bench/record_live.py            # full run (~1 min)
    python bench/record_live.py --quick    # tiny counts, for the smoke test

Two measurements, with the same node scripts as bench/latency.py:

1. Latency overhead: one-way p50/p99 of 1 MiB messages at 30 Hz, run without and with
   `--record` (every output recorded, zstd). Target: recording adds < 10 % to p50.
2. Sustained camera-like load: 1 MiB frames at 100 Hz (100 MiB/s) for 10 s, recorded. Target:
   the recording holds every frame that was sent and reports zero recorder drops.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODES = HERE / "_latency_nodes"


def _dataflow(tmp: Path, env: dict[str, str]) -> Path:
    import yaml

    spec = {
        "nodes": [
            {
                "id": "sender",
                "path": str(NODES / "sender.py"),
                "outputs": ["data", "done"],
                "env": env,
            },
            {
                "id": "receiver",
                "path": str(NODES / "receiver.py"),
                "inputs": {
                    "data": {"source": "sender/data", "queue_size": 100},
                    "done": "sender/done",
                },
                "env": env,
            },
        ]
    }
    df = tmp / "df.yml"
    df.write_text(yaml.safe_dump(spec, sort_keys=False))
    return df


def _run(tmp: Path, env: dict[str, str], record: Path | None, timeout_s: float) -> dict:
    env = dict(
        env, BENCH_RESULT=str(tmp / "result.json"), BENCH_SENDER_RESULT=str(tmp / "counts.json")
    )
    df = _dataflow(tmp, env)
    cmd = [
        str(Path(sys.executable).parent / "dora"),
        "run",
        str(df),
        "--log-dir",
        str(tmp / "logs"),
    ]
    if record is not None:
        cmd += ["--record", str(record)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise SystemExit(f"dora run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads((tmp / "result.json").read_text())


def _percentile(values: list[int], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1000.0


def latency_overhead(count: int) -> dict[str, float]:
    env = {
        "BENCH_MODE": "latency",
        "BENCH_SIZES": str(1 << 20),
        "BENCH_COUNT": str(count),
        "BENCH_WARMUP": "10",
        "BENCH_INTERVAL_S": str(1 / 30),
    }
    out: dict[str, float] = {}
    for label, record in (("plain", False), ("recorded", True)):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            res = _run(tmp, env, tmp / "run.dora" if record else None, 120)
            lat = res["latencies_ns"][str(1 << 20)]
            out[f"{label} p50 (us)"] = _percentile(lat, 0.5)
            out[f"{label} p99 (us)"] = _percentile(lat, 0.99)
    out["p50 overhead (%)"] = 100 * (out["recorded p50 (us)"] / out["plain p50 (us)"] - 1)
    return out


def sustained(count: int) -> dict[str, float]:
    import dora_replay

    env = {
        "BENCH_MODE": "latency",
        "BENCH_SIZES": str(1 << 20),
        "BENCH_COUNT": str(count),
        "BENCH_WARMUP": "0",
        "BENCH_INTERVAL_S": "0.01",
    }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rec_path = tmp / "camera.dora"
        _run(tmp, env, rec_path, 300)
        counts = json.loads((tmp / "counts.json").read_text())
        rec = dora_replay.open(rec_path)
        info = rec.channels["sender/data"]
        return {
            "frames sent": counts["sent"],
            "frames recorded": info.message_count,
            "recorder drops": sum(c.drops for c in rec.channels.values()),
            "MiB/s offered": counts["sent"] / (count * 0.01),
            "file MiB": sum(p.stat().st_size for p in rec.paths) / 2**20,
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny counts (smoke test)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions of the latency pair")
    args = ap.parse_args()
    reps = 1 if args.quick else args.repeat
    runs = [latency_overhead(20 if args.quick else 200) for _ in range(reps)]
    lat = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    sus = sustained(30 if args.quick else 1000)
    print("live recording benchmark (medians over", reps, "repetition(s))")
    for k, v in {**lat, **sus}.items():
        print(f"  {k:<24} {v:>12.1f}")
    print("raw latency repetitions:", json.dumps(runs))
    ok_lat = lat["p50 overhead (%)"] < 10
    ok_sus = sus["frames recorded"] == sus["frames sent"] and sus["recorder drops"] == 0
    print(f"target: recording adds < 10 % to p50 ........ {'PASS' if ok_lat else 'FAIL'}")
    print(f"target: zero frames lost at 100 MiB/s ........ {'PASS' if ok_sus else 'FAIL'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
