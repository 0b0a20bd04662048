"""``dora`` run as a user runs it, for the CLI tests: a subprocess in a session of its own, with
this checkout first on ``PYTHONPATH``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with this checkout first on ``PYTHONPATH``, plus ``env``."""
    full = dict(os.environ)
    full["PYTHONPATH"] = str(REPO) + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    return full


def dora(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m dora_cli.main ARGS``; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "dora_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=child_env(env),
        start_new_session=True,
    )


def dora_popen(*args: str) -> subprocess.Popen[str]:
    """``dora ARGS`` started in the background, stdout and stderr piped as text; the caller
    waits for it (and kills its process group if it has to)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dora_cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        start_new_session=True,
    )
