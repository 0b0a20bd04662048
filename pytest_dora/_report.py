"""``--dora-report DIR``: one self-contained HTML page per failing channel, plotting recorded vs
replayed numeric values message by message as inline SVG (no plotting library needed)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_MAX_SIGNALS = 12
_MAX_ELEMENTS = 8  # arrays up to this long are plotted element by element, longer as statistics
_W, _H, _PAD = 760, 150, 36
_COLORS = {"recorded": "#1f77b4", "replayed": "#ff7f0e"}

Signals = dict[str, list[float | None]]


def write_channel_report(report_dir: Path, recording: Path, channel: str, result: Any) -> Path:
    """Write ``<recording stem>__<channel>.html`` into ``report_dir``; returns its path."""
    recorded = list(result.recorded.get(channel, []))
    replayed = list(result.replayed.get(channel, []))
    page = render_page(recording.name, channel, recorded, replayed)
    report_dir.mkdir(parents=True, exist_ok=True)
    out = report_dir / f"{recording.stem}__{channel.replace('/', '__')}.html"
    out.write_text(page, encoding="utf-8")
    return out


def render_page(title: str, channel: str, recorded: Sequence[Any], replayed: Sequence[Any]) -> str:
    """The HTML page for one channel; ``recorded``/``replayed`` are messages with ``.data``."""
    rec, rep = signals_of(recorded), signals_of(replayed)
    names = list(dict.fromkeys([*rec, *rep]))[:_MAX_SIGNALS]
    n = max(len(recorded), len(replayed))
    panels = [
        _panel(
            name, rec.get(name, [None] * len(recorded)), rep.get(name, [None] * len(replayed)), n
        )
        for name in names
    ]
    if not panels:
        panels = ["<p>No numeric values on this channel to plot.</p>"]
    legend = " ".join(f'<span style="color:{c}">&#9644; {k}</span>' for k, c in _COLORS.items())
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} :: {html.escape(channel)}</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em}h2{margin-bottom:0}"
        "svg{display:block;margin:0.6em 0;background:#fafafa}</style></head><body>"
        f"<h2>{html.escape(channel)}</h2><p>{html.escape(title)}: {len(recorded)} recorded, "
        f"{len(replayed)} replayed message(s). {legend}; red line: first difference.</p>"
        + "\n".join(panels)
        + "</body></html>\n"
    )


def signals_of(messages: Sequence[Any]) -> Signals:
    """Numeric signals of a message list: name → one value per message (``None`` = absent)."""
    out: Signals = {}
    for i, msg in enumerate(messages):
        for name, value in _flatten(msg.data).items():
            out.setdefault(name, [None] * len(messages))[i] = value
    return out


def _flatten(data: Any) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.compute as pc

    values: dict[str, float] = {}
    if isinstance(data, pa.StructArray):
        if len(data) != 1:
            values["rows"] = float(len(data))
        for idx in range(data.type.num_fields):
            name = data.type.field(idx).name
            for k, v in _flatten(data.field(idx)).items():
                values[name if k == "[0]" and len(data) == 1 else f"{name}{k}"] = v
        return values
    if not (pa.types.is_integer(data.type) or pa.types.is_floating(data.type)):
        if pa.types.is_boolean(data.type):
            data = data.cast(pa.int8())
        else:
            return {"len": float(len(data))} if len(data) != 1 else {}
    if len(data) <= _MAX_ELEMENTS:
        for i, v in enumerate(data.to_pylist()):
            if v is not None:
                values[f"[{i}]"] = float(v)
        return values
    stats = pc.min_max(data).as_py()
    values["len"] = float(len(data))
    values["mean"] = float(pc.mean(data).as_py() or 0.0)
    values["min"], values["max"] = float(stats["min"] or 0), float(stats["max"] or 0)
    return values


def first_difference(rec: list[float | None], rep: list[float | None]) -> int | None:
    """Index of the first message where the two signals differ (or one has no value)."""
    for i in range(max(len(rec), len(rep))):
        a = rec[i] if i < len(rec) else None
        b = rep[i] if i < len(rep) else None
        if a is None and b is None:
            continue
        if a is None or b is None or not math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0):
            return i
    return None


def _panel(name: str, rec: list[float | None], rep: list[float | None], n: int) -> str:
    finite = [v for v in [*rec, *rep] if v is not None and math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0

    def xy(i: int, v: float) -> str:
        x = _PAD + (_W - 2 * _PAD) * (i / max(n - 1, 1))
        y = _H - _PAD / 2 - (_H - _PAD) * ((v - lo) / (hi - lo))
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img">',
        f'<text x="4" y="14" font-size="12">{html.escape(name)}</text>',
        f'<text x="4" y="{_PAD}" font-size="10">{hi:.4g}</text>',
        f'<text x="4" y="{_H - 6}" font-size="10">{lo:.4g}</text>',
        f'<text x="{_W - _PAD}" y="{_H - 6}" font-size="10">#{n - 1}</text>',
    ]
    diff = first_difference(rec, rep)
    if diff is not None:
        x = _PAD + (_W - 2 * _PAD) * (diff / max(n - 1, 1))
        parts.append(
            f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{_H - 10}" stroke="red" '
            f'stroke-width="1"><title>first difference: message #{diff}</title></line>'
        )
    for label, series, dash in (
        ("recorded", rec, ""),
        ("replayed", rep, ' stroke-dasharray="4 3"'),
    ):
        for run in _runs(series):
            if len(run) == 1:  # a lone value has no line to draw: mark it
                x, y = xy(*run[0]).split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="2" fill="{_COLORS[label]}"/>')
                continue
            points = " ".join(xy(i, v) for i, v in run)
            parts.append(
                f'<polyline fill="none" stroke="{_COLORS[label]}" stroke-width="1.5"{dash} '
                f'points="{points}"><title>{label}</title></polyline>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _runs(series: list[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive finite values, so gaps stay gaps in the plot."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for i, v in enumerate(series):
        if v is None or not math.isfinite(v):
            if current:
                runs.append(current)
            current = []
        else:
            current.append((i, v))
    if current:
        runs.append(current)
    return runs
