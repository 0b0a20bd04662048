"""Per-channel comparison tolerances: from a TOML file, from ``--tolerance`` flags, or in code.

A TOML file has an optional ``[default]`` table and one table per channel (a ``node/output`` name
or a glob such as ``"planner/*"``), quoted because of the slash::

    [default]
    atol = 1e-9

    ["planner/target"]
    atol = 1e-6
    rtol = 1e-4
    ignore_metadata = ["debug_ms"]

    ["detector/bboxes"]
    ignore_fields = ["score"]        # struct fields (dotted for nested: "pose.stamp")

A flag is ``CHANNEL:key=value,key=value`` with list values separated by ``|``:
``planner/target:atol=1e-6,rtol=1e-4`` or ``detector/bboxes:ignore_fields=score|label``.
The most specific match wins: an exact channel name, then the longest matching glob, then
``[default]`` (``*`` in a flag).
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any

from dora_replay.errors import RecordingError


class ToleranceError(RecordingError):
    """A tolerance file or flag could not be read."""


@dataclass(frozen=True)
class Tolerance:
    """How close two messages of one channel must be.

    Numbers ``a`` (recorded) and ``b`` (replayed) match when ``|a - b| <= atol + rtol * |a|``
    (NaN matches NaN). ``ignore_fields``: struct field names (dotted paths for nested structs)
    left out of the comparison; ``ignore_metadata``: metadata keys left out.
    """

    atol: float = 0.0
    rtol: float = 0.0
    ignore_fields: tuple[str, ...] = ()
    ignore_metadata: tuple[str, ...] = ()

    @property
    def exact(self) -> bool:
        return self.atol == 0.0 and self.rtol == 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "ignore_fields": list(self.ignore_fields),
            "ignore_metadata": list(self.ignore_metadata),
        }


_KEYS = {"atol", "rtol", "ignore_fields", "ignore_metadata"}


@dataclass
class Tolerances:
    """Tolerances for every channel: ``default`` plus per-channel (or glob) entries."""

    default: Tolerance = field(default_factory=Tolerance)
    channels: dict[str, Tolerance] = field(default_factory=dict)

    def for_channel(self, channel: str) -> Tolerance:
        """The tolerance that applies to ``channel`` (most specific entry wins)."""
        if channel in self.channels:
            return self.channels[channel]
        globs = [p for p in self.channels if fnmatch.fnmatchcase(channel, p)]
        if globs:
            return self.channels[max(globs, key=len)]
        return self.default

    def merged(self, other: Tolerances | None) -> Tolerances:
        """These tolerances with ``other``'s entries taking precedence."""
        if other is None:
            return self
        default = other.default if other.default != Tolerance() else self.default
        return Tolerances(default, {**self.channels, **other.channels})

    def to_flags(self) -> list[str]:
        """``--tolerance`` values that rebuild these tolerances (for a reproducing command)."""
        entries = [("*", self.default)] if self.default != Tolerance() else []
        flags = []
        for name, t in [*entries, *self.channels.items()]:
            items = [f"atol={t.atol:g}"] if t.atol else []
            items += [f"rtol={t.rtol:g}"] if t.rtol else []
            items += [f"ignore_fields={'|'.join(t.ignore_fields)}"] if t.ignore_fields else []
            items += [f"ignore_metadata={'|'.join(t.ignore_metadata)}"] if t.ignore_metadata else []
            flags.append(f"{name}:{','.join(items or ['atol=0'])}")
        return flags

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default.to_dict(),
            "channels": {k: v.to_dict() for k, v in self.channels.items()},
        }


def _tolerance(values: dict[str, Any], where: str, base: Tolerance | None = None) -> Tolerance:
    unknown = set(values) - _KEYS
    if unknown:
        raise ToleranceError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"valid keys: {', '.join(sorted(_KEYS))}"
        )
    t = base or Tolerance()
    for key in ("atol", "rtol"):
        if key in values:
            try:
                v = float(values[key])
            except (TypeError, ValueError):
                raise ToleranceError(
                    f"{where}: {key} = {values[key]!r} is not a number (e.g. {key}=1e-6)"
                ) from None
            if v < 0:
                raise ToleranceError(f"{where}: {key} = {v} must be >= 0")
            t = replace(t, **{key: v})
    for key in ("ignore_fields", "ignore_metadata"):
        if key in values:
            v = values[key]
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise ToleranceError(f"{where}: {key} must be a list of names, got {v!r}")
            t = replace(t, **{key: tuple(items)})
    return t


def load_tolerances(path: str | os.PathLike[str]) -> Tolerances:
    """Read a tolerance TOML file (see the module docstring). Raises :class:`ToleranceError`."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ToleranceError(f"tolerance file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ToleranceError(f"tolerance file {path}: invalid TOML: {e}") from None
    return tolerances_from_dict(data, str(path))


def tolerances_from_dict(data: dict[str, Any], where: str = "tolerances") -> Tolerances:
    """Tolerances from a mapping shaped like the TOML file (``default`` + channel tables)."""
    tol = Tolerances()
    for key, value in data.items():
        if not isinstance(value, dict):
            raise ToleranceError(
                f'{where}: `{key}` must be a table such as ["{key}"] with atol/rtol/...'
            )
        if key == "default":
            tol.default = _tolerance(value, f"{where} [default]")
        else:
            tol.channels[key] = _tolerance(value, f'{where} ["{key}"]')
    return tol


def parse_tolerance_flag(text: str, into: Tolerances | None = None) -> Tolerances:
    """Add one ``CHANNEL:key=value,...`` flag (see module docstring) to ``into`` (or a new set).

    Raises :class:`ToleranceError` with the offending text.
    """
    tol = into or Tolerances()
    channel, sep, rest = text.rpartition(":")
    if not sep or not channel or not rest:
        raise ToleranceError(
            f"--tolerance {text!r}: expected CHANNEL:key=value,..., "
            "e.g. planner/target:atol=1e-6,rtol=1e-4"
        )
    values: dict[str, Any] = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ToleranceError(f"--tolerance {text!r}: {item!r} is not key=value")
        values[key] = value.split("|") if key.startswith("ignore_") else value
    where = f"--tolerance {text!r}"
    if channel in ("*", "default"):
        tol.default = _tolerance(values, where, tol.default)
    else:
        tol.channels[channel] = _tolerance(values, where, tol.channels.get(channel))
    return tol


def as_tolerances(value: Tolerances | dict[str, Any] | str | os.PathLike[str] | None) -> Tolerances:
    """Accept a :class:`Tolerances`, a dict shaped like the TOML file, a TOML path, or None."""
    if value is None:
        return Tolerances()
    if isinstance(value, Tolerances):
        return value
    if isinstance(value, dict):
        return tolerances_from_dict(value)
    return load_tolerances(value)


__all__ = [
    "Tolerance",
    "ToleranceError",
    "Tolerances",
    "as_tolerances",
    "load_tolerances",
    "parse_tolerance_flag",
    "tolerances_from_dict",
]
