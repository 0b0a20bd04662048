"""The ``dora_dataflow`` fixture: a dataflow run by ``dora run`` in its own process group, so
teardown can always stop it, and kill it with every node it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

_STOP_GRACE_S = 10.0


class RunningDataflow:
    """A ``dora run`` (or ``dora record``) process. Output (every node's lines, prefixed with
    its id) goes to ``output_path``; read it with :attr:`output`."""

    def __init__(self, cmd: list[str], cwd: Path, output_path: Path) -> None:
        self.cmd = cmd
        self.output_path = output_path
        self._out = output_path.open("wb")
        self.process = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown reaches every node
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """Exit status of ``dora run``, ``None`` while it runs."""
        return self.process.poll()

    @property
    def output(self) -> str:
        """Everything printed so far."""
        self._out.flush()
        return self.output_path.read_text(errors="replace")

    def wait(self, timeout_s: float | None = 60.0) -> int:
        """Wait for the dataflow to end; returns its exit status.

        Raises ``TimeoutError`` (the dataflow keeps running; teardown stops it).
        """
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"dataflow `{' '.join(self.cmd[3:])}` still running after {timeout_s} s; "
                f"output so far:\n{_tail(self.output)}"
            ) from None

    def stop(self, grace_s: float = _STOP_GRACE_S) -> int:
        """Ctrl-C (STOP to every node), then kill the whole group after ``grace_s``."""
        if self.process.poll() is None:
            self._signal(signal.SIGINT)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the process group (nodes included) and reap ``dora run``."""
        self._signal(signal.SIGKILL)
        self.process.wait()
        self._out.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class DataflowRunner:
    """Starts dataflows for one test and stops every one of them at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: list[RunningDataflow] = []

    def start(
        self,
        dataflow: str | os.PathLike[str],
        *,
        stop_after: str | float | None = None,
        record: str | os.PathLike[str] | None = None,
        args: list[str] | None = None,
    ) -> RunningDataflow:
        """Run ``dataflow``; with ``record``, as ``dora record -o RECORD`` (every output).

        ``stop_after``: seconds or a duration such as ``"2s"``; ``args``: more CLI options.
        """
        path = Path(dataflow).resolve()
        n = len(self.running)
        verb = (
            ["record", str(path), "-o", str(Path(record).resolve())]
            if record
            else ["run", str(path)]
        )
        cmd = [sys.executable, "-m", "dora_cli.main", *verb]
        cmd += ["--log-dir", str(self.tmp_path / f"dataflow{n}-logs")]
        if stop_after is not None:
            cmd += ["--stop-after", str(stop_after)]
        cmd += list(args or [])
        flow = RunningDataflow(cmd, path.parent, self.tmp_path / f"dataflow{n}.out")
        self.running.append(flow)
        return flow

    def teardown(self) -> None:
        for flow in self.running:
            flow.stop()


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])
