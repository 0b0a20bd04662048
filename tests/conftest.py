"""Hygiene for every test: no shared-memory segment and no process may outlive the test.

Attribution is positive, so tests running concurrently (other xdist workers, other sessions on the
same machine) never fail each other:

- processes: every test gets a fresh token in ``DORA_PYTEST_TOKEN``; everything it starts inherits
  it (``dora run``, its nodes, their grandchildren). After the test, any live process still carrying
  the token is an orphan: it is killed and the test fails.
- segments: every test gets its own ``TMPDIR``; the daemon creates its run directory
  (``dora-<id>-*``) there, so a watcher thread learns the id of each dataflow the test ran. After
  the test, a ``/dev/shm/dora-<id>-*`` segment of one of those dataflows is a leak, and so is a run
  directory that was not removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

TOKEN_VAR = "DORA_PYTEST_TOKEN"
SHM_DIR = Path("/dev/shm")
_RUN_DIR = re.compile(r"^dora-([0-9a-f]{12})-")
_WATCH_INTERVAL_S = 0.01
_SETTLE_S = 3.0

# Fix this process's own temp dir before any test points TMPDIR elsewhere (tempfile caches it).
tempfile.gettempdir()


def processes_with_token(token: str) -> list[psutil.Process]:
    """Live processes (not zombies) whose environment carries ``token``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TOKEN_VAR) == token:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def dataflow_segments(short_ids: set[str]) -> list[str]:
    """Names of ``/dev/shm`` segments belonging to the given dataflow ids."""
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if (m := _RUN_DIR.match(n)) and m.group(1) in short_ids)


class _RunDirWatcher:
    """Records the dataflow ids whose run directories appear in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ids: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="run-dir-watcher", daemon=True)
        self._thread.start()

    def _scan(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        for name in names:
            if m := _RUN_DIR.match(name):
                self.ids.add(m.group(1))
        return names

    def _watch(self) -> None:
        while not self._stop.wait(_WATCH_INTERVAL_S):
            self._scan()

    def stop(self) -> list[str]:
        """Stop watching; returns the run directories still present."""
        self._stop.set()
        self._thread.join()
        return [n for n in self._scan() if _RUN_DIR.match(n)]


def _wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@contextlib.contextmanager
def leak_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Give the block its own token and TMPDIR; fail if it leaves something behind."""
    token = uuid.uuid4().hex
    run_tmp = tmp_path_factory.mktemp("tmpdir")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_VAR, token)
        mp.setenv("TMPDIR", str(run_tmp))
        watcher = _RunDirWatcher(run_tmp)
        try:
            yield
        finally:
            problems = _leftovers(token, run_tmp, watcher)
    assert not problems, "left behind:\n" + "\n".join(problems)


def _leftovers(token: str, run_tmp: Path, watcher: _RunDirWatcher) -> list[str]:
    """Kill and remove what is left; returns a description of each leftover."""
    problems = []
    if not _wait_until(lambda: not processes_with_token(token), _SETTLE_S):
        for proc in processes_with_token(token):
            try:
                cmd = " ".join(proc.cmdline())
                proc.kill()
            except psutil.Error:
                cmd = "?"
            problems.append(f"orphan process {proc.pid}: {cmd}")
    # A daemon cleans up after its last node exited; give it a moment if the test did not wait.
    _wait_until(lambda: not [n for n in os.listdir(run_tmp) if _RUN_DIR.match(n)], _SETTLE_S)
    for name in watcher.stop():
        problems.append(f"run directory not removed: {run_tmp / name}")
    for name in dataflow_segments(watcher.ids):
        problems.append(f"shared-memory segment left behind: /dev/shm/{name}")
        try:
            os.unlink(SHM_DIR / name)
        except FileNotFoundError:
            pass
    return problems


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test: no orphan process, shared-memory segment or run directory afterwards."""
    with leak_guard(tmp_path_factory):
        yield


@pytest.fixture(scope="session")
def guarded(tmp_path_factory: pytest.TempPathFactory):
    """``with guarded(): ...`` applies the same checks to a module- or session-scoped fixture."""
    return lambda: leak_guard(tmp_path_factory)
