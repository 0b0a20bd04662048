"""A node published for dora-rs runs unmodified on dora-py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import DoraRunner

DORA_ECHO = "dora-echo==0.5.0"


@pytest.fixture(scope="module")
def echo_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dora-echo`` installed with pip into its own directory (its console script in ``bin/``).

    ``--no-deps``: its ``from dora import Node`` must find dora-py, not dora-rs.
    """
    site = tmp_path_factory.mktemp("echo-site")
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--disable-pip-version-check",
                "--target",
                str(site),
                DORA_ECHO,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip install {DORA_ECHO} timed out (no network?)")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"cannot pip install {DORA_ECHO} (no network?): {last}")
    assert (site / "bin" / "dora-echo").exists()
    return site


@pytest.mark.timeout(150)
def test_published_dora_echo_runs_unmodified(dora: DoraRunner, echo_site: Path) -> None:
    dora.env["PATH"] = f"{echo_site / 'bin'}{os.pathsep}{os.environ['PATH']}"
    r = dora.run(
        f"""
nodes:
  - id: src
    path: NODES/send_seq.py
    outputs: [data]
    env: {{COUNT: 20, LARGE_EVERY: 5, OUTPUT: data}}
  - id: echo
    path: dora-echo
    args: --name echo
    env:
      PYTHONPATH: {echo_site}
    inputs:
      data: {{source: src/data, queue_size: 100}}
    outputs: [data]
  - id: sink
    path: NODES/collect.py
    inputs:
      echoed: {{source: echo/data, queue_size: 100}}
"""
    )
    assert r.returncode == 0, r.output
    events = r.result("collect")["events"]
    inputs = [e for e in events if e[0] == "INPUT"]
    assert [e[2] for e in inputs] == list(range(20))
    assert [e[4] for e in inputs] == [{"i": i} for i in range(20)]  # metadata passed back
    assert events[-2][:2] == ["INPUT_CLOSED", "echoed"]
    assert events[-1][:2] == ["STOP", "ALL_INPUTS_CLOSED"]
