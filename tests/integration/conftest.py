"""Run real dataflows with ``dora run`` in a subprocess.

Dataflow files are written into the test's ``tmp_path``; ``NODES/`` in them stands for the
directory of test node scripts (``tests/integration/nodes``). Nodes write their findings as JSON
into ``RESULT_DIR`` (see ``nodes/_util.py``); the test reads them back with ``result(name)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

NODES = Path(__file__).resolve().parent / "nodes"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    log_dir: Path
    elapsed_s: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def result(self, name: str) -> Any:
        path = self.workdir / "results" / f"{name}.json"
        assert path.exists(), f"node result {path.name} missing; dora run said:\n{self.output}"
        return json.loads(path.read_text(encoding="utf-8"))

    def log(self, node_id: str) -> str:
        return (self.log_dir / f"log_{node_id}.txt").read_text(encoding="utf-8")

    def lines_of(self, node_id: str) -> list[str]:
        """Lines ``dora run`` printed for ``node_id``, without the ``id |`` prefix."""
        out = []
        for line in self.stdout.splitlines():
            head, sep, rest = line.partition(" | ")
            if sep and head.strip() == node_id:
                out.append(rest)
        return out


class DoraRunner:
    """Writes dataflows into a work directory and runs them with ``dora run``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.results = workdir / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.log_dir = workdir / "logs"
        self.env: dict[str, str] = {}
        self._procs: list[subprocess.Popen[str]] = []

    def write(self, yaml_text: str, name: str = "dataflow.yml") -> Path:
        path = self.workdir / name
        path.write_text(yaml_text.replace("NODES/", f"{NODES}/"), encoding="utf-8")
        return path

    def command(self, dataflow: Path, *args: str) -> list[str]:
        return [sys.executable, "-m", "dora_cli.main", "run", str(dataflow), *args]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["RESULT_DIR"] = str(self.results)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.env)
        return env

    def start(self, yaml_text: str, *args: str, log_dir: bool = True) -> subprocess.Popen[str]:
        """Start ``dora run`` in its own session; finish it with ``wait``."""
        dataflow = self.write(yaml_text)
        extra = ["--log-dir", str(self.log_dir)] if log_dir else []
        proc = subprocess.Popen(
            self.command(dataflow, *extra, *args),
            cwd=self.workdir,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        proc.started_at = time.monotonic()  # type: ignore[attr-defined]
        self._procs.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen[str], timeout: float = 30.0) -> RunResult:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_session(proc)
            stdout, stderr = proc.communicate()
            pytest.fail(f"dora run did not finish within {timeout} s:\n{stdout}\n{stderr}")
        return RunResult(
            returncode=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            workdir=self.workdir,
            log_dir=self.log_dir,
            elapsed_s=time.monotonic() - proc.started_at,  # type: ignore[attr-defined]
        )

    def run(self, yaml_text: str, *args: str, timeout: float = 30.0) -> RunResult:
        return self.wait(self.start(yaml_text, *args), timeout)

    def wait_for_result(self, name: str, timeout_s: float = 15.0) -> Any:
        """Poll until a node saved ``name``; for tests that act on a running dataflow."""
        path = self.results / f"{name}.json"
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"no result {name!r} within {timeout_s} s")
            time.sleep(0.02)
        return json.loads(path.read_text(encoding="utf-8"))

    def wait_for_file(self, name: str, timeout_s: float = 15.0) -> None:
        """Poll until a node touched ``RESULT_DIR/name``."""
        path = self.results / name
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"no file {name!r} from the nodes within {timeout_s} s")
            time.sleep(0.02)

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                _kill_session(proc)
                proc.communicate()


def _kill_session(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def dora(tmp_path: Path):
    runner = DoraRunner(tmp_path)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def module_dora(tmp_path_factory: pytest.TempPathFactory, guarded):
    """A runner shared by the tests of one module, for one dataflow checked by many tests."""
    runner = DoraRunner(tmp_path_factory.mktemp("dataflow"))
    with guarded():
        yield runner
        runner.close()
