"""Our Zenoh sessions: no Zenoh shared memory left in /dev/shm, and a bridge waits for its
session to open."""

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


def test_a_bridge_started_before_the_session_opens_waits_for_it(tmp_path: Path) -> None:
    """A daemon opens its Zenoh session after registering, and the coordinator may send it a
    dataflow at once: the bridge waits for the session instead of failing on ``None``."""
    import asyncio

    from dora_runtime._zenoh_bridge import DataflowBridge, ZenohLink, free_endpoint

    async def scenario() -> bool:
        link = ZenohLink(free_endpoint())
        bridge = DataflowBridge(
            link, "df", str(tmp_path / "bridge.sock"), "dora-test-", ["a/out"], {}
        )
        start = asyncio.create_task(bridge.start())
        await asyncio.sleep(0.3)
        waited = not start.done()
        try:
            await asyncio.to_thread(link.open, [])
            await asyncio.wait_for(start, 10)
            return waited and "a/out" in bridge._publishers
        finally:
            await bridge.close()
            link.close()

    assert asyncio.run(scenario())


def test_a_session_that_never_opens_is_a_clear_error() -> None:
    import asyncio

    from dora_runtime._zenoh_bridge import ZenohLink, free_endpoint
    from dora_runtime.errors import TransportError

    link = ZenohLink(free_endpoint())
    with pytest.raises(TransportError, match="did not open within 0.2 s"):
        asyncio.run(link.wait_open(0.2))
