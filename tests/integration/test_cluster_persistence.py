"""Coordinator crashes and restarts, daemons that die, state left behind."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster import TALKER, Cluster, cluster_fixture, wait_for

from dora_runtime.coordinator.client import pid_alive
from dora_runtime.coordinator.state import StateStore


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path)


def _count(c: Cluster) -> int:
    return (c.result("talker") or {}).get("count", 0)


@pytest.mark.slow
def test_coordinator_kill9_nodes_keep_running_and_it_resumes(cluster: Cluster) -> None:
    url = cluster.coordinator()
    port = int(url.rsplit(":", 1)[1])
    cluster.daemon("local")
    cluster.wait_daemons("local")
    cluster.dora("start", str(cluster.write(TALKER)), "--name", "survivor")
    wait_for(lambda: _count(cluster) >= 3, 15, "ticks")

    cluster.kill("coordinator")
    before = _count(cluster)
    time.sleep(1.0)
    assert _count(cluster) > before + 5, "nodes must keep running without the coordinator"
    res = cluster.dora("list", check=False)
    assert res.returncode == 1 and "cannot reach the coordinator" in res.stderr

    cluster.coordinator(port=port)
    assert "found state of a coordinator that stopped without cleaning up" in cluster.log(
        "coordinator"
    )
    row = cluster.wait_status("survivor", "running", timeout_s=20)
    assert row["running"] == 2
    assert "recovered: running" in cluster.log("coordinator")
    out = cluster.dora("stop", "survivor", "--grace", "3s").stdout
    assert "survivor: stopped" in out
    assert not pid_alive(cluster.result("talker")["pid"])
    assert "retrying (nodes keep running)" in cluster.log("daemon-local")


def test_a_dead_daemon_fails_its_dataflows(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("local")
    cluster.wait_daemons("local")
    cluster.dora("start", str(cluster.write(TALKER)), "--name", "doomed")
    wait_for(lambda: _count(cluster) >= 2, 15, "ticks")
    cluster.kill("daemon-local")
    row = cluster.wait_status("doomed", "failed", timeout_s=15)
    assert "daemon `local` disconnected" in row["reason"]
    assert "talker" in row["reason"] and "sink" in row["reason"]
    wait_for(lambda: not pid_alive(cluster.result("talker")["pid"]), 5, "the node to die")
    res = cluster.dora("stop", "doomed", check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("error: dataflow doomed had already failed: daemon `local`")


def test_state_of_a_crash_during_start_is_handled(cluster: Cluster) -> None:
    store = StateStore(cluster.home / "coordinator.sqlite")
    store.insert_dataflow("0000aaaa-half", "half", None, "nodes: []", {}, {"n": "local"})
    store.close()
    (cluster.home / "coordinator.json").write_text(json.dumps({"pid": 999999, "url": "ws://x"}))
    cluster.coordinator()
    row = cluster.dataflow("half")
    assert row["status"] == "failed"
    assert "stopped while it was starting" in row["reason"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "said"),
    [
        (signal.SIGKILL, "the previous coordinator (pid {pid}) died"),
        (signal.SIGTERM, "starting the coordinator on port {port}, where the last one listened"),
    ],
    ids=["kill-9", "sigterm"],
)
def test_dora_up_restarts_the_coordinator_on_its_port(
    cluster: Cluster, sig: signal.Signals, said: str
) -> None:
    """Killed, or stopped cleanly (SIGTERM: systemctl stop, Ctrl-C; that removes
    coordinator.json): the next `dora up` starts on the old port, where the daemon retries, so
    the running dataflow is kept."""
    cluster.dora("up")
    info = json.loads((cluster.home / "coordinator.json").read_text())
    cluster.dora("start", str(cluster.write(TALKER)), "--name", "kept")
    wait_for(lambda: _count(cluster) >= 2, 15, "ticks")
    os.kill(info["pid"], sig)
    wait_for(lambda: not pid_alive(info["pid"]), 10, "the coordinator to exit")
    out = cluster.dora("up").stdout
    assert said.format(pid=info["pid"], port=info["port"]) in out, out
    assert "daemon `local` already running" in out
    new = json.loads((cluster.home / "coordinator.json").read_text())
    assert new["port"] == info["port"] and new["pid"] != info["pid"]
    cluster.url = new["url"]
    cluster.wait_status("kept", "running")
    down = cluster.dora("destroy", "--grace", "2s").stdout
    assert "stopped dataflow kept" in down


def test_a_daemon_finds_the_coordinator_dora_up_started(cluster: Cluster) -> None:
    cluster.dora("up")
    cluster.url = json.loads((cluster.home / "coordinator.json").read_text())["url"]
    # no --coordinator: found as the other commands find it
    state = str(cluster.dir / "daemons" / "arm")
    cluster.spawn("daemon-arm", ["daemon", "--machine-id", "arm", "--state-dir", state])
    cluster.wait_daemons("local", "arm")
    bad = cluster.dora("daemon", "--coordinator", "127.0.0.1:6012", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: --coordinator '127.0.0.1:6012': expected ws://HOST:PORT (or wss://)"
    )
    cluster.dora("destroy")


def test_a_database_of_an_older_coordinator_gets_the_failures_column(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "coordinator.sqlite"
    with sqlite3.connect(db) as old:  # the first schema's dataflows table, one row in it
        old.execute(
            "CREATE TABLE dataflows (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT "
            "NULL, reason TEXT, descriptor_path TEXT, yaml TEXT NOT NULL, plan TEXT NOT NULL "
            "DEFAULT '{}', parts_done TEXT NOT NULL DEFAULT '[]', created REAL NOT NULL, "
            "started REAL, ended REAL)"
        )
        old.execute(
            "INSERT INTO dataflows (id, name, status, yaml, created) VALUES ('x', 'n', 'running', '', 0)"
        )
    old.close()
    store = StateStore(db)
    try:
        assert store.get("x").failures == {}
        assert store.add_failures("x", {"a": "exit 3"}) == {"a": "exit 3"}
        assert store.add_failures("x", {"b": "signal SIGKILL"}) == {
            "a": "exit 3",
            "b": "signal SIGKILL",
        }
    finally:
        store.close()
    reopened = StateStore(db)
    assert reopened.get("x").summary()["failures"] == {"a": "exit 3", "b": "signal SIGKILL"}
    reopened.close()
