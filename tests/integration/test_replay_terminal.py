"""``dora replay --step`` as a user drives it: the prompt waits for a person who takes longer than
the status line's period, and nothing but the prompts may show up while it waits.

A real ``dora replay`` process; its standard input is a pipe the test types into only after each
prompt has waited longer than the periodic status line's interval (2 s).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _cli import REPO, run_dora
from _replay_nodes import SCALE, SENSOR, SENSOR_SCALE, record_project

DATAFLOW = SENSOR_SCALE

STATUS = re.compile(r"^replay +\d+\.\d\d/\d+\.\d\d s, \d+/\d+ messages sent")
WAIT_S = 2.6  # longer than the plain status line's period (2 s)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, guarded) -> Path:
    proj = tmp_path_factory.mktemp("terminal") / "proj"
    with guarded():
        record_project(proj, {"sensor": SENSOR, "scale": SCALE}, DATAFLOW)
    return proj


class _Session:
    """A ``dora replay`` process whose output lines are collected as they come."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dora_cli.main", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def prompts(self) -> int:
        return sum(line.startswith("next: ") for line in self.lines)

    def wait_for_prompt(self, n: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.prompts() < n:
            assert self.proc.poll() is None, "\n".join(self.lines)
            assert time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.05)

    def type(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 60.0) -> int:
        try:
            rc = self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=5)
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()
        return rc


def test_step_prompt_is_not_pushed_away_by_the_status_line(project: Path, tmp_path: Path) -> None:
    """Enter, Enter, then q, each typed after the prompt waited longer than the status line's
    period: no status line between the prompts, one after the last (the final status)."""
    session = _Session(
        ["replay", "golden/run.dora", "--step", "-q", "--log-dir", str(tmp_path / "logs")],
        cwd=project,
    )
    try:
        for n, answer in enumerate(["\n", "\n", "q\n"], start=1):
            session.wait_for_prompt(n)
            time.sleep(WAIT_S)
            session.type(answer)
    finally:
        rc = session.finish()
    out = "\n".join(session.lines)
    assert rc == 0, out
    assert session.prompts() == 3, out
    prompts = [i for i, line in enumerate(session.lines) if line.startswith("next: ")]
    status = [i for i, line in enumerate(session.lines) if STATUS.match(line)]
    assert all(i > prompts[-1] for i in status), out  # nothing while a prompt waits
    assert len(status) == 1, out  # the final status, once
    assert "stopped by user after 2 message(s)" in out
    between = session.lines[prompts[0] : prompts[-1] + 2]
    assert all(line.startswith(("next: ", "  ")) for line in between), between
    # the keys are typed then Enter: the prompt says so
    assert "  Enter: send · c+Enter: continue without stepping · q+Enter: stop" in between


def _slow_replay(project: Path, tmp_path: Path, output: int, *extra: str) -> subprocess.Popen:
    """``dora replay golden/run.dora --speed 0.1`` (10 s for the 1 s recording) in a session of
    its own, stdout and stderr to ``output`` (text when piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dora_cli.main", "replay", "golden/run.dora", "--speed", "0.1"]
        + ["--log-dir", str(tmp_path / "logs"), *extra],
        cwd=project,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=output,
        stderr=output,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize("quiet", [False, True])
def test_replay_stops_quietly_when_nobody_reads_its_output(
    project: Path, tmp_path: Path, quiet: bool
) -> None:
    """``dora replay ... | head -1``: the first write after the reader left (a status line, a
    node line) stops the replay as Ctrl-C would, with no traceback."""
    proc = _slow_replay(project, tmp_path, subprocess.PIPE, *(["-q"] if quiet else []))
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline()  # the first status line
        proc.stdout.close()
        started = time.monotonic()
        proc.wait(timeout=30)  # a 1 s recording at 0.1x would take 10 s
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert time.monotonic() - started < 8, "it ran to the end instead of stopping"


def test_a_replay_killed_with_sigkill_leaves_nothing_after_the_next_replay(
    project: Path, tmp_path: Path
) -> None:
    """CI jobs get killed on timeout: the replay's own folder (control socket, capture) goes
    with the daemon's run folder at the next dora command, not never."""
    tmp = Path(os.environ["TMPDIR"])  # this test's own (conftest); tempfile caches another
    before = set(tmp.glob("dora-*"))
    proc = _slow_replay(project, tmp_path, subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not any(p.name.startswith("dora-replay-") for p in set(tmp.glob("dora-*")) - before):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # the nodes are up
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    left = set(tmp.glob("dora-*")) - before
    assert any(p.name.startswith("dora-replay-") for p in left)
    r = run_dora("replay", "golden/run.dora", "--speed", "0", "-q", cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (left & set(tmp.glob("dora-*"))), "still there after the next replay"
