"""Helpers shared by the test nodes: results as JSON files, file-based handshakes with the test.

``RESULT_DIR`` is set by the test's ``dora run`` helper and inherited by every node.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def result_dir() -> Path:
    return Path(os.environ["RESULT_DIR"])


def save(name: str, obj: Any) -> None:
    """Write ``obj`` as ``RESULT_DIR/<name>.json`` atomically (tests may poll for it)."""
    path = result_dir() / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, default=str), encoding="utf-8")
    os.replace(tmp, path)


def signal_file(name: str) -> None:
    (result_dir() / name).touch()


def wait_file(name: str, timeout_s: float = 20.0) -> None:
    path = result_dir() / name
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.005)


def shm_mappings() -> list[tuple[int, int, str]]:
    """``(start, end, path)`` of every ``/dev/shm/dora-*`` mapping of this process."""
    out = []
    with open("/proc/self/maps", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith("/dev/shm/dora-"):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end, parts[5]))
    return out


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))
