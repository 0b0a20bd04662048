"""Shared-memory transport and cleanup: regions are reused, nothing outlives a dataflow.

Zero-copy reception itself is checked per payload type in ``test_runtime_node_api.py``
(``test_large_payload_is_read_in_place_from_shared_memory``). The autouse ``no_leftovers``
fixture checks every test here for segments and processes as well; the explicit asserts below
name what each scenario must clean.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from conftest import DoraRunner


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _existing(segments: list[str]) -> list[str]:
    return [s for s in segments if os.path.exists(f"/dev/shm/{s}")]


@pytest.mark.parametrize("policy", ["backpressure", "drop_oldest"])
def test_regions_return_to_the_pool(dora: DoraRunner, policy: str) -> None:
    r = dora.run(
        f"""
nodes:
  - id: snd
    path: NODES/send_seq.py
    outputs: [out]
    env: {{COUNT: 200, PAYLOAD_BYTES: 65536, INTERVAL_S: 0.001}}
  - id: rcv
    path: NODES/collect.py
    inputs:
      x: {{source: snd/out, queue_size: 4, queue_policy: {policy}}}
"""
    )
    assert r.returncode == 0, r.output
    sent = r.result("send_seq")
    got = [e[2] for e in r.result("collect")["events"] if e[0] == "INPUT"]
    assert got[-1] == 199
    # 200 x 64 KiB went through a handful of segments: released regions were reused. With
    # backpressure at most queue_size regions are outstanding. With drop-oldest a region is
    # released when its message is read or dropped, but messages still in the socket buffer
    # hold theirs, so a receiver that is descheduled for a while costs more: a loose bound.
    if policy == "backpressure":
        assert got == list(range(200))
        assert 1 <= sent["created"] <= 6, sent
    else:
        assert 1 <= sent["created"] <= 80, sent
    assert len(sent["segments"]) == sent["created"]


def test_segments_are_removed_after_a_normal_end(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: snd
    path: NODES/send_seq.py
    outputs: [out]
    env: {COUNT: 20, PAYLOAD_BYTES: 65536}
  - id: rcv
    path: NODES/collect.py
    inputs:
      x: {source: snd/out, queue_policy: backpressure}
"""
    )
    assert r.returncode == 0, r.output
    segments = r.result("send_seq")["segments"]
    assert segments
    assert _existing(segments) == []


def test_segments_are_removed_after_sigint(dora: DoraRunner) -> None:
    proc = dora.start(
        """
nodes:
  - id: snd
    path: NODES/stream_shm.py
    inputs:
      tick: dora/timer/millis/20
    outputs: [out]
  - id: rcv
    path: NODES/collect.py
    inputs:
      x: snd/out
"""
    )
    dora.wait_for_file("stream_shm.ready")
    segments = dora.wait_for_result("stream_shm")["segments"]
    assert _existing(segments) == segments  # alive while the dataflow runs
    proc.send_signal(signal.SIGINT)
    r = dora.wait(proc)
    assert r.returncode == 0, r.output
    assert _existing(segments) == []
    # rcv sees STOP, or its input closing first when snd stopped and exited before rcv read STOP
    assert [e[0] for e in r.result("collect")["events"]][-1] in ("STOP", "INPUT_CLOSED")


def test_node_killed_with_sigkill_is_reported_and_cleaned_up(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: snd
    path: NODES/send_seq.py
    outputs: [out]
    env: {COUNT: 5, PAYLOAD_BYTES: 32768, EXIT: sigkill}
  - id: rcv
    path: NODES/collect.py
    inputs:
      x: {source: snd/out, queue_policy: backpressure}
"""
    )
    assert r.returncode == 1, r.output
    assert "node `snd` failed with signal SIGKILL" in r.stdout
    assert "failed nodes: snd (signal SIGKILL)" in r.stderr  # the summary names it the same way
    # What was sent before the kill still arrives (the segments outlive their sender).
    events = r.result("collect")["events"]
    assert [e[2] for e in events if e[0] == "INPUT"] == list(range(5))
    assert [e[0] for e in events[-2:]] == ["INPUT_CLOSED", "STOP"]
    assert _existing(r.result("send_seq")["segments"]) == []


@pytest.mark.parametrize("mode", ["exit", "sigkill", "sigint"])
def test_grandchildren_do_not_outlive_the_dataflow(dora: DoraRunner, mode: str) -> None:
    """A node starts ``sleep 300`` (sharing its stdout) and then exits, is killed, or is stopped."""
    yaml = f"""
nodes:
  - id: parent
    path: NODES/grandchild.py
    env: {{MODE: {"wait" if mode == "sigint" else mode}}}
"""
    proc = dora.start(yaml)
    info = dora.wait_for_result("grandchild")
    if mode == "sigint":
        assert _running(info["pid"])
        proc.send_signal(signal.SIGINT)
    r = dora.wait(proc, timeout=20)
    assert r.returncode == (1 if mode == "sigkill" else 0), r.output
    # dora run did not wait for the grandchild to close the stdout it inherited
    assert r.elapsed_s < 15
    assert not _running(info["node_pid"])
    assert not _running(info["pid"])


def test_a_grandchild_in_its_own_session_holding_stdout_ends_the_run_quietly(
    dora: DoraRunner,
) -> None:
    """Out of the node's process group, the grandchild survives the group kill and keeps the
    node's stdout open; the run still ends at once, with no asyncio noise about the pipes."""
    proc = dora.start(
        """
nodes:
  - id: parent
    path: NODES/grandchild.py
    env: {MODE: detached}
"""
    )
    info = dora.wait_for_result("grandchild")
    try:
        r = dora.wait(proc, timeout=20)
        assert r.returncode == 0, r.output
        assert r.elapsed_s < 15
        assert "Traceback" not in r.output and "Exception ignored" not in r.output, r.output
        assert _running(info["pid"])  # it left the node's group: not ours to kill
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info["pid"], signal.SIGKILL)


def test_nodes_die_with_a_killed_dora_run_and_the_next_run_cleans_up(dora: DoraRunner) -> None:
    proc = dora.start(
        """
nodes:
  - id: snd
    path: NODES/stream_shm.py
    inputs:
      tick: dora/timer/millis/20
    outputs: [out]
  - id: rcv
    path: NODES/collect.py
    inputs:
      x: snd/out
"""
    )
    dora.wait_for_file("stream_shm.ready")
    segments = dora.wait_for_result("stream_shm")["segments"]
    node_pids = [c.pid for c in psutil.Process(proc.pid).children()]
    assert len(node_pids) == 2
    proc.kill()  # SIGKILL: the daemon cannot clean up; its nodes get their parent-death signal
    proc.communicate()
    deadline = time.monotonic() + 5
    while any(_running(p) for p in node_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(p) for p in node_pids)
    assert _existing(segments) == segments
    # The next dora run (same temp dir) removes what the killed one left.
    r = dora.run(
        """
nodes:
  - id: probe
    path: NODES/probe.py
"""
    )
    assert r.returncode == 0, r.output
    assert "left by a dora process that was killed" in r.stdout
    assert _existing(segments) == []
