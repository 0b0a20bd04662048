"""The README's quickstart prints what the README shows: its command, run as written (with the
logs sent elsewhere), gives the controller lines of its output block, in order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from _cli import REPO, run_dora


def test_the_quickstart_prints_what_the_readme_shows(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = re.search(r"pip install -e \. && (dora run [^\n]+)", readme)
    assert command, "the quickstart command is not in README.md"
    args = shlex.split(command.group(1))[1:]
    shown = [line for line in readme.splitlines() if line.startswith("controller | t=")]
    assert len(shown) >= 5
    r = run_dora(*args, "--log-dir", str(tmp_path / "logs"), cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    printed = [line for line in r.stdout.splitlines() if line.startswith("controller | t=")]
    assert printed == shown, r.stdout
