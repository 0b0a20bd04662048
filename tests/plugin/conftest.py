"""Fixtures for the plugin tests: a recorded run of ``flow/`` (a three-node chain) and pytester
projects that replay it.

The recording is made once per session; each project gets its own copy (update tests rewrite
it) plus a copy of ``flow/`` for tests that record new goldens. Replays run the nodes of the
project's own copy of ``flow/``: the dataflow nearest to where the replay runs wins over the
path the recording names (``dora_replay.find_dataflow``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# Import the heavy modules once here: pytester's inline runs drop modules they imported, and
# numpy cannot be imported twice in one process.
import dora_replay.replay  # noqa: F401

FLOW = Path(__file__).resolve().parent / "flow"
RECORD_S = "1s"


def pytest_configure(config: pytest.Config) -> None:
    # `pytest_plugins` is only allowed in the top conftest; this loads pytester for these tests
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


def record(dataflow: Path, out: Path, stop_after: str = RECORD_S) -> Path:
    """``dora record DATAFLOW -o OUT --stop-after ...``, the way users make goldens."""
    proc = subprocess.run(
        [sys.executable, "-m", "dora_cli.main", "record", str(dataflow), "-o", str(out)]
        + ["--stop-after", stop_after, "--log-dir", str(out.parent / "record-logs")],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="session")
def flow_recording(tmp_path_factory: pytest.TempPathFactory, guarded) -> Path:
    """A recording of the flow, made once; its dataflow lives in the same session folder."""
    base = tmp_path_factory.mktemp("flow")
    shutil.copytree(FLOW, base / "flow")
    with guarded():
        return record(base / "flow" / "dataflow.yml", base / "run.dora")


class Project:
    """A pytester folder laid out like a user's project: ``flow/`` and ``golden/run.dora``."""

    def __init__(self, pytester: pytest.Pytester, recording: Path) -> None:
        self.pytester = pytester
        self.path = pytester.path
        shutil.copytree(recording.parent / "flow", self.path / "flow")
        (self.path / "golden").mkdir()
        self.golden = self.path / "golden" / "run.dora"
        shutil.copy(recording, self.golden)

    def pyproject(self, body: str) -> None:
        self.path.joinpath("pyproject.toml").write_text(textwrap.dedent(body))

    def scale_v2(self, factor: float) -> Path:
        """A changed ``scale`` node (another factor) to replace the recorded one."""
        src = (self.path / "flow" / "scale.py").read_text()
        path = self.path / "scale_v2.py"
        path.write_text(src.replace("else 3.0", f"else {factor!r}"))
        return path

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", *args)

    def run_subprocess(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


@pytest.fixture
def project(pytester: pytest.Pytester, flow_recording: Path) -> Project:
    return Project(pytester, flow_recording)


@pytest.fixture
def make_project(pytester: pytest.Pytester, flow_recording: Path) -> Callable[[], Project]:
    return lambda: Project(pytester, flow_recording)
