"""Which recordings ``--dora-replay`` names, and which of their channels become test items."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PART = re.compile(r"^(?P<base>.+)_(?P<n>\d{3})\.dora$")  # split parts: run_001.dora, run_002...
_MAGIC = set("*?[")


@dataclass(slots=True)
class Selection:
    """``--dora-replay`` arguments expanded: existing recordings (sorted, no duplicates) and the
    plain file paths that do not exist (missing goldens)."""

    recordings: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  #: folders or globs that matched nothing


def expand(args: list[str], root: Path) -> Selection:
    """Files, folders (every ``*.dora`` below them) and globs (``**`` allowed), relative to
    ``root`` (pytest's invocation folder). A split recording's later parts are read with its
    first part, so they are not recordings of their own."""
    sel = Selection()
    found: dict[Path, None] = {}
    for arg in args:
        path = Path(arg) if Path(arg).is_absolute() else root / arg
        if any(c in arg for c in _MAGIC):
            hits = [Path(p) for p in glob.glob(str(path), recursive=True)]
            hits = [h for h in hits if h.is_file() and h.suffix == ".dora"]
        elif path.is_dir():
            hits = sorted(path.rglob("*.dora"))
        elif path.exists():
            hits = [path]
        else:
            sel.missing.append(path.resolve())
            continue
        hits = [h for h in hits if not _later_part(h)]
        if not hits:
            sel.empty.append(arg)
        for h in sorted(hits):
            found.setdefault(h.resolve(), None)
    sel.recordings = list(found)
    return sel


def _later_part(path: Path) -> bool:
    """True for ``run_002.dora``... when ``run_001.dora`` exists: it is read with part 1."""
    m = _PART.match(path.name)
    return bool(m) and int(m["n"]) > 1 and path.with_name(f"{m['base']}_001.dora").exists()


def live_nodes(dataflow_yaml: str, replace: dict[str, str] | None = None) -> set[str]:
    """Nodes that run live during a replay: those with an input from another node, dynamic
    nodes and replaced nodes. Sensors fed only by timers are replayed from the recording
    (the rule ``dora_replay``'s replay plan applies)."""
    import yaml

    doc: Any = yaml.safe_load(dataflow_yaml) or {}
    live = set(replace or ())
    for node in doc.get("nodes", []) or []:
        if node.get("path") == "dynamic":
            live.add(str(node.get("id")))
        inputs = node.get("inputs") or {}
        for spec in inputs.values():
            source = spec.get("source") if isinstance(spec, dict) else spec
            if isinstance(source, str) and not source.startswith("dora/"):
                live.add(str(node.get("id")))
                break
    return live


def compared_channels(path: Path, replace: dict[str, str] | None = None) -> list[str]:
    """The recorded outputs of the nodes that run live when ``path`` is replayed (sorted)."""
    import dora_replay

    with dora_replay.open(path) as rec:
        live = live_nodes(rec.dataflow_yaml, replace)
        return sorted(ch for ch in rec.channels if ch.split("/", 1)[0] in live)


def relocate_dataflow(recorded_path: str | None, root: Path) -> Path | None:
    """The dataflow file a recording was made from, found in this checkout when the recorded
    absolute path does not exist here (another machine, another clone): the longest tail of
    that path that exists below ``root``. ``None`` when the recorded path is fine or unknown."""
    if not recorded_path or Path(recorded_path).is_file():
        return None
    parts = Path(recorded_path).parts
    for i in range(1, len(parts)):
        candidate = root.joinpath(*parts[i:])
        if candidate.is_file():
            return candidate
    return None
