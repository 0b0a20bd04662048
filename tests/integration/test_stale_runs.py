"""``clean_stale_runs``: what a killed dora process left is removed by the next one, but only
its own user's: another user's folders in a shared /tmp are not ours to judge."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from dora_runtime.daemon import clean_stale_runs

DEAD_PID = 2**22 + 12345  # above pid_max's default: no such process


def _stale(base: Path, name: str) -> Path:
    folder = base / name
    folder.mkdir()
    (folder / "daemon.pid").write_text(str(DEAD_PID))
    return folder


@pytest.mark.skipif(os.geteuid() != 0, reason="making another user's folder needs root")
def test_only_this_users_stale_runs_are_removed() -> None:
    base = Path(tempfile.mkdtemp(dir=os.environ.get("TMPDIR")))
    mine = _stale(base, "dora-aaaaaaaaaaaa-x")
    theirs = _stale(base, "dora-bbbbbbbbbbbb-y")
    os.chown(theirs, 65534, 65534)
    try:
        removed = clean_stale_runs(str(base))
        assert str(mine) in removed and not mine.exists()
        assert theirs.exists() and str(theirs) not in removed
    finally:
        (theirs / "daemon.pid").unlink()
        theirs.rmdir()
        base.rmdir()
