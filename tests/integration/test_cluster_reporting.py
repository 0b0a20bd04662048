"""What the cluster commands report when things go wrong: a coordinator that goes away under
`dora start --attach` / `dora logs -f`, nodes that fail, nodes that cannot start, stops."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster import TALKER, Cluster, cluster_fixture, wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path)


def _count(c: Cluster) -> int:
    return (c.result("talker") or {}).get("count", 0)


def _local(c: Cluster) -> None:
    c.coordinator()
    c.daemon("local")
    c.wait_daemons("local")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
def test_attach_and_follow_say_they_lost_the_coordinator(cluster: Cluster, sig: int) -> None:
    _local(cluster)
    path = cluster.write(TALKER)
    env = {"DORA_COORDINATOR": cluster.url or ""}
    attach = cluster.spawn("attach", ["start", str(path), "--name", "a", "--attach"], **env)
    wait_for(lambda: "tick 3" in cluster.log("attach"), 15, "the attached logs")
    follow = cluster.spawn("follow", ["logs", "a", "talker", "--follow"], **env)
    wait_for(lambda: "tick" in cluster.log("follow"), 15, "the followed logs")

    cluster.kill("coordinator", sig)
    port = (cluster.url or "").rsplit(":", 1)[1]
    for name, proc in (("attach", attach), ("follow", follow)):
        assert proc.wait(10) == 1, cluster.log(name)
        last = cluster.log(name).strip().splitlines()[-1]
        assert last.startswith(f"error: lost the coordinator at ws://127.0.0.1:{port}"), last
        assert "dataflow `a` may still be running" in last and "dora list" in last
        assert "Traceback" not in cluster.log(name)
    before = _count(cluster)
    wait_for(lambda: _count(cluster) > before + 3, 10, "the nodes to keep running")
