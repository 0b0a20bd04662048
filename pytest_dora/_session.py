"""The plugin's state for one pytest run: which recordings to replay, their results, golden
updates and what to print at the end. The hooks in :mod:`pytest_dora.plugin` only call this."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_dora import _config, _paths
from pytest_dora._failure import ChannelMismatch, GoldenMissing, ReplayCrashed

SESSION_KEY = pytest.StashKey["DoraSession"]()
UPDATE_PROPERTY = "dora_golden_update"  #: user_properties key that carries a golden change
REPORT_PROPERTY = "dora_report"  #: user_properties key that carries a written plot's path
_CACHE_SIZE = 2  # replay results kept in memory: items run grouped by file, so 2 is plenty


@dataclass(slots=True)
class _Outcome:
    """One replay of one recording: its result, or the error that stopped it."""

    result: Any = None
    error: BaseException | None = None
    log_dir: Path | None = None
    dataflow: Path | None = None  #: passed to replay when the recorded one had moved
    updated: str | None = None  #: what --dora-update-golden changed, if anything


class DoraSession:
    """Everything the plugin knows during one pytest run (one per process under xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.pytest_config = config
        self.settings = _config.load(config)
        self.update_golden: bool = config.getoption("dora_update_golden")
        report = config.getoption("dora_report")
        self.report_dir: Path | None = Path(report).resolve() if report else None
        self.selection = _paths.expand(config.getoption("dora_replay") or [], config.rootpath)
        self.updates: list[str] = []
        #: per recording, the channels selected to run (after -k/-m); unknown = all
        self.selected: dict[Path, set[str]] = {}
        self.reports: list[str] = []
        self._outcomes: OrderedDict[Path, _Outcome] = OrderedDict()
        self._log_dirs: list[Path] = []
        self._keep_logs = False

    @classmethod
    def of(cls, config: pytest.Config) -> DoraSession:
        return config.stash[SESSION_KEY]

    @property
    def active(self) -> bool:
        """True when ``--dora-replay`` was given."""
        return bool(self.pytest_config.getoption("dora_replay"))

    def header(self) -> str | None:
        """The line pytest prints under its own header when recordings are replayed."""
        if not self.active:
            return None
        speed = self.settings.speed
        pace = "lockstep" if speed == 0 else f"{speed:g}x"
        mode = ", updating goldens" if self.update_golden else ""
        return (
            f"dora: {len(self.selection.recordings)} recording(s), speed {speed:g} ({pace}){mode}"
        )

    def rel(self, path: Path) -> str:
        return self.settings.relative(path)

    # -- collection ----------------------------------------------------------------------

    def collection_args(self) -> list[str]:
        """The recordings to collect instead of ``testpaths`` when only ``--dora-replay`` was
        given (so ``pytest --dora-replay golden/`` runs just the goldens)."""
        return [str(p) for p in self.selection.recordings]

    def wants(self, path: Path) -> bool:
        """Whether ``path`` (a ``.dora`` file pytest came across) is to be collected."""
        return path.resolve() in self.selection.recordings

    def compared_channels(self, path: Path) -> list[str]:
        return _paths.compared_channels(path, self.settings.replace)

    def note_selection(self, items: list[pytest.Item]) -> None:
        """Remember which channels of each recording survived ``-k``/``-m``."""
        for item in items:
            channel = getattr(item, "channel", None)
            if channel is not None:
                self.selected.setdefault(item.path.resolve(), set()).add(channel)

    # -- running -------------------------------------------------------------------------

    def check(self, path: Path, channel: str, props: list[tuple[str, object]]) -> None:
        """Run (or reuse) the replay of ``path`` and check ``channel``.

        Appends to ``props`` (the item's user properties) what the run summary needs: golden
        updates, written plots. Raises :class:`ChannelMismatch` or :class:`ReplayCrashed`.
        """
        outcome = self._outcome(path)
        if outcome.updated:
            props.append((UPDATE_PROPERTY, outcome.updated))
            outcome.updated = None  # reported once, by the first item that saw it
        if outcome.error is not None:
            raise ReplayCrashed(self.rel(path), outcome.error, outcome.log_dir)
        crashed = _failures_for(outcome.result, channel)
        if crashed:
            self._keep_logs = True
            raise ReplayCrashed(self.rel(path), RuntimeError(crashed), outcome.log_dir)
        if self.update_golden:
            return
        mismatch = ChannelMismatch.from_result(
            self, path, channel, outcome.result, outcome.dataflow
        )
        if mismatch is not None:
            self._keep_logs = True
            if self.report_dir is not None:
                from pytest_dora._report import write_channel_report

                written = write_channel_report(self.report_dir, path, channel, outcome.result)
                mismatch.report_path = written
                props.append((REPORT_PROPERTY, str(written)))
            raise mismatch

    def _outcome(self, path: Path) -> _Outcome:
        path = path.resolve()
        if path in self._outcomes:
            self._outcomes.move_to_end(path)
            return self._outcomes[path]
        with self._golden_lock(path):
            outcome = self._replay(path)
            if self.update_golden and outcome.error is None:
                outcome.updated = self._update(path, outcome.result)
        self._outcomes[path] = outcome
        while len(self._outcomes) > _CACHE_SIZE:
            self._outcomes.popitem(last=False)
        return outcome

    def _replay(self, path: Path, **overrides: Any) -> _Outcome:
        from dora_replay.replay import replay

        log_dir = Path(tempfile.mkdtemp(prefix="pytest-dora-"))
        self._log_dirs.append(log_dir)
        kwargs: dict[str, Any] = {
            "speed": self.settings.speed,
            "replace": dict(self.settings.replace) or None,
            "tolerances": self.settings.tolerances_for_replay(),
            "timeout_s": self.settings.timeout_s,
            "log_dir": log_dir,
            "progress": False,
        }
        kwargs.update(overrides)
        if kwargs.get("dataflow") is None:
            kwargs["dataflow"] = self._dataflow_for(path)
        try:
            result = replay(path, **kwargs)
            return _Outcome(result=result, log_dir=log_dir, dataflow=kwargs["dataflow"])
        except Exception as e:  # noqa: BLE001 - every item of this recording reports it
            self._keep_logs = True
            return _Outcome(error=e, log_dir=log_dir)

    def _dataflow_for(self, path: Path) -> Path | None:
        """``None`` (use the recorded dataflow) unless its file is not where it was recorded:
        then the same file in this checkout, else the configured ``dataflow``."""
        import dora_replay

        with dora_replay.open(path) as rec:
            recorded = rec.metadata.get("dataflow_path")
        found = _paths.relocate_dataflow(recorded, self.settings.root)
        if found is None and recorded and not Path(recorded).is_file():
            found = self.settings.dataflow
        return found

    def replay_fixture(self, node: pytest.Item) -> Any:
        """The callable behind the ``dora_replay`` fixture for the test ``node``."""

        def dora_replay(path: str | os.PathLike[str], **kwargs: Any) -> Any:
            outcome = self.replay(path, **kwargs)
            if outcome.updated:
                node.user_properties.append((UPDATE_PROPERTY, outcome.updated))
            return outcome.result

        return dora_replay

    def replay(self, path: str | os.PathLike[str], **kwargs: Any) -> _Outcome:
        """One replay with the configured defaults (``kwargs`` that are not ``None`` win).

        Under ``--dora-update-golden`` a differing golden is rewritten and replayed again, so
        the result handed to the test is the one of the new golden.
        """
        target = self.resolve_recording(path)
        overrides = {k: v for k, v in kwargs.items() if v is not None}
        with self._golden_lock(target):
            outcome = self._replay(target, **overrides)
            if outcome.error is not None:
                raise ReplayCrashed(self.rel(target), outcome.error, outcome.log_dir)
            if self.update_golden:
                updated = self._update(target, outcome.result, only_selected=False)
                if updated:
                    outcome = self._replay(target, **overrides)
                    outcome.updated = updated
        return outcome

    def resolve_recording(self, path: str | os.PathLike[str]) -> Path:
        """An existing recording for ``path``: as given (relative to the project root), else
        inside the golden folder. Raises :class:`GoldenMissing` (or makes the golden under
        ``--dora-update-golden`` when a dataflow is configured)."""
        given = Path(path)
        candidates = [given] if given.is_absolute() else [self.settings.root / given]
        if not given.is_absolute() and self.settings.golden_dir is not None:
            candidates.append(self.settings.golden_dir / given)
        for c in candidates:
            if c.exists():
                return c.resolve()
        target = candidates[0]
        if self.update_golden and self.settings.dataflow is not None:
            self.make_golden(target)
            return target.resolve()
        raise GoldenMissing(self, target)

    # -- golden files --------------------------------------------------------------------

    def make_golden(self, target: Path) -> str:
        """Record a new golden with ``dora record`` from the configured dataflow, then rewrite
        its expected outputs from a replay so they are what lockstep replay produces."""
        with self._golden_lock(target):
            if target.exists():
                return f"{self.rel(target)}: made by another worker"
            target.parent.mkdir(parents=True, exist_ok=True)
            cmd = self.record_command(target)
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
                raise ReplayCrashed(self.rel(target), RuntimeError(f"`{' '.join(cmd)}`:\n{tail}"))
            outcome = self._replay(target)
            note = ""
            if outcome.error is None:
                changed = self._update(target, outcome.result)
                note = f"; {changed}" if changed else ""
            line = f"{self.rel(target)}: created with `{' '.join(cmd)}`{note}"
            self.updates.append(line)
            return line

    def record_command(self, target: Path) -> list[str]:
        """The ``dora record`` command that makes ``target`` (placeholder without a dataflow)."""
        dataflow = self.rel(self.settings.dataflow) if self.settings.dataflow else "<dataflow.yml>"
        return [
            "dora",
            "record",
            dataflow,
            "-o",
            self.rel(target),
            "--stop-after",
            self.settings.record_duration,
        ]

    def _update(self, path: Path, result: Any, only_selected: bool = True) -> str | None:
        """Rewrite the differing channels of ``path`` from ``result`` (with ``only_selected``,
        those whose items survived ``-k``); returns one line saying what changed, ``None``
        when nothing differed."""
        selected = self.selected.get(path.resolve()) if only_selected else None
        differing = [
            name
            for name, ch in result.comparison.channels.items()
            if not ch.ok and (selected is None or name in selected)
        ]
        if not differing:
            return None
        from dora_replay.golden import update_golden

        update = update_golden(path, result, channels=differing)
        parts = []
        for name in differing:
            ch = result.comparison.channels[name]
            old, new = update.rewritten.get(name, (ch.recorded_count, ch.replayed_count))
            err = f", max abs error was {ch.max_abs:.3g}" if ch.max_abs else ""
            parts.append(
                f"{name} ({len(ch.differences)} of {old} message(s) changed, now {new}{err})"
            )
        return f"{self.rel(path)}: rewrote " + "; ".join(parts)

    @contextlib.contextmanager
    def _golden_lock(self, path: Path) -> Iterator[None]:
        """Serialise golden rewrites of one file across xdist workers (no-op otherwise)."""
        if not self.update_golden:
            yield
            return
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
        lock = Path(tempfile.gettempdir()) / f"pytest-dora-{digest}.lock"
        with lock.open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- end of the run ------------------------------------------------------------------

    def collect_properties(self, props: list[tuple[str, object]]) -> None:
        """Gather what items reported (also from xdist workers, through their reports)."""
        for key, value in props:
            if key == UPDATE_PROPERTY and value not in self.updates:
                self.updates.append(str(value))
            elif key == REPORT_PROPERTY and value not in self.reports:
                self.reports.append(str(value))

    def summary_lines(self) -> list[str]:
        lines: list[str] = []
        if self.updates:
            lines.append(f"dora: {len(self.updates)} golden recording(s) updated:")
            lines += [f"  {u}" for u in self.updates]
        elif self.update_golden and self.active:
            lines.append("dora: golden recordings already match the live run; nothing rewritten")
        if self.reports:
            lines.append(f"dora: plots of failing channels in {self.report_dir or ''}:")
            lines += [f"  {r}" for r in self.reports]
        for arg in self.selection.empty:
            lines.append(f"dora: --dora-replay {arg}: no .dora recording found there")
        return lines

    def finish(self) -> None:
        """Remove replay logs unless something failed (then they are named in the failure)."""
        if self._keep_logs:
            return
        for d in self._log_dirs:
            shutil.rmtree(d, ignore_errors=True)


def _failures_for(result: Any, channel: str) -> str:
    """Failures that concern ``channel``: its node's, a feeder's or the replay's own."""
    node = channel.split("/", 1)[0]
    live = set(result.live_nodes)
    lines = [
        f"node `{name}` {why}"
        for name, why in result.failures.items()
        if name == node or name not in live
    ]
    return "\n".join(lines)
