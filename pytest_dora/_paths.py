"""Which recordings ``--dora-replay`` names, and which of their channels become test items."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
    first part, so they are not recordings of their own. A path that does not exist is a
    golden to create if it names a ``.dora`` file; anything else is a ``pytest.UsageError``."""
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
        elif "::" in arg:
            raise pytest.UsageError(
                f"--dora-replay {arg}: --dora-replay takes recordings, not test items; select "
                f"a channel with `pytest {arg}` (or -k)"
            )
        elif arg.endswith(("/", os.sep)) or path.suffix != ".dora":
            raise pytest.UsageError(
                f"--dora-replay {arg}: no such file or folder; a golden recording's name ends "
                "in .dora (e.g. golden/run1.dora), and a folder must exist"
            )
        else:  # a golden to be recorded (``--dora-update-golden`` makes it)
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
