"""Our Zenoh sessions leave nothing in /dev/shm: Zenoh's shared-memory transport is off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

zenoh = pytest.importorskip("zenoh")

from dora_runtime._zenoh_bridge import zenoh_config  # noqa: E402


def _zenoh_files_of_this_process() -> set[str]:
    """``/dev/shm/*.zenoh`` files this process has mapped or open."""
    maps = Path("/proc/self/maps").read_text()
    found = {line.split()[-1] for line in maps.splitlines() if line.endswith(".zenoh")}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/shm/") and target.endswith(".zenoh"):
            found.add(target)
    return found


@pytest.mark.parametrize("shm", [False, True], ids=["ours", "zenoh-shm-on"])
def test_session_opens_no_zenoh_shared_memory(shm: bool) -> None:
    before = _zenoh_files_of_this_process()
    cfg = zenoh_config("tcp/127.0.0.1:0", [])
    if shm:  # the control: proves the check sees Zenoh's file when the transport is on
        cfg.insert_json5("transport/shared_memory/enabled", "true")
    session = zenoh.open(cfg)
    try:
        opened = _zenoh_files_of_this_process() - before
    finally:
        session.close()
    if shm:
        assert opened, "Zenoh no longer maps a /dev/shm/*.zenoh file: this check is stale"
        for path in opened:  # a killed process would leave it; this one cleans up at exit
            Path(path).unlink(missing_ok=True)
    else:
        assert opened == set()
