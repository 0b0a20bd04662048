"""``pytest --dora-replay``: recordings as per-channel tests, failures, tolerances, settings,
golden update, missing goldens, plots, xdist. Every run replays a real recording with real
node processes (see ``conftest.py``)."""

from __future__ import annotations

import re

import pytest

import dora_replay

CHANNELS = ["golden/run.dora::scale/scaled", "golden/run.dora::total/sum"]


def test_options_are_one_group(project) -> None:
    result = project.run("--help")
    text = result.stdout.str()
    group = text[text.index("dora-py record & replay") :]
    for option in (
        "--dora-replay=PATH",
        "--dora-update-golden",
        "--dora-speed=X",
        "--dora-report=DIR",
    ):
        assert option in group


def test_ordinary_run_is_untouched(project) -> None:
    project.pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    result = project.run("-v")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "dora:" not in out and "- dora -" not in out  # no header line, no summary section


@pytest.mark.slow
def test_recording_passes_one_item_per_compared_channel(project) -> None:
    project.pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    result = project.run("--dora-replay", "golden/run.dora", "-v")
    result.assert_outcomes(passed=2)  # only the recording: no test paths were given
    out = result.stdout.str()
    for nodeid in CHANNELS:
        assert f"{nodeid} PASSED" in out
    assert "dora: 1 recording(s), speed 0 (lockstep)" in out
    assert "source/value" not in out  # the sensor is replayed, not compared


@pytest.mark.slow
def test_folders_globs_and_test_paths_combine(project) -> None:
    (project.path / "golden" / "more").mkdir()
    (project.path / "golden" / "more" / "b.dora").write_bytes(project.golden.read_bytes())
    project.pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    result = project.run(
        "test_plain.py", "--dora-replay", "golden/", "--dora-replay", "golden/*.dora"
    )
    result.assert_outcomes(passed=5)  # the test file + 2 recordings (run.dora once) x 2 channels


@pytest.mark.slow
def test_k_selects_a_channel(project) -> None:
    result = project.run("--dora-replay", "golden/", "-k", "scale/scaled", "-v")
    result.assert_outcomes(passed=1, deselected=1)
    assert f"{CHANNELS[0]} PASSED" in result.stdout.str()


@pytest.mark.slow
def test_failure_names_channel_message_values_and_commands(project) -> None:
    project.scale_v2(3.5)
    project.pyproject(
        """
        [tool.pytest_dora.replace]
        scale = "scale_v2.py"
        """
    )
    result = project.run("--dora-replay", "golden/run.dora", "-k", "scaled")
    result.assert_outcomes(failed=1, deselected=1)
    out = result.stdout.str()
    section = out[out.index("_ scale/scaled in golden/run.dora _") :]
    lines = section.splitlines()
    assert re.match(r"scale/scaled: \d+ of \d+ message\(s\) differ, 0 missing, 0 extra", lines[1])
    assert "first difference: message #1 (cause source/value#1): value differs" in section
    assert "expected: [3.0, 1.5]" in section
    assert "got:      [3.5, 1.75]" in section
    assert "in this message: max abs error 0.5" in section
    assert (
        "reproduce: dora replay golden/run.dora --speed 0 --replace scale=scale_v2.py --assert"
        in section
    )
    fix = "accept the live outputs as the new golden: pytest --dora-replay golden/run.dora --dora-update-golden"
    assert fix in section
    assert "Traceback" not in section and "_session.py" not in section
    assert f"FAILED {CHANNELS[0]} - scale/scaled: " in out  # the short summary says what


@pytest.mark.slow
def test_tolerances_from_pyproject(project) -> None:
    project.scale_v2(3.003)  # 0.1 % off
    project.pyproject(
        """
        [tool.pytest_dora]
        speed = 0
        ignore_metadata = ["timestamp"]

        [tool.pytest_dora.replace]
        scale = "scale_v2.py"

        [tool.pytest_dora.tolerances."scale/scaled"]
        rtol = 1e-2

        [tool.pytest_dora.tolerances.default]
        rtol = 1e-4
        """
    )
    result = project.run("--dora-replay", "golden/", "-v")
    result.assert_outcomes(passed=1, failed=1)  # total/sum keeps the strict default
    out = result.stdout.str()
    assert f"{CHANNELS[0]} PASSED" in out
    assert "tolerance: atol=0 rtol=0.0001 ignore_metadata=timestamp" in out
    assert "--tolerance scale/scaled:ignore_metadata=timestamp,rtol=0.01 --tolerance" in out


@pytest.mark.slow
def test_update_golden_rewrites_outputs_only_and_then_passes(project) -> None:
    with dora_replay.open(project.golden) as rec:
        inputs_before = rec.to_table("source/value").column("data").to_pylist()
    project.scale_v2(4.0)
    project.pyproject('[tool.pytest_dora.replace]\nscale = "scale_v2.py"\n')
    project.run("--dora-replay", "golden/").assert_outcomes(failed=2)

    result = project.run("--dora-replay", "golden/", "--dora-update-golden")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "dora: 1 golden recording(s) updated:" in out
    assert re.search(
        r"golden/run\.dora: rewrote scale/scaled \(\d+ of \d+ message\(s\) changed", out
    )
    assert "total/sum (" in out

    project.run("--dora-replay", "golden/").assert_outcomes(passed=2)  # the new golden holds
    with dora_replay.open(project.golden) as rec:
        assert rec.to_table("source/value").column("data").to_pylist() == inputs_before
        scaled = [m.data.to_pylist() for m in rec.iter_messages(["scale/scaled"])]
    assert scaled[1] == [4.0, 2.0]


@pytest.mark.slow
def test_update_golden_without_difference_rewrites_nothing(project) -> None:
    before = project.golden.read_bytes()
    result = project.run("--dora-replay", "golden/", "--dora-update-golden")
    result.assert_outcomes(passed=2)
    assert "already match the live run; nothing rewritten" in result.stdout.str()
    assert project.golden.read_bytes() == before


def test_missing_golden_gives_the_command_to_create_it(project) -> None:
    result = project.run("--dora-replay", "golden/new.dora")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "golden recording golden/new.dora does not exist." in out
    assert "create it: dora record '<dataflow.yml>' -o golden/new.dora --stop-after 3s" in out
    assert "set `dataflow = " in out


@pytest.mark.parametrize(
    ("arg", "why"),
    [
        ("nonexist/", "no such file or folder; a golden recording's name ends in .dora"),
        ("nonexist", "no such file or folder; a golden recording's name ends in .dora"),
        (
            "golden/run1.dora::planner/target",
            "--dora-replay takes recordings, not test items; select a channel with "
            "`pytest golden/run1.dora::planner/target` (or -k)",
        ),
    ],
)
def test_a_missing_path_that_is_no_golden_name_is_a_usage_error(project, arg: str, why: str):
    """Only a missing ``*.dora`` path is a golden to create; ``--dora-update-golden`` used to
    record ``nonexist/`` as a file named ``nonexist`` that no later run could collect."""
    result = project.run("--dora-replay", arg, "--dora-update-golden")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--dora-replay {arg}: {why}" in result.stderr.str()
    assert not (project.pytester.path / "nonexist").exists()


@pytest.mark.slow
def test_missing_golden_is_made_by_update(project) -> None:
    project.pyproject(
        """
        [tool.pytest_dora]
        dataflow = "flow/dataflow.yml"
        record_duration = "1s"
        """
    )
    result = project.run("--dora-replay", "golden/new.dora")
    result.assert_outcomes(failed=1)
    assert "dora: 0 recording(s) + 1 missing, speed 0" in result.stdout.str()
    command = "dora record flow/dataflow.yml -o golden/new.dora --stop-after 1s"
    assert f"create it: {command}" in result.stdout.str()
    assert "or let pytest make it: pytest --dora-replay golden/new.dora --dora-update-golden" in (
        result.stdout.str()
    )

    result = project.run("--dora-replay", "golden/new.dora", "--dora-update-golden")
    result.assert_outcomes(passed=1)
    assert "dora: 0 recording(s) + 1 golden(s) to create, speed 0" in result.stdout.str()
    assert f"golden/new.dora: created with `{command}`" in result.stdout.str()
    assert (project.path / "golden" / "new.dora").exists()
    project.run("--dora-replay", "golden/new.dora", "-v").assert_outcomes(passed=2)


@pytest.mark.slow
def test_report_writes_a_plot_per_failing_channel(project) -> None:
    project.scale_v2(3.5)
    project.pyproject('[tool.pytest_dora.replace]\nscale = "scale_v2.py"\n')
    result = project.run("--dora-replay", "golden/", "--dora-report", "plots")
    result.assert_outcomes(failed=2)
    pages = sorted(p.name for p in (project.path / "plots").iterdir())
    assert pages == ["run__scale__scaled.html", "run__total__sum.html"]
    page = (project.path / "plots" / "run__scale__scaled.html").read_text()
    assert page.count("<svg") == 2 and "<polyline" in page  # elements [0] and [1]
    assert "first difference: message #1" in page
    out = result.stdout.str()
    assert "dora: plots of failing channels in" in out
    assert "plot: " in out and "run__total__sum.html" in out


CRASH_ON_INPUT = """\
import sys
from dora import Node

for event in Node():
    if event["type"] == "INPUT":
        print("boom: bad calibration", flush=True)
        sys.exit(3)
"""


@pytest.mark.slow
def test_crashing_node_fails_its_items_with_its_log(project) -> None:
    (project.path / "crash.py").write_text(CRASH_ON_INPUT)
    project.pyproject(
        """
        [tool.pytest_dora]
        timeout_s = 60

        [tool.pytest_dora.replace]
        scale = "crash.py"
        """
    )
    result = project.run("--dora-replay", "golden/", "-k", "scaled")
    result.assert_outcomes(failed=1, deselected=1)
    out = result.stdout.str()
    assert "golden/run.dora: replay failed" in out
    assert "node `scale` exit 3" in out and "boom: bad calibration" in out
    assert "node logs: " in out


def test_bad_setting_is_a_usage_error(project) -> None:
    project.pyproject("[tool.pytest_dora]\nsped = 0\n")
    result = project.run("--dora-replay", "golden/")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown key `sped`; did you mean `speed`?" in result.stderr.str()


@pytest.mark.slow
def test_xdist_two_workers(project) -> None:
    (project.path / "golden" / "b.dora").write_bytes(project.golden.read_bytes())
    result = project.run_subprocess("--dora-replay", "golden/", "-n", "2", "-v")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert "[gw0]" in out and "[gw1]" in out
    assert "PASSED golden/b.dora::total/sum" in out


@pytest.mark.slow
def test_xdist_update_reports_changes_from_workers(project) -> None:
    project.scale_v2(4.0)
    project.pyproject('[tool.pytest_dora.replace]\nscale = "scale_v2.py"\n')
    result = project.run_subprocess("--dora-replay", "golden/", "-n", "2", "--dora-update-golden")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert out.count("golden/run.dora: rewrote") == 1, out  # one rewrite, under the file lock
    project.run("--dora-replay", "golden/").assert_outcomes(passed=2)


@pytest.mark.slow
def test_a_recording_given_directly_and_the_marker(project) -> None:
    project.run("golden/run.dora::total/sum", "-v").assert_outcomes(passed=1)
    result = project.run("--dora-replay", "golden/", "-m", "not dora")
    result.assert_outcomes(deselected=2)


def _move_golden(project, name: str, dataflow_path: str) -> None:
    """Replace the project's golden with ``golden/<name>``, the same messages recorded (as its
    metadata says) from ``dataflow_path``."""
    with dora_replay.open(project.golden) as rec:
        meta = dict(rec.metadata, dataflow_path=dataflow_path)
        with dora_replay.open_writer(project.path / "golden" / name, rec.dataflow_yaml, meta) as w:
            for m in rec.iter_messages():
                w.write_message(m)
    project.golden.unlink()


@pytest.mark.slow
def test_golden_from_another_checkout(project) -> None:
    """The recorded dataflow path does not exist here (CI): the replay finds flow/dataflow.yml
    in the project by the tail of that path."""
    _move_golden(project, "moved.dora", "/gone/checkout/flow/dataflow.yml")
    project.run("--dora-replay", "golden/moved.dora", "-v").assert_outcomes(passed=2)


def test_a_configured_dataflow_that_is_missing_is_named_with_where_it_was_set(project) -> None:
    """The recorded dataflow is found nowhere, so the one set in [tool.pytest_dora] is used;
    when that one is missing too, the failure says where the path came from."""
    _move_golden(project, "lost.dora", "/gone/checkout/elsewhere/nowhere.yml")
    project.pyproject('[tool.pytest_dora]\ndataflow = "robot/dataflow.yml"\n')
    result = project.run("--dora-replay", "golden/lost.dora")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "golden/lost.dora: replay failed: " in out and "robot/dataflow.yml" in out
    assert "Error: " not in out.split("replay failed: ", 1)[1].splitlines()[0]  # no class name
    assert "set by `dataflow = ...` in [tool.pytest_dora] of " in out and "pyproject.toml" in out
