"""``dora replay`` on a three-node chain (sensor -> scale -> total): a live node that dies before
it ever connects, and a recording replayed from another checkout of its dataflow."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from _cli import run_dora
from _replay_nodes import SCALE, SENSOR, SENSOR_SCALE, record_project

import dora_replay

REPO = Path(__file__).resolve().parents[2]

TOTAL = """
import pyarrow as pa
from dora import Node
node = Node()
total = 0.0
for event in node:
    if event["type"] == "INPUT":
        total += sum(event["value"].to_pylist())
        node.send_output("sum", pa.array([total]))
"""

DATAFLOW = (
    SENSOR_SCALE
    + """  - id: total
    path: nodes/total.py
    inputs:
      scaled: scale/scaled
    outputs: [sum]
"""
)

# dies before it ever calls Node(): the daemon never hears from it
EARLY_EXIT = """
import sys
print("early: no calibration file", file=sys.stderr, flush=True)
sys.exit(3)
"""

pytestmark = pytest.mark.timeout(120)


def _dora(*args: str, cwd: Path, timeout: float = 60):
    return run_dora(*args, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, guarded) -> Path:
    """A 1 s recording of the chain, in ``proj/golden/run.dora`` beside ``proj/flow/``."""
    proj = tmp_path_factory.mktemp("chain") / "proj"
    with guarded():
        return record_project(proj, {"sensor": SENSOR, "scale": SCALE, "total": TOTAL}, DATAFLOW)


def test_live_node_dying_before_it_connects_ends_the_replay(chain: Path, tmp_path: Path) -> None:
    """Nodes that registered after it died (total, the capture tap) used to wait for its
    outputs forever: the replay hung, or with ``timeout_s`` took that plus 35 s of grace."""
    early = tmp_path / "early.py"
    early.write_text(EARLY_EXIT)
    t0 = time.monotonic()
    result = dora_replay.replay(
        chain, speed=0, replace={"scale": str(early)}, timeout_s=10, log_dir=tmp_path / "l"
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 8, f"took {elapsed:.1f} s"
    assert not result.ok and not result.timed_out
    assert set(result.failures) == {"scale"}, result.failures
    assert result.failures["scale"].startswith("exit 3; last log lines:")
    assert "early: no calibration file" in result.failures["scale"]
    assert "FAILED: node `scale` exit 3" in result.report()

    t0 = time.monotonic()
    r = _dora(
        "replay",
        str(chain),
        "--speed",
        "0",
        "--replace",
        f"scale={early}",
        "--assert",
        "-q",
        "--log-dir",
        str(tmp_path / "l2"),
        cwd=tmp_path,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert time.monotonic() - t0 < 15
    assert "FAILED: node `scale` exit 3; last log lines:" in r.stdout
    assert "early: no calibration file" in r.stdout


def _as_recorded_elsewhere(src: Path, dst: Path, dataflow_path: str) -> None:
    """A copy of ``src`` whose metadata says it was recorded from ``dataflow_path``."""
    with dora_replay.open(src) as rec:
        meta = dict(rec.metadata, dataflow_path=dataflow_path)
        with dora_replay.open_writer(dst, rec.dataflow_yaml, meta) as w:
            for m in rec.iter_messages():
                w.write_message(m)


def test_recording_from_another_checkout_finds_its_dataflow(chain: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(chain.parent.parent / "flow", clone / "flow")
    (clone / "golden").mkdir()
    golden = clone / "golden" / "run.dora"
    gone = "/nonexistent/ci-runner/work/proj/flow/dataflow.yml"
    _as_recorded_elsewhere(chain, golden, gone)
    assert dora_replay.find_dataflow(golden) is not None  # from the recording's folders

    r = _dora("replay", "golden/run.dora", "--speed", "0", "--assert", "-q", cwd=clone)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"note: recorded from {gone}, not found here; using flow/dataflow.yml" in r.stdout
    assert (clone / "flow" / "out").is_dir()  # node logs beside the dataflow used

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = Path.cwd()
    os.chdir(elsewhere)  # not below the clone: found from the recording's folders
    try:
        result = dora_replay.replay(golden, speed=0, log_dir=tmp_path / "l")
    finally:
        os.chdir(cwd)
    assert result.ok, result.report()
    assert result.notes == [
        f"recorded from {gone}, not found here; using {clone / 'flow' / 'dataflow.yml'}"
    ]
