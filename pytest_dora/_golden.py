"""Golden files: rewriting their expected outputs, making missing ones, and the file lock that
keeps xdist workers from rewriting one golden at the same time."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pytest_dora._config import DoraConfig


class GoldenFiles:
    """What ``--dora-update-golden`` does to files; ``enabled`` is that flag."""

    def __init__(
        self,
        settings: DoraConfig,
        enabled: bool,
        lock_dir: Callable[[], Path | None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.enabled = enabled
        #: where xdist workers share lock files (asked for when needed; None: no locking needed)
        self.lock_dir = lock_dir

    def record_command(
        self,
        target: Path,
        dataflow: Path | None = None,
        meta: dict[str, str] | None = None,
        shown: bool = True,
    ) -> list[str]:
        """The ``dora record`` command that makes ``target`` (placeholder without a dataflow).

        ``dataflow`` defaults to the configured one; ``meta`` becomes ``--meta`` flags. Paths
        are as the user types them from where pytest was started (``shown``), else absolute."""
        s = self.settings
        dataflow = dataflow or s.dataflow
        path = s.relative if shown else (lambda p: str(Path(p).resolve()))
        cmd = ["dora", "record", path(dataflow) if dataflow else "<dataflow.yml>"]
        cmd += ["-o", path(target), "--stop-after", s.record_duration]
        for key, value in (meta or {}).items():
            cmd += ["--meta", f"{key}={value}"]
        return cmd

    def record(self, target: Path) -> str:
        """Run :meth:`record_command`; returns the command line as shown to the user.

        Raises ``RuntimeError`` with the last lines ``dora record`` printed when it fails.
        """
        cmd = self.record_command(target, shown=False)
        line = " ".join(shlex.quote(c) for c in self.record_command(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "dora_cli.main", *cmd[1:]],
            cwd=self.settings.root,
            capture_output=True,
            text=True,
            start_new_session=True,
            timeout=600,
        )
        if proc.returncode != 0 or not target.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise RuntimeError(f"`{line}` failed:\n{tail}")
        return line

    def rewrite(self, path: Path, result: Any, only: set[str] | None = None) -> str | None:
        """Rewrite the channels of ``path`` that differ in ``result`` (those in ``only``, when
        given) with the replayed messages. Returns one line saying what changed, ``None`` when
        nothing differed (then the file is not touched) or the golden is damaged (its lost
        inputs cannot be rewritten: it must be repaired or recorded again)."""
        if result.damaged:
            return None
        channels = result.comparison.channels
        differing = [n for n, ch in channels.items() if not ch.ok and (only is None or n in only)]
        if not differing:
            return None
        from dora_replay.golden import update_golden

        update = update_golden(path, result, channels=differing)
        parts = []
        for name in differing:
            ch = channels[name]
            old, new = update.rewritten.get(name, (ch.recorded_count, ch.replayed_count))
            err = f", max abs error was {ch.max_abs:.3g}" if ch.max_abs else ""
            parts.append(
                f"{name} ({len(ch.differences)} of {old} message(s) changed, now {new}{err})"
            )
        return f"{self.settings.relative(path)}: rewrote " + "; ".join(parts)

    @contextlib.contextmanager
    def lock(self, path: Path) -> Iterator[None]:
        """Hold an exclusive lock on ``path`` while updating (a no-op without the flag): one
        xdist worker rewrites a golden, the others wait and then replay the new file."""
        lock_dir = self.lock_dir() if self.enabled else None
        if lock_dir is None:
            yield
            return
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
        lock = lock_dir / f"pytest-dora-{digest}.lock"
        with lock.open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
