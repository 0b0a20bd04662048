"""Run the `dora` command line as a subprocess, the way a user does (shared by the tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_dora(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m dora_cli.main ARGS`` with this checkout first on ``PYTHONPATH``."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "dora_cli.main", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


NODES = Path(__file__).resolve().parent / "nodes"

TICKER = """
nodes:
  - id: ticker
    path: {nodes}/ticker.py
    inputs:
      tick: dora/timer/millis/20
    outputs: [out]
    env: {{MAX_TICKS: '{ticks}'}}
"""
"""A one-node dataflow sending ``ticks`` messages 20 ms apart: ``TICKER.format(nodes=NODES,
ticks=N)``."""


def one_error_line(stderr: str) -> str:
    """The single ``error: ...`` line a refused command printed (no traceback)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]
