"""The fixtures: ``dora_replay``, ``dora_recording`` and ``dora_dataflow``, used the way a
project's own tests use them (pytester runs real replays and dataflows)."""

from __future__ import annotations

import json

import psutil
import pytest

REPLAY_TESTS = """
import pyarrow as pa
import pytest

from pytest_dora import GoldenMissing


def test_golden_matches(dora_replay):
    result = dora_replay("golden/run.dora")
    result.assert_matches()
    scaled = result.replayed["scale/scaled"]
    assert isinstance(scaled[1].data, pa.Array)
    assert scaled[1].data.to_pylist() == [3.0, 1.5]
    assert set(result.comparison.channels) == {"scale/scaled", "total/sum"}


def test_path_inside_golden_folder(dora_replay):
    assert dora_replay("run.dora").ok


def test_new_implementation_and_tolerances(dora_replay):
    result = dora_replay("golden/run.dora", replace={"scale": "scale_v2.py"})
    assert not result.ok
    with pytest.raises(AssertionError, match="scale/scaled") as e:
        result.assert_matches()
    assert "dora replay" in str(e.value)
    loose = {"default": {"rtol": 0.2}}
    assert dora_replay("golden/run.dora", replace={"scale": "scale_v2.py"}, tolerances=loose).ok


def test_recording_reader(dora_recording):
    rec = dora_recording("golden/run.dora")
    assert set(rec.channels) == {"source/value", "scale/scaled", "total/sum"}
    assert rec.to_table("scale/scaled").num_rows > 5


def test_missing_golden(dora_replay):
    with pytest.raises(GoldenMissing, match="create it: dora record"):
        dora_replay("golden/nope.dora")
"""


@pytest.mark.slow
def test_dora_replay_and_dora_recording_fixtures(project) -> None:
    project.scale_v2(3.3)
    project.pytester.makepyfile(test_golden=REPLAY_TESTS)
    result = project.run("-v")
    result.assert_outcomes(passed=5)


UPDATE_TEST = """
def test_v2_matches_golden(dora_replay):
    dora_replay("golden/run.dora", replace={"scale": "scale_v2.py"}).assert_matches()
"""


@pytest.mark.slow
def test_dora_replay_fixture_under_update_golden(project) -> None:
    project.scale_v2(4.0)
    project.pytester.makepyfile(test_update=UPDATE_TEST)
    project.run().assert_outcomes(failed=1)
    result = project.run("--dora-update-golden")
    result.assert_outcomes(passed=1)
    assert "golden/run.dora: rewrote scale/scaled" in result.stdout.str()
    project.run().assert_outcomes(passed=1)


DATAFLOW_TESTS = """
import json
import time

import psutil


def test_runs_until_stop_after(dora_dataflow):
    flow = dora_dataflow("flow/dataflow.yml", stop_after="1s")
    assert flow.wait(timeout_s=60) == 0
    assert "stopping dataflow" in flow.output


def test_records(dora_dataflow, tmp_path):
    out = tmp_path / "run.dora"
    flow = dora_dataflow("flow/dataflow.yml", stop_after="1s", record=out)
    assert flow.wait(timeout_s=60) == 0
    assert out.stat().st_size > 0


def test_left_running_is_torn_down(dora_dataflow):
    flow = dora_dataflow("flow/dataflow.yml")
    deadline = time.monotonic() + 30
    while len(psutil.Process(flow.pid).children(recursive=True)) < 3:
        assert time.monotonic() < deadline, flow.output
        time.sleep(0.05)
    procs = [flow.pid] + [p.pid for p in psutil.Process(flow.pid).children(recursive=True)]
    with open("pids.json", "w") as f:
        json.dump(procs, f)
    assert flow.returncode is None
"""


@pytest.mark.slow
def test_dora_dataflow_fixture_runs_records_and_always_tears_down(project) -> None:
    project.pytester.makepyfile(test_flows=DATAFLOW_TESTS)
    result = project.run("-v")
    result.assert_outcomes(passed=3)
    pids = json.loads((project.path / "pids.json").read_text())
    assert len(pids) >= 4  # dora run and its three nodes
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []


MARKER_TESTS = """
import pytest

pytestmark = pytest.mark.dora(replace={"scale": "scale_v2.py"})


def test_module_marker_replaces(dora_replay):
    result = dora_replay("golden/run.dora")
    assert result.comparison.channels["scale/scaled"].ok  # rtol 1e-2 configured
    assert not result.comparison.channels["total/sum"].ok
    assert "scale_v2.py" in result.command


@pytest.mark.dora(speed=2, tolerances={"scale/scaled": {"atol": 1e-9}})
def test_marker_tolerances_merge_with_config_and_fixture(dora_replay):
    result = dora_replay("golden/run.dora", tolerances={"total/sum": {"rtol": 0.2}})
    scaled = result.comparison.channels["scale/scaled"].tolerance
    assert (scaled.rtol, scaled.atol, scaled.ignore_metadata) == (1e-2, 1e-9, ("debug",))
    assert result.comparison.channels["total/sum"].tolerance.rtol == 0.2
    assert "--speed 2" in result.command
    result.assert_matches()


@pytest.mark.dora(tolerances={"scale/scaled": {"rtol": 0.2}})
def test_fixture_arguments_win(dora_replay):
    result = dora_replay("golden/run.dora", tolerances={"scale/scaled": {"rtol": 0.0}})
    assert result.comparison.channels["scale/scaled"].tolerance.rtol == 0.0
    assert not result.comparison.channels["scale/scaled"].ok
    assert dora_replay("golden/run.dora", replace={"scale": "flow/scale.py"}).ok


def test_configured_tolerances_stay_when_the_fixture_adds_a_channel(dora_replay):
    result = dora_replay("golden/run.dora", tolerances={"total/sum": {"rtol": 0.2}})
    assert result.comparison.channels["scale/scaled"].tolerance.rtol == 1e-2
    result.assert_matches()
"""


@pytest.mark.slow
def test_dora_marker_sets_the_fixture_defaults(project) -> None:
    project.scale_v2(3.003)  # 0.1 % off
    project.pyproject(
        """
        [tool.pytest_dora]
        ignore_metadata = ["debug"]

        [tool.pytest_dora.tolerances."scale/scaled"]
        rtol = 1e-2
        """
    )
    project.pytester.makepyfile(test_marked=MARKER_TESTS)
    result = project.run("-v", "--strict-markers")
    result.assert_outcomes(passed=4)


def test_dora_marker_is_registered(project) -> None:
    result = project.run("--markers")
    assert "@pytest.mark.dora(speed=None, replace=None, tolerances=None" in result.stdout.str()
