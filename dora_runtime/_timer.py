"""Parsing of time values in dataflow files: built-in timer sources and durations.

Timer sources (``dora/timer/<unit>/<N>``) are the built-in inputs the daemon ticks; durations are
the restart and health fields (``restart_delay: 500ms``). Both return plain numbers so the rest of
the runtime never deals with strings.
"""

from __future__ import annotations

import math
import re

TIMER_FORMS = (
    "dora/timer/millis/<N>, dora/timer/secs/<N>, dora/timer/micros/<N>, dora/timer/nanos/<N> "
    "or dora/timer/hz/<N> with N > 0"
)
_INT_UNIT_NS = {"millis": 1_000_000, "micros": 1_000, "nanos": 1}
"""Units whose count is an integer, as in dora-rs: nanoseconds per unit."""

_INT = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zµ]*)\s*")

# Seconds per duration unit; a bare number is seconds, as in dora-rs (which takes f64 seconds).
_UNIT_S: dict[str, float] = {
    "": 1.0,
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}

_NS_PER_S = 1_000_000_000


def parse_timer(source: str) -> int:
    """Return the period in nanoseconds of a built-in timer source.

    Accepted forms: ``dora/timer/millis/<N>``, ``dora/timer/micros/<N>`` and
    ``dora/timer/nanos/<N>`` (integers, as in dora-rs), ``dora/timer/secs/<N>`` (seconds; dora-rs
    takes an integer, fractions are accepted here) and ``dora/timer/hz/<N>`` (frequency in
    hertz, integer or decimal). ``N`` must be > 0.

    Raises ``ValueError`` with a one-line message naming the source and the accepted forms.
    """
    malformed = ValueError(f"malformed timer `{source}`: expected {TIMER_FORMS}")
    parts = source.split("/")
    if len(parts) != 4 or parts[0] != "dora" or parts[1] != "timer":
        raise malformed
    unit, number = parts[2], parts[3]
    if unit in _INT_UNIT_NS:
        if not _INT.fullmatch(number) or int(number) == 0:
            raise malformed
        return int(number) * _INT_UNIT_NS[unit]
    if unit not in ("secs", "hz") or not _DECIMAL.fullmatch(number):
        raise malformed
    value = float(number)
    if not value > 0 or not math.isfinite(value):
        raise malformed
    period_ns = round(value * _NS_PER_S) if unit == "secs" else round(_NS_PER_S / value)
    if period_ns < 1:
        raise ValueError(f"timer `{source}` has a period under 1 ns; use a lower rate")
    return period_ns


def parse_duration_s(value: object) -> float:
    """Return a duration in seconds from a number of seconds or a string like ``"500ms"``.

    Units: ``ns``, ``us``, ``ms``, ``s``, ``m``/``min``, ``h``; no unit means seconds. Booleans,
    negative, infinite and NaN values are refused.

    Raises ``ValueError`` with a message that says what was expected.
    """
    expected = 'expected seconds as a number or a duration string such as "500ms", "2s", "1m"'
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(expected)
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None or match.group(2) not in _UNIT_S:
            raise ValueError(expected)
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(expected + " (>= 0)")
    return seconds
