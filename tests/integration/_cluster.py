"""Real coordinator and daemon processes for the cluster tests.

Every process runs in its own session with output in a file under the test's ``tmp_path``;
``Cluster.close`` asks daemons to stop (SIGTERM: they stop their dataflows and clean up), kills
what is left, and removes what a killed daemon left in ``$TMPDIR`` and ``/dev/shm``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NODES = Path(__file__).resolve().parent / "nodes"
REPO = Path(__file__).resolve().parents[2]


# A two-node dataflow the cluster tests start: a timer-driven talker and a collecting sink.
TALKER = """
nodes:
  - id: talker
    path: NODES/cluster_talker.py
    inputs:
      tick: dora/timer/millis/50
    outputs: [out]
  - id: sink
    path: NODES/collect.py
    inputs:
      x: talker/out
"""


def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


class Cluster:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.results = tmp_path / "results"
        self.results.mkdir()
        self.env = dict(os.environ)
        self.env.update(
            DORA_HOME=str(self.home),
            RESULT_DIR=str(self.results),
            PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        self.env.pop("DORA_COORDINATOR", None)
        self.env.pop("DORA_TOKEN", None)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.url: str | None = None

    # -- processes -------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], prefix: list[str] | None = None, **env: str):
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "dora_cli.main", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env, **env},
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")

    def coordinator(self, port: int = 0, host: str = "127.0.0.1", **env: str) -> str:
        info = self.home / "coordinator.json"
        args = ["coordinator", "--host", host, "--port", str(port), "--state-dir", str(self.home)]
        proc = self.spawn("coordinator", args, **env)

        def ready() -> dict[str, Any] | None:
            assert proc.poll() is None, f"coordinator exited:\n{self.log('coordinator')}"
            try:
                data = json.loads(info.read_text())
            except (FileNotFoundError, ValueError):
                return None
            return data if data.get("pid") == proc.pid else None

        self.url = wait_for(ready, 15, "the coordinator")["url"]
        return self.url

    def daemon(self, machine: str, *args: str, url: str | None = None, **kw: Any):
        state = self.dir / "daemons" / machine
        cmd = ["daemon", "--coordinator", url or self.url, "--machine-id", machine]
        return self.spawn(f"daemon-{machine}", [*cmd, "--state-dir", str(state), *args], **kw)

    def wait_daemons(self, *machines: str, timeout_s: float = 15) -> None:
        def connected() -> bool:
            rows = self.request({"type": "daemons"})["daemons"]
            up = {d["machine_id"] for d in rows if d["connected"]}
            return set(machines) <= up

        wait_for(connected, timeout_s, f"daemons {machines} to connect")

    def dora(self, *args: str, timeout: float = 60, check: bool = True, **env: str):
        """Run a ``dora`` CLI command; returns the CompletedProcess (text)."""
        e = {**self.env, **env}
        if self.url and "DORA_COORDINATOR" not in env:
            e["DORA_COORDINATOR"] = self.url
        res = subprocess.run(
            [sys.executable, "-m", "dora_cli.main", *args],
            env=e,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.dir,
        )
        if check:
            assert res.returncode == 0, f"dora {' '.join(args)}: {res.stdout}{res.stderr}"
        return res

    def request(self, msg: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        from dora_runtime.coordinator.client import CoordinatorClient

        with CoordinatorClient(self.url, token=token or "") as c:
            return c.request(msg)

    def dataflow(self, ref: str) -> dict[str, Any]:
        rows = self.request({"type": "list"})["dataflows"]
        match = [r for r in rows if ref in (r["name"], r["id"])]
        assert match, f"no dataflow {ref} in {rows}"
        return match[-1]

    def wait_status(self, ref: str, status: str, timeout_s: float = 20) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            try:
                row = self.dataflow(ref)
            except Exception:  # noqa: BLE001 - the coordinator may be restarting
                return None
            return row if row["status"] == status else None

        return wait_for(reached, timeout_s, f"dataflow {ref} to be {status}")

    def write(self, text: str, name: str = "dataflow.yml") -> Path:
        path = self.dir / name
        path.write_text(text.replace("NODES/", f"{NODES}/"), encoding="utf-8")
        return path

    def result(self, name: str) -> Any:
        path = self.results / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    # -- teardown --------------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            proc.wait(10)

    def close(self) -> None:
        from dora_runtime.daemon import clean_stale_runs

        daemons = [n for n in self.procs if n.startswith("daemon")]
        for name in daemons:
            if self.procs[name].poll() is None:
                self.kill(name, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name in daemons:
            try:
                self.procs[name].wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.kill(name, signal.SIGTERM if name == "coordinator" else signal.SIGKILL)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.kill(name)
        clean_stale_runs(os.environ.get("TMPDIR"))


def cluster_fixture(tmp_path: Path) -> Iterator[Cluster]:
    """Body of each test module's ``cluster`` fixture."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
