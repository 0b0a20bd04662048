"""The plugin's state for one pytest run: which recordings to replay, their results, golden
updates and what to print at the end. The hooks in :mod:`pytest_dora.plugin` only call this."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_dora import _config, _paths
from pytest_dora._failure import ChannelMismatch, GoldenDamaged, GoldenMissing, ReplayCrashed
from pytest_dora._golden import GoldenFiles

SESSION_KEY = pytest.StashKey["DoraSession"]()
UPDATE_PROPERTY = "dora_golden_update"  #: user_properties key that carries a golden change
REPORT_PROPERTY = "dora_report"  #: user_properties key that carries a written plot's path
NOTE_PROPERTY = "dora_note"  #: user_properties key that carries a replay's note
_CACHE_SIZE = 2  # replay results kept in memory: items run grouped by file, so 2 is plenty


@dataclass(slots=True)
class _Outcome:
    """One replay of one recording: its result, or the error that stopped it."""

    result: Any = None
    error: BaseException | None = None
    log_dir: Path | None = None
    dataflow: Path | None = None  #: passed to replay when the recorded one had moved
    updated: str | None = None  #: what --dora-update-golden changed, if anything
    noted: bool = False  #: its notes were handed to an item's report


class DoraSession:
    """Everything the plugin knows during one pytest run (one per process under xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.pytest_config = config
        self.settings = _config.load(config)
        self.update_golden: bool = config.getoption("dora_update_golden")
        self.golden = GoldenFiles(
            self.settings, self.update_golden, lambda: _shared_lock_dir(config)
        )
        report = config.getoption("dora_report")
        self.report_dir: Path | None = Path(report).resolve() if report else None
        self.selection = _paths.expand(
            config.getoption("dora_replay") or [], config.invocation_params.dir
        )
        self.updates: list[str] = []
        #: per recording, the channels selected to run (after -k/-m); unknown = all
        self.selected: dict[Path, set[str]] = {}
        self.reports: list[str] = []
        self.notes: list[str] = []
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
        new = len(self.selection.missing)
        # pytest's "collected N items" does not count missing goldens (they have no file)
        missing = ""
        if new:
            missing = f" + {new} golden(s) to create" if self.update_golden else f" + {new} missing"
        return (
            f"dora: {len(self.selection.recordings)} recording(s){missing}, speed {speed:g} "
            f"({pace}){mode}"
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
        """The channels of ``path`` that become items (sorted): what its replay compares."""
        import dora_replay

        return sorted(dora_replay.compared_channels(path, replace=self.settings.replace))

    def damage_of(self, path: Path) -> list[Any]:
        """What opening ``path`` found lost (a cut-off end, damaged frames); chunks that fail
        their CRC show only when read, i.e. in the replay's ``result.problems``."""
        import dora_replay

        with dora_replay.open(path) as rec:
            return list(rec.problems)

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
        updates, written plots. Raises :class:`ChannelMismatch`, :class:`GoldenDamaged` (the
        recording lost messages) or :class:`ReplayCrashed`.
        """
        outcome = self._outcome(path)
        if outcome.updated:
            props.append((UPDATE_PROPERTY, outcome.updated))
            outcome.updated = None  # reported once, by the first item that saw it
        if outcome.result is not None and not outcome.noted:
            outcome.noted = True
            props.extend((NOTE_PROPERTY, f"{self.rel(path)}: {n}") for n in outcome.result.notes)
        if outcome.error is not None:
            raise ReplayCrashed(self.rel(path), outcome.error, outcome.log_dir)
        crashed = _failures_for(outcome.result, channel)
        if crashed:
            self._keep_logs = True
            raise ReplayCrashed(self.rel(path), RuntimeError(crashed), outcome.log_dir)
        if outcome.result.damaged:  # also under --dora-update-golden: it does not rewrite one
            raise GoldenDamaged.from_result(self, path, channel, outcome.result, outcome.dataflow)
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
        with self.golden.lock(path):
            outcome = self._replay(path)
            if self.update_golden and outcome.error is None:
                outcome.updated = self.golden.rewrite(path, outcome.result, self.selected.get(path))
        self._outcomes[path] = outcome
        while len(self._outcomes) > _CACHE_SIZE:
            self._outcomes.popitem(last=False)
        return outcome

    def _replay(self, path: Path, **overrides: Any) -> _Outcome:
        from dora_replay.replay import replay

        log_dir = self._new_log_dir()
        self._log_dirs.append(log_dir)
        tolerances = overrides.pop("tolerances", None)
        if tolerances is None or isinstance(tolerances, dict):  # else a Tolerances or a file
            tolerances = self.settings.tolerances_for_replay(tolerances)
        kwargs: dict[str, Any] = {
            "speed": self.settings.speed,
            "replace": dict(self.settings.replace) or None,
            "tolerances": tolerances,
            "timeout_s": self.settings.timeout_s,
            "log_dir": log_dir,
            "progress": False,
        }
        kwargs.update(overrides)
        configured = False
        if kwargs.get("dataflow") is None:
            kwargs["dataflow"] = self._dataflow_for(path)
            configured = kwargs["dataflow"] is not None
        try:
            result = replay(path, **kwargs)
            return _Outcome(result=result, log_dir=log_dir, dataflow=kwargs["dataflow"])
        except Exception as e:  # noqa: BLE001 - every item of this recording reports it
            self._keep_logs = True
            if configured:  # say where that dataflow path came from
                e.add_note(
                    f"(the recorded dataflow was not found, so the one set by `dataflow = ...` "
                    f"in [tool.pytest_dora] of {self.settings.source} was used)"
                )
            return _Outcome(error=e, log_dir=log_dir)

    def _new_log_dir(self) -> Path:
        """A folder for one replay's node logs, under pytest's own temporary folder (which
        pytest prunes to its last few runs), so kept logs never pile up in /tmp."""
        factory = getattr(self.pytest_config, "_tmp_path_factory", None)
        if factory is not None:
            return factory.mktemp("dora-replay", numbered=True)
        return Path(tempfile.mkdtemp(prefix="pytest-dora-"))

    def _dataflow_for(self, path: Path) -> Path | None:
        """``None`` (the replay finds the recorded dataflow, also in another checkout) unless
        the recording names a dataflow file that cannot be found: then the configured one."""
        import dora_replay
        from dora_replay._index import DATAFLOW_PATH_KEY

        with dora_replay.open(path) as rec:
            recorded = rec.metadata.get(DATAFLOW_PATH_KEY)
            if recorded and dora_replay.find_dataflow(rec) is None:
                return self.settings.dataflow
        return None

    def replay_fixture(self, node: pytest.Item) -> Any:
        """The callable behind the ``dora_replay`` fixture for the test ``node``: defaults from
        ``@pytest.mark.dora(...)`` on the test, arguments that are not ``None`` win (tolerance
        tables merge channel by channel)."""
        defaults = _config.marker_defaults(node, self.settings.root)

        def dora_replay(path: str | os.PathLike[str], **kwargs: Any) -> Any:
            made = len(self.updates)
            given = {k: v for k, v in kwargs.items() if v is not None}
            call = {**defaults, **given}
            if isinstance(defaults.get("tolerances"), dict) and isinstance(
                given.get("tolerances"), dict
            ):
                call["tolerances"] = _config.merge_tolerances(
                    defaults["tolerances"], given["tolerances"]
                )
            outcome = self.replay(path, **call)
            # through the report, so an xdist controller prints them too
            news = self.updates[made:] + ([outcome.updated] if outcome.updated else [])
            node.user_properties.extend((UPDATE_PROPERTY, line) for line in news)
            notes = outcome.result.notes
            node.user_properties.extend((NOTE_PROPERTY, f"{path}: {n}") for n in notes)
            return outcome.result

        return dora_replay

    def replay(self, path: str | os.PathLike[str], **kwargs: Any) -> _Outcome:
        """One replay with the configured defaults (``kwargs`` that are not ``None`` win;
        ``tolerances`` tables merge over the configured ones, channel by channel).

        Under ``--dora-update-golden`` a differing golden is rewritten and replayed again, so
        the result handed to the test is the one of the new golden.
        """
        target = self.resolve_recording(path)
        overrides = {k: v for k, v in kwargs.items() if v is not None}
        with self.golden.lock(target):
            outcome = self._replay(target, **overrides)
            if outcome.error is not None:
                raise ReplayCrashed(self.rel(target), outcome.error, outcome.log_dir)
            if self.update_golden:
                updated = self.golden.rewrite(target, outcome.result)
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
        """Record a missing golden with ``dora record`` from the configured dataflow; then
        replay it once and rewrite outputs that lockstep replay computes differently."""
        with self.golden.lock(target):
            if target.exists():
                return f"{self.rel(target)}: made by another worker"
            try:
                command = self.golden.record(target)
            except RuntimeError as e:
                raise ReplayCrashed(self.rel(target), e) from None
            outcome = self._replay(target)
            changed = self.golden.rewrite(target, outcome.result) if outcome.result else None
            line = f"{self.rel(target)}: created with `{command}`"
            line += f"; {changed}" if changed else ""
            self.updates.append(line)
            return line

    def record_command(self, target: Path, like: Path | None = None) -> list[str]:
        """``dora record`` for ``target``; ``like``: a recording (readable header) whose
        dataflow and ``--meta`` the command reuses (recording a damaged golden again)."""
        if like is None:
            return self.golden.record_command(target)
        import dora_replay
        from dora_replay._index import TOOL_METADATA_KEYS

        try:
            with dora_replay.open(like) as rec:
                meta = {k: v for k, v in rec.metadata.items() if k not in TOOL_METADATA_KEYS}
                found = self.settings.dataflow or dora_replay.find_dataflow(rec)
        except dora_replay.RecordingError:
            return self.golden.record_command(target)
        return self.golden.record_command(target, dataflow=found, meta=meta)

    # -- end of the run ------------------------------------------------------------------

    def collect_properties(self, props: list[tuple[str, object]]) -> None:
        """Gather what items reported (also from xdist workers, through their reports)."""
        for key, value in props:
            if key == UPDATE_PROPERTY and value not in self.updates:
                self.updates.append(str(value))
            elif key == REPORT_PROPERTY and value not in self.reports:
                self.reports.append(str(value))
            elif key == NOTE_PROPERTY and value not in self.notes:
                self.notes.append(str(value))

    def summary_lines(self) -> list[str]:
        lines = [f"dora: note: {n}" for n in self.notes]
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


def _shared_lock_dir(config: pytest.Config) -> Path | None:
    """Under xdist, the run's temporary folder that every worker shares (pytest prunes it with
    the run); a single process needs no lock."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None or not hasattr(config, "workerinput"):
        return None
    return factory.getbasetemp().parent


def _failures_for(result: Any, channel: str) -> str:
    """Failures that concern ``channel``: its node's, a feeder's or the replay's own."""
    from dora_replay._result import failure_line

    node = channel.split("/", 1)[0]
    live = set(result.live_nodes)
    lines = [
        failure_line(name, why)
        for name, why in result.failures.items()
        if name == node or name not in live
    ]
    return "\n".join(lines)
