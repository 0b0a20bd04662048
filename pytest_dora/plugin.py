"""pytest11 entry point (``dora = "pytest_dora.plugin"``): options, hooks and fixtures.

Each hook is a few lines; the logic lives in :class:`pytest_dora._session.DoraSession`.
pyarrow and dora_replay are imported only when a recording is collected or a fixture is used,
so ordinary pytest runs do not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_dora._config import MARKER
from pytest_dora._items import RecordingFile, missing_items
from pytest_dora._session import SESSION_KEY, DoraSession


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dora", "dora-py record & replay")
    group.addoption(
        "--dora-replay",
        action="append",
        dest="dora_replay",
        default=[],
        metavar="PATH",
        help="replay this recording and compare every live node's outputs with it, one test "
        "per channel; a file, a folder or a glob; repeatable. Without test paths, only the "
        "recordings run.",
    )
    group.addoption(
        "--dora-update-golden",
        action="store_true",
        dest="dora_update_golden",
        help="rewrite the expected outputs of differing golden recordings from the live run "
        "(inputs untouched) and create missing ones",
    )
    group.addoption(
        "--dora-speed",
        type=float,
        dest="dora_speed",
        default=None,
        metavar="X",
        help="replay speed: 0 = deterministic lockstep (the default), 1 = recorded pace",
    )
    group.addoption(
        "--dora-report",
        dest="dora_report",
        default=None,
        metavar="DIR",
        help="write an HTML plot of recorded vs replayed values for each failing channel",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(speed=None, replace=None, tolerances=None, **replay_kwargs): defaults for the "
        "dora_replay fixture in this test (over [tool.pytest_dora]; the fixture's arguments win, "
        "tolerance tables merge per channel). Also on every recording item (-m dora).",
    )
    session = config.stash[SESSION_KEY] = DoraSession(config)
    config.pluginmanager.register(_ReportListener(session), "dora-report-listener")
    if session.active:
        explicit = config.args_source == pytest.Config.ArgsSource.ARGS
        config.args = [*(config.args if explicit else []), *session.collection_args()]


def pytest_report_header(config: pytest.Config) -> str | None:
    return DoraSession.of(config).header()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> RecordingFile | None:
    if file_path.suffix != ".dora":
        return None
    if DoraSession.of(parent.config).wants(file_path) or parent.session.isinitpath(file_path):
        return RecordingFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselect, so they apply to these items too
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    items.extend(missing_items(session))


def pytest_collection_finish(session: pytest.Session) -> None:
    DoraSession.of(session.config).note_selection(session.items)


class _ReportListener:
    """Sees every report, also those xdist workers send back, to gather golden updates."""

    def __init__(self, session: DoraSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.user_properties:
            self.session.collect_properties(report.user_properties)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = DoraSession.of(config).summary_lines()
    if lines:
        terminalreporter.write_sep("-", "dora")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    DoraSession.of(session.config).finish()


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def dora_replay(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``dora_replay(path, replace=..., speed=..., tolerances=...)`` replays a recording with
    the ``[tool.pytest_dora]`` defaults and returns its ``ReplayResult`` (per-channel outputs,
    ``.assert_matches()``). Relative paths are taken from the project root, then the golden
    folder; under ``--dora-update-golden`` a differing golden is rewritten."""
    return DoraSession.of(request.config).replay_fixture(request.node)


@pytest.fixture
def dora_recording() -> Iterator[Callable[..., Any]]:
    """``dora_recording(path)`` opens a recording for reading; closed after the test."""
    import dora_replay

    opened: list[Any] = []

    def open_recording(path: str | Path) -> Any:
        rec = dora_replay.open(path)
        opened.append(rec)
        return rec

    yield open_recording
    for rec in opened:
        rec.close()


@pytest.fixture
def dora_dataflow(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``dora_dataflow(yml, stop_after=None, record=None)`` starts ``dora run`` (or ``dora
    record``) in its own process group and returns a handle (``wait``, ``stop``,
    ``returncode``, ``output``); every dataflow is stopped and killed after the test."""
    from pytest_dora._dataflow import DataflowRunner

    runner = DataflowRunner(tmp_path)
    try:
        yield runner.start
    finally:
        runner.teardown()
