"""Settings: ``[tool.pytest_dora]`` in ``pyproject.toml``, overridden by ``--dora-*`` options.

Everything here is plain Python (tomllib, dataclasses): importing it costs nothing, so ordinary
pytest runs without ``--dora-replay`` stay as fast as before.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SECTION = "tool.pytest_dora"

#: the keys ``[tool.pytest_dora]`` accepts, with what each one means (also used in error messages)
KEYS: dict[str, str] = {
    "speed": "replay speed; 0 (the default) is deterministic lockstep",
    "golden_dir": "folder of golden recordings (default: golden)",
    "dataflow": "dataflow YAML that makes a missing golden with --dora-update-golden",
    "record_duration": "how long that dataflow runs when a golden is made (default: 3s)",
    "tolerances": "tables per channel (or glob, or `default`): atol, rtol, ignore_fields, "
    "ignore_metadata",
    "ignore_metadata": "metadata keys never compared, on every channel",
    "replace": "node = path: run this implementation live instead of the recorded one",
    "timeout_s": "give up on one replay after this many seconds",
}
TOLERANCE_KEYS = ("atol", "rtol", "ignore_fields", "ignore_metadata")
MARKER = "dora"  #: on recording items; with keywords, the ``dora_replay`` fixture's defaults


@dataclass(slots=True)
class DoraConfig:
    """Effective settings of one pytest session. Paths are absolute."""

    root: Path
    speed: float = 0.0
    golden_dir: Path | None = None
    dataflow: Path | None = None
    record_duration: str = "3s"
    tolerances: dict[str, dict[str, Any]] = field(default_factory=dict)
    ignore_metadata: list[str] = field(default_factory=list)
    replace: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    source: Path | None = None  #: the pyproject.toml the settings came from, if any
    cwd: Path | None = None  #: where pytest was started: printed commands are run from there

    def tolerances_for_replay(
        self, *overrides: dict[str, dict[str, Any]] | None
    ) -> dict[str, dict[str, Any]] | None:
        """The tolerances in the shape ``dora_replay`` takes (``default`` + channel tables),
        with the global ``ignore_metadata`` added to every table; ``None`` when unset.

        ``overrides`` (markers, then the fixture's argument) merge over the configured tables
        in turn, channel by channel and key by key (``*`` is ``default``)."""
        tables = merge_tolerances(self.tolerances, *overrides)
        if self.ignore_metadata:
            tables.setdefault("default", {})
            for table in tables.values():
                keys = [*table.get("ignore_metadata", []), *self.ignore_metadata]
                table["ignore_metadata"] = list(dict.fromkeys(keys))
        return tables or None

    def relative(self, path: Path) -> str:
        """``path`` as a command printed for the user takes it: relative to the folder pytest was
        started in (a few ``..`` at most), else absolute."""
        full = Path(path).resolve()
        base = self.cwd or self.root
        rel = os.path.relpath(full, base)
        return str(full) if rel.startswith(("../../..", "..\\..\\..")) else rel


def merge_tolerances(*layers: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Tolerance tables merged in order: a later table for a channel updates the earlier one
    key by key; ``*`` and ``default`` are the same table."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for channel, table in (layer or {}).items():
            key = "default" if channel == "*" else channel
            merged[key] = {**merged.get(key, {}), **dict(table)}
    return merged


def marker_defaults(item: pytest.Item, root: Path) -> dict[str, Any]:
    """Keyword arguments for the ``dora_replay`` fixture from ``@pytest.mark.dora(...)`` on
    ``item`` (module, class, function: the closest wins; tolerance tables merge). Relative
    ``replace`` paths are taken from ``root``. Raises ``pytest.UsageError`` for positional
    arguments."""
    out: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers(MARKER))):  # farthest first
        if mark.args:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.{MARKER}{mark.args!r}: use keywords, e.g. "
                f"@pytest.mark.{MARKER}(speed=0, replace={{'node': 'new.py'}})"
            )
        kwargs = dict(mark.kwargs)
        if isinstance(kwargs.get("replace"), dict):
            kwargs["replace"] = {n: str(root / p) for n, p in kwargs["replace"].items()}
        tols = kwargs.get("tolerances")
        if isinstance(tols, dict) and isinstance(out.get("tolerances"), dict):
            kwargs["tolerances"] = merge_tolerances(out["tolerances"], tols)
        out.update(kwargs)
    return out


def find_pyproject(config: pytest.Config) -> Path | None:
    """The ``pyproject.toml`` that configures this session: pytest's own when it is one, else
    the one in the root directory."""
    inipath = config.inipath
    if inipath is not None and inipath.name == "pyproject.toml":
        return inipath
    candidate = config.rootpath / "pyproject.toml"
    return candidate if candidate.is_file() else None


def load(config: pytest.Config) -> DoraConfig:
    """Read ``[tool.pytest_dora]`` and apply the command-line options.

    Raises ``pytest.UsageError`` naming the file, the key and the closest valid key.
    """
    pyproject = find_pyproject(config)
    table: dict[str, Any] = {}
    if pyproject is not None:
        with pyproject.open("rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise pytest.UsageError(f"{pyproject}: {e}") from e
        table = data.get("tool", {}).get("pytest_dora", {})
    root = pyproject.parent if pyproject is not None else config.rootpath
    cfg = parse(table, root, where=str(pyproject or root))
    cfg.source = pyproject
    cfg.cwd = Path(config.invocation_params.dir).resolve()
    speed = config.getoption("dora_speed")
    if speed is not None:
        cfg.speed = speed
    return cfg


def parse(table: dict[str, Any], root: Path, where: str = "pyproject.toml") -> DoraConfig:
    """Validate one ``[tool.pytest_dora]`` table; relative paths are taken from ``root``."""
    _check_keys(table, KEYS, f"{where}: [{SECTION}]")
    cfg = DoraConfig(root=root.resolve())
    if "speed" in table:
        cfg.speed = _number(table["speed"], "speed", where)
        if cfg.speed < 0:
            raise pytest.UsageError(f"{where}: [{SECTION}] speed = {cfg.speed}: must be >= 0")
    cfg.golden_dir = cfg.root / str(table.get("golden_dir", "golden"))
    if "dataflow" in table:
        cfg.dataflow = cfg.root / str(table["dataflow"])
    cfg.record_duration = str(table.get("record_duration", cfg.record_duration))
    if "timeout_s" in table:
        cfg.timeout_s = _number(table["timeout_s"], "timeout_s", where)
    cfg.ignore_metadata = _strings(table.get("ignore_metadata", []), "ignore_metadata", where)
    for channel, tol in dict(table.get("tolerances", {})).items():
        ctx = f"{where}: [{SECTION}.tolerances.{channel!r}]"
        if not isinstance(tol, dict):
            raise pytest.UsageError(f"{ctx}: expected a table such as {{ atol = 1e-6 }}")
        _check_keys(tol, dict.fromkeys(TOLERANCE_KEYS, ""), ctx)
        cfg.tolerances[channel] = dict(tol)
    for node, path in dict(table.get("replace", {})).items():
        cfg.replace[node] = str((cfg.root / str(path)).resolve())
    return cfg


def _check_keys(table: dict[str, Any], valid: dict[str, str], ctx: str) -> None:
    for key in table:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise pytest.UsageError(
                f"{ctx}: unknown key `{key}`; {hint}valid keys: {', '.join(valid)}"
            )


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise pytest.UsageError(f"{where}: [{SECTION}] {key} = {value!r}: expected a number")
    return float(value)


def _strings(value: Any, key: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise pytest.UsageError(
            f"{where}: [{SECTION}] {key} = {value!r}: expected a list of strings"
        )
    return list(value)
