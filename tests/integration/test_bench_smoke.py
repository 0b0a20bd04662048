"""Smoke run of our side of the messaging benchmark, so bench/latency.py never rots.

No timing is asserted: only that every case ran on dora-py and produced figures.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"


def _run_bench(script: str, args: list[str], cwd: Path, timeout: float) -> str:
    """Run ``bench/<script>`` with this interpreter; its stdout, after asserting it succeeded."""
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        start_new_session=True,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_quick_runs_on_our_runtime(tmp_path: Path) -> None:
    raw_json = tmp_path / "raw.json"
    stdout = _run_bench("latency.py", ["--quick", "--json", str(raw_json)], tmp_path, 240)
    assert "send_output 4 KiB p50 (us)" in stdout
    assert "targets: not evaluated" in stdout and "FAIL" not in stdout
    raw = json.loads(raw_json.read_text())["raw"]
    (ours,) = raw["dora-py"]
    for size in ("4 KiB", "64 KiB", "1 MiB", "4 MiB"):
        for method in ("send_output", "send_output_raw"):
            value = ours[f"{method} {size} p50 (us)"]
            assert math.isfinite(value) and value > 0, (method, size, value)
    for mode in ("default", "backpressure"):
        assert ours[f"8 B {mode} received/s"] > 0
        assert ours[f"8 B {mode} lost"] >= 0
    assert ours["startup dora run wall (s)"] > 0
    assert raw["floor"][0]["4 KiB p50 (us)"] > 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_latency_stages_splits_every_message(tmp_path: Path) -> None:
    """bench/latency_stages.py wraps runtime internals: it must keep finding them."""
    out = tmp_path / "stages.json"
    args = ["--count", "8", "--warmup", "2", "--interval", "0.005", "--json", str(out)]
    _run_bench("latency_stages.py", args, tmp_path, 100)
    result = json.loads(out.read_text())
    left_out = result["left out (receiver was busy: queued, or read by its pump thread)"]
    assert result["messages"] >= 1 and result["messages"] + left_out == 8, result
    stages = result["stages_us"]
    assert len(stages) == 7 and all(s["p50"] >= 0 for s in stages.values()), stages
    parts = sum(s["p50"] for name, s in stages.items() if name != "total one-way")
    assert stages["total one-way"]["p50"] > 0 and parts > 0


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("latency_stages.py", ["--size", "4"], "argument --size: must be at least 8, got 4"),
        ("latency_stages.py", ["--count", "0"], "argument --count: must be at least 1, got 0"),
        ("latency_stages.py", ["--interval", "-1"], "argument --interval: must be more than 0"),
        ("latency.py", ["--repeat", "0"], "argument --repeat: must be at least 1, got 0"),
        (
            "latency_stages.py",
            ["--size", str(1 << 40)],
            f"argument --size: must be at most {1 << 30}, got {1 << 40}",
        ),
        ("latency.py", ["--no-ours"], "--no-ours without --vs-dora-rs leaves nothing to run"),
        ("latency.py", ["--ours-bin", "/nonexistent"], "--ours-bin: /nonexistent is not a folder"),
        ("latency.py", ["--ours-bin", "/tmp"], "--ours-bin: no `dora` in /tmp"),
    ],
)
def test_bench_rejects_bad_arguments_in_one_line(
    tmp_path: Path, script: str, args: list[str], message: str
) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr
