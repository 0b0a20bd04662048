"""Table, targets and ``RESULTS.md`` for ``bench/latency.py`` (no measuring here)."""

from __future__ import annotations

import datetime
import platform
import re
import subprocess
import sys
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

OURS, REF = "dora-py", "dora-rs"
_LAT = re.compile(r"(send_output\S*) (\d+ [KM]iB) p(\d+) \(us\)")


def _floor_key(row: str) -> str | None:
    m = _LAT.fullmatch(row)
    return f"{m.group(2)} p{m.group(3)} (us)" if m else None


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def rows_of(med: dict[str, dict[str, float]]) -> list[tuple[str, ...]]:
    """Table rows: metric, ours, dora-rs, ratio, floor (all formatted)."""
    names: list[str] = []
    for side in (OURS, REF):
        names += [k for k in med.get(side, {}) if k not in names]
    floor = med.get("floor", {})
    out = []
    for name in names:
        a, b = med.get(OURS, {}).get(name), med.get(REF, {}).get(name)
        fk = _floor_key(name)
        ratio = _ratio(a, b)
        out.append(
            (
                name,
                _fmt(a),
                _fmt(b),
                f"{ratio:.2f}" if ratio is not None else "-",
                _fmt(floor.get(fk)) if fk else "",
            )
        )
    return out


def memory_rows(memory: dict[str, dict[str, float]]) -> list[tuple[str, ...]]:
    keys = next(iter(memory.values()), {}).keys()
    out = []
    for k in keys:
        a, b = memory.get(OURS, {}).get(k), memory.get(REF, {}).get(k)
        ratio = _ratio(a, b)
        label = f"RSS {k} (MB)" if "RSS" not in k and "samples" not in k else f"RSS {k}"
        out.append((label, _fmt(a), _fmt(b), f"{ratio:.2f}" if ratio else "-", ""))
    return out


def targets(med: dict[str, dict[str, float]], memory: dict) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/FAIL/n/a) for every goal of the issue."""
    ours, ref = med.get(OURS, {}), med.get(REF, {})
    res: list[tuple[str, str, str]] = []

    def check(label: str, value: float | None, ok) -> None:
        if value is None:
            res.append((label, "-", "n/a"))
        else:
            res.append((label, f"{value:.2f}", "PASS" if ok(value) else "FAIL"))

    for name in [*ours, *(k for k in ref if k not in ours)]:
        m = _LAT.fullmatch(name)
        if m and m.group(1) == "send_output" and m.group(3) in ("50", "99"):
            check(
                f"{name}: ours/dora-rs <= 0.5",
                _ratio(ours.get(name), ref.get(name)),
                lambda r: r <= 0.5,
            )
    for method in ("send_output", "send_output_raw"):
        p4k, p4m = (ours.get(f"{method} {s} p50 (us)") for s in ("4 KiB", "4 MiB"))
        label = f"flat ({method}): ours 4 MiB p50 / ours 4 KiB p50 <= 2"
        check(label, _ratio(p4m, p4k), lambda r: r <= 2)
    for mode in ("default", "backpressure"):
        key = f"8 B {mode} received/s"
        check(
            f"{mode} received/s: ours/dora-rs >= 5",
            _ratio(ours.get(key), ref.get(key)),
            lambda r: r >= 5,
        )
    check("backpressure lost == 0 (ours)", ours.get("8 B backpressure lost"), lambda v: v == 0)
    lost, counted = ours.get("8 B default lost"), ours.get("8 B default drops reported by runtime")
    uncounted = None if lost is None or counted is None else lost - counted
    check("default: lost - drops reported by runtime == 0", uncounted, lambda v: v == 0)
    key = "startup dora run wall (s)"
    check("startup ours/dora-rs <= 1.0", _ratio(ours.get(key), ref.get(key)), lambda r: r <= 1.0)
    mem = memory.get(OURS)
    for who in ("daemon", "nodes"):
        growth = mem[f"{who} last"] - mem[f"{who} first"] if mem else None
        check(f"{who} RSS growth over run < 20 MB", growth, lambda g: g < 20)
    return res


def render(
    med: dict, memory: dict, console: Console | None = None, note: str = "", quick: bool = False
) -> None:
    """The figures table, then the targets (not under ``--quick``: tiny counts say nothing)."""
    console = console or Console(width=max(Console().width, 110))
    versus = bool(med.get(REF))
    who = "dora-py vs dora-rs 1.1.0" if versus else "dora-py alone (add --vs-dora-rs for ratios)"
    table = Table(title=f"{who} (medians over repetitions){note}")
    cols = ("metric", OURS, REF, "ours/dora-rs", "floor (shm+eventfd)")
    keep = [i for i, c in enumerate(cols) if versus or c not in (REF, "ours/dora-rs")]
    for i in keep:
        table.add_column(cols[i], justify="left" if i == 0 else "right")
    for row in rows_of(med) + memory_rows(memory):
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    if quick:
        console.print("targets: not evaluated (--quick runs tiny counts to check the bench runs)")
        return
    t = Table(title="targets" + ("" if versus else " (ratios to dora-rs need --vs-dora-rs)"))
    for col in ("target", "measured", "verdict"):
        t.add_column(col)
    for row in targets(med, memory):
        t.add_row(*row)
    console.print(t)


def machine() -> list[str]:
    lines = [
        f"- platform: {platform.platform()}",
        f"- python: {sys.version.split()[0]} ({sys.executable})",
        f"- cpus: {psutil.cpu_count(logical=True)} logical, {psutil.cpu_count(logical=False)} physical",
        f"- memory: {psutil.virtual_memory().total / 2**30:.1f} GiB",
    ]
    try:
        rev = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        lines.append(f"- dora-py revision: {rev or 'unknown'}; reference: dora-rs 1.1.0")
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            if line.split(":")[0].strip() in (
                "Model name",
                "Architecture",
                "CPU MHz",
                "Hypervisor vendor",
            ):
                lines.append(f"- {line.split(':')[0].strip()}: {line.split(':', 1)[1].strip()}")
    except (OSError, subprocess.SubprocessError):
        pass
    return lines


def _md_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def write_results(path: Path, med, raw, memory, settings, repeat: int, command: str) -> None:
    """Write the machine, the median table, the targets and every repetition's raw figures."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Messaging benchmark results",
        "",
        f"Generated by `{command}` on {now}; {repeat} repetition(s), medians shown.",
        f"Settings: {settings}.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        "## Table (medians)",
        "",
        *_md_table(
            ("metric", OURS, REF, "ours/dora-rs", "floor"), rows_of(med) + memory_rows(memory)
        ),
        "",
        "## Targets",
        "",
        *_md_table(("target", "measured", "verdict"), targets(med, memory)),
        "",
        "## Raw figures per repetition",
    ]
    for name, reps in raw.items():
        if not reps:
            continue
        lines += ["", f"### {name}", ""]
        header = ("metric", *(f"rep {i + 1}" for i in range(len(reps))))
        rows = [(k, *(_fmt(r.get(k)) for r in reps)) for k in reps[0]]
        lines += _md_table(header, rows)
    if memory:
        lines += ["", "### memory (single run)", ""]
        lines += _md_table(("metric", *memory), memory_rows_raw(memory))
    kept = ""
    if path.exists():  # hand-written sections after the generated part survive a rerun
        old = path.read_text(encoding="utf-8")
        if GENERATED_END in old:
            kept = old[old.index(GENERATED_END) + len(GENERATED_END) :]
    lines += ["", GENERATED_END]
    path.write_text("\n".join(lines) + kept if kept else "\n".join(lines) + "\n", "utf-8")
    print(f"wrote {path}")


GENERATED_END = "<!-- end of the part bench/latency.py writes; what follows is kept on reruns -->"


def memory_rows_raw(memory: dict[str, dict[str, float]]) -> list[tuple[str, ...]]:
    keys = next(iter(memory.values()), {}).keys()
    return [(k, *(_fmt(m.get(k)) for m in memory.values())) for k in keys]
