"""Test items: a recording is a file collector, each compared channel one item
(``golden/run1.dora::detector/bboxes``), so ``-k`` selects channels and a failure names one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_dora._config import MARKER
from pytest_dora._failure import (
    DoraItemError,
    GoldenDamaged,
    GoldenMissing,
    UnreadableRecording,
)
from pytest_dora._session import DoraSession


class RecordingFile(pytest.File):
    """A ``.dora`` recording named by ``--dora-replay`` (or given to pytest directly)."""

    def collect(self) -> list[pytest.Item]:
        session = DoraSession.of(self.config)
        try:
            channels = session.compared_channels(self.path)
        except Exception as e:  # noqa: BLE001 - one failing item; the other recordings still run
            error = UnreadableRecording(session, self.path, e)
            return [BrokenRecordingItem.from_parent(self, name="unreadable", error=error)]
        if not channels:
            problems = session.damage_of(self.path)
            if problems:  # damage took every compared channel
                error = GoldenDamaged.nothing_left(session, self.path, problems)
                return [BrokenRecordingItem.from_parent(self, name="damaged", error=error)]
            raise self.CollectError(
                f"{session.rel(self.path)}: no channel to compare: no recorded output of a node "
                "that runs live during replay (nodes with inputs from other nodes)"
            )
        return [ChannelItem.from_parent(self, name=ch, channel=ch) for ch in channels]


class _DoraItem(pytest.Item):
    """Shared failure rendering: our errors print as text, not as a traceback."""

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, DoraItemError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)


class ChannelItem(_DoraItem):
    """One compared output channel of one recording."""

    def __init__(self, *, channel: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channel = channel
        self.add_marker(MARKER)

    def runtest(self) -> None:
        DoraSession.of(self.config).check(self.path, self.channel, self.user_properties)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # not "rel::channel": pytest -v would turn the dots of a suffix of the node id into "::"
        return self.path, None, f"{self.channel} in {DoraSession.of(self.config).rel(self.path)}"


class BrokenRecordingItem(_DoraItem):
    """Stands for a recording with no channel item to give: one that cannot be opened (random
    bytes, a header cut off) or whose damage took every compared channel. Fails with what to
    do, instead of a collection error that would stop every other recording."""

    def __init__(self, *, error: DoraItemError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error
        self.add_marker(MARKER)

    def runtest(self) -> None:
        raise self.error

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{DoraSession.of(self.config).rel(self.path)} ({self.name})"


class MissingGoldenItem(_DoraItem):
    """Stands for a ``--dora-replay`` file that does not exist: fails with the command that
    creates it, or creates it under ``--dora-update-golden`` (with a configured dataflow)."""

    def __init__(self, *, target: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.add_marker(MARKER)

    def runtest(self) -> None:
        session = DoraSession.of(self.config)
        if not (session.update_golden and session.settings.dataflow is not None):
            raise GoldenMissing(session, self.target)
        line = session.make_golden(self.target)
        self.user_properties.append(("dora_golden_update", line))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.target, None, f"{DoraSession.of(self.config).rel(self.target)} (missing)"


def missing_items(session: pytest.Session) -> list[pytest.Item]:
    """One item per missing ``--dora-replay`` file, named by its path (``golden/run3.dora``)."""
    dora = DoraSession.of(session.config)
    return [
        MissingGoldenItem.from_parent(
            session, name=dora.rel(p), nodeid=dora.rel(p), path=p, target=p
        )
        for p in dora.selection.missing
    ]
