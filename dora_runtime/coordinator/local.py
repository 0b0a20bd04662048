"""``dora up`` / ``dora destroy``: a coordinator and a local daemon as background processes.

State lives in ``$DORA_HOME`` (default ``~/.local/state/dora``): ``coordinator.json`` (pid, url,
written by the coordinator once it listens), ``coordinator.sqlite``, ``daemon-local.json`` (pid),
and the processes' logs (``coordinator.log``, ``daemon-local.log``, ``daemons/<id>/logs/``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dora_runtime._ws_protocol import CoordinatorError, dora_home
from dora_runtime.coordinator.client import CoordinatorClient, pid_alive, read_info
from dora_runtime.coordinator.placement import DEFAULT_MACHINE
from dora_runtime.coordinator.server import LAST_PORT_FILE

_START_TIMEOUT_S = 15.0


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dora_cli.main", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the terminal that ran `dora up`
        )


def _wait(predicate: Any, timeout_s: float, proc: subprocess.Popen[bytes], what: str, log: Path):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise CoordinatorError(
                f"{what} exited with status {proc.returncode}: " + " / ".join(tail)
            )
        if time.monotonic() > deadline:
            raise CoordinatorError(f"{what} did not come up within {timeout_s:g} s; see {log}")
        time.sleep(0.05)


def up(
    port: int | None = None, home: Path | None = None, machine_id: str = DEFAULT_MACHINE
) -> list[str]:
    """Start the coordinator and a local daemon unless already running; returns what it did.
    ``port`` None: the port the last coordinator listened on (its daemons may be retrying it),
    else any free one; 0: any free port."""
    home = home or dora_home()
    home.mkdir(parents=True, exist_ok=True)
    said: list[str] = []
    info = read_info(home)
    if info is not None and pid_alive(info["pid"]):
        said.append(f"dora is already running: coordinator at {info['url']} (pid {info['pid']})")
    else:
        if info is not None:
            (home / "coordinator.json").unlink(missing_ok=True)
            if port is None:
                said.append(
                    f"the previous coordinator (pid {info['pid']}) died; starting a new one on "
                    "its port so its daemons reconnect"
                )
                port = int(info.get("port", 0))
        elif port is None and (last := _last_port(home)):
            said.append(
                f"starting the coordinator on port {last}, where the last one listened, so "
                "daemons still running reconnect"
            )
            port = last
        log = home / "coordinator.log"
        args = ["coordinator", "--port", str(port or 0), "--state-dir", str(home)]
        proc = _spawn(args, log)
        info = _wait(lambda: read_info(home), _START_TIMEOUT_S, proc, "the coordinator", log)
        said.append(f"coordinator listening on {info['url']} (pid {info['pid']})")
    daemon_file = home / f"daemon-{machine_id}.json"
    dinfo = _read(daemon_file)
    if dinfo is not None and pid_alive(dinfo["pid"]):
        said.append(f"daemon `{machine_id}` already running (pid {dinfo['pid']})")
        return said
    log = home / f"daemon-{machine_id}.log"
    args = ["daemon", "--coordinator", info["url"], "--machine-id", machine_id]
    proc = _spawn([*args, "--state-dir", str(home / "daemons" / machine_id)], log)
    daemon_file.write_text(json.dumps({"pid": proc.pid}))

    def registered() -> bool:
        try:
            with CoordinatorClient(info["url"]) as c:
                daemons = c.request({"type": "daemons"})["daemons"]
        except CoordinatorError:
            return False
        return any(d["machine_id"] == machine_id and d["connected"] for d in daemons)

    _wait(registered, _START_TIMEOUT_S, proc, f"daemon `{machine_id}`", log)
    said.append(f"daemon `{machine_id}` connected (pid {proc.pid})")
    return said


def request_destroy(url: str, grace_s: float | None) -> list[str]:
    """Ask the coordinator at ``url`` to stop every dataflow, its daemons and itself; returns
    what it did (``stopped dataflow X``, ``warning: ...`` lines)."""
    with CoordinatorClient(url) as c:
        answer = c.request({"type": "destroy", "grace_s": grace_s}, timeout_s=120)
    return [f"stopped dataflow {name}" for name in answer["stopped"]] + [
        f"warning: {e}" for e in answer["errors"]
    ]


def destroy(home: Path | None = None, grace_s: float | None = None) -> list[str]:
    """Stop every dataflow, the daemons and the coordinator; returns what it did."""
    home = home or dora_home()
    info = read_info(home)
    said: list[str] = []
    pids = [d["pid"] for f in home.glob("daemon-*.json") if (d := _read(f))]
    if info is None or not pid_alive(info["pid"]):
        said.append("no coordinator is running")
    else:
        said += request_destroy(info["url"], grace_s)
        pids.append(info["pid"])
    _wait_exit(pids, 2.0)
    for pid in pids:  # a daemon not connected (retrying a restarted coordinator): tell it here
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    _wait_exit(pids, 10.0)
    for pid in pids:
        if pid_alive(pid):
            said.append(f"process {pid} did not exit; killing it")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for f in [*home.glob("daemon-*.json"), home / "coordinator.json", home / LAST_PORT_FILE]:
        f.unlink(missing_ok=True)
    said.append("dora is down")
    return said


def _wait_exit(pids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _last_port(home: Path) -> int:
    """The port the last coordinator with state in ``home`` listened on, 0 if unknown."""
    try:
        return int((home / LAST_PORT_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return 0


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
