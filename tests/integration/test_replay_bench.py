"""``bench/replay_timing.py --quick`` runs end to end and prints its table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_replay_timing_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "timing.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "replay_timing.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "worst p99" in r.stdout
    rows = json.loads(out.read_text())
    assert [row["speed"] for row in rows] == [1.0, 10.0, 0.1]
    assert all(row["messages"] > 0 for row in rows)
