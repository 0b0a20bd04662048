"""How a node's process is started: command line, environment, process group, parent-death signal."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from dora_runtime.descriptor import NodeSpec

_PR_SET_PDEATHSIG = 1


PYTHON_NAMES = ("python", "python3")
"""``path:`` values that mean "the interpreter running dora" (``python -m package.node``)."""


def node_command(node: NodeSpec, python: str | None = None) -> list[str]:
    """``[python, -u, file.py, *args]`` for Python files, ``[executable, *args]`` otherwise.
    A bare ``python`` or ``python3`` is the interpreter running dora, as for ``.py`` files (the
    one on ``PATH`` may lack the node's packages)."""
    path = node.resolved_path or node.path
    if path is None:
        raise ValueError(f"node {node.id!r} has no path to start")
    if path.endswith(".py"):
        return [python or sys.executable, "-u", path, *node.args]
    if node.path in PYTHON_NAMES:
        return [python or sys.executable, "-u", *node.args]
    return [path, *node.args]


def node_env(
    node: NodeSpec, config_json: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(node.env)
    env.update(extra or {})
    env["DORA_NODE_CONFIG"] = config_json
    env["PYTHONUNBUFFERED"] = "1"
    # Nodes launched from our interpreter find dora-py first, even if dora-rs is also installed.
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def die_with_parent() -> None:
    """``preexec_fn``: the node gets SIGKILL if the daemon dies, so nothing is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def pinned_cores(node: NodeSpec) -> tuple[set[int] | None, str | None]:
    """The cores to pin ``node`` to (``None``: do not pin), and a warning when some of its
    ``cpu_affinity`` cores are not usable here (absent, or outside this daemon's own set)."""
    if not node.cpu_affinity:
        return None, None
    usable = os.sched_getaffinity(0)
    cores = {c for c in node.cpu_affinity if c in usable}
    absent = [c for c in node.cpu_affinity if c not in usable]
    if not absent:
        return cores, None
    runs = f"the node runs on {_core_list(cores)}" if cores else "the node is not pinned"
    return cores or None, (
        f"node `{node.id}`: cpu_affinity core(s) {_core_list(absent)} not available on this "
        f"machine (usable: {_core_list(usable)}); {runs}"
    )


def _core_list(cores: set[int] | list[int]) -> str:
    return ", ".join(str(c) for c in sorted(cores))


def preexec(cores: set[int] | None) -> Callable[[], None]:
    """The ``preexec_fn`` of a node: parent-death signal, and its CPU cores if pinned."""
    if cores is None:
        return die_with_parent

    def setup() -> None:
        die_with_parent()
        os.sched_setaffinity(0, cores)

    return setup


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a node's whole process group (the node and anything it started)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
