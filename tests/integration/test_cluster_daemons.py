"""`dora daemon` that cannot serve (Zenoh endpoint taken or malformed, token or id refused),
and which daemons `dora list --daemons` keeps listing."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster import Cluster, cluster_fixture, wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path)


def _listed(c: Cluster) -> dict[str, bool]:
    return {d["machine_id"]: d["connected"] for d in c.request({"type": "daemons"})["daemons"]}


def _daemon(c: Cluster, machine: str, *args: str):
    state = str(c.dir / "daemons" / machine)
    return c.dora(
        "daemon",
        *("--coordinator", c.url or "", "--machine-id", machine, "--state-dir", state, *args),
        check=False,
        timeout=30,
    )


def test_a_zenoh_endpoint_it_cannot_listen_on_is_one_line_before_registering(
    cluster: Cluster,
) -> None:
    cluster.coordinator()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = _daemon(cluster, "arm2", "--zenoh-listen", f"tcp/127.0.0.1:{port}")
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip() == (
        f"error: --zenoh-listen tcp/127.0.0.1:{port}: cannot listen there (address already in "
        "use): pick another port, or leave --zenoh-listen out for a free one"
    )
    res = _daemon(cluster, "arm3", "--zenoh-listen", "udp/1.2.3")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "error: --zenoh-listen udp/1.2.3: not an endpoint Zenoh can listen on (invalid socket "
        "address); expected tcp/IP:PORT with an address of this machine, such as "
        "tcp/10.0.0.2:7447"
    )
    assert _listed(cluster) == {}, "a daemon that could not serve never registered"


def test_an_id_already_connected_is_one_line_and_exit_1(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("arm")
    cluster.wait_daemons("arm")
    res = _daemon(cluster, "arm")
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: the coordinator at {cluster.url} refused this daemon: a daemon with machine id "
        "`arm` is already connected"
    )
    assert _listed(cluster) == {"arm": True}


def test_daemons_that_left_are_not_listed_forever(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("gone")
    cluster.daemon("dead")
    cluster.daemon("stays")
    cluster.wait_daemons("gone", "dead", "stays")

    cluster.kill("daemon-gone", signal.SIGTERM)  # shuts down cleanly: unlisted at once
    assert cluster.procs["daemon-gone"].wait(10) == 0
    wait_for(lambda: "gone" not in _listed(cluster), 2, "`gone` to be unlisted")

    cluster.kill("daemon-dead")  # kill -9: listed as disconnected while it may come back
    wait_for(lambda: _listed(cluster).get("dead") is False, 5, "`dead` to be disconnected")
    wait_for(lambda: "dead" not in _listed(cluster), 8, "`dead` to be forgotten")
    assert "daemon `dead` did not reconnect within 3 s" in cluster.log("coordinator")
    assert _listed(cluster) == {"stays": True}


def test_a_zenoh_listener_that_fails_after_registering_unregisters(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port was free when checked, and taken by the time the session opens."""
    import asyncio

    from dora_runtime import daemon_service
    from dora_runtime.errors import DoraError

    cluster.coordinator()
    monkeypatch.setattr(daemon_service, "check_zenoh_listen", lambda endpoint: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = daemon_service.DaemonService(
            cluster.url or "",
            "late",
            {},
            cluster.dir / "late",
            zenoh_listen=f"tcp/127.0.0.1:{port}",
        )
        with pytest.raises(DoraError, match="cannot listen there .address already in use"):
            asyncio.run(asyncio.wait_for(service.run(), 20))
    wait_for(lambda: "late" not in _listed(cluster), 2, "`late` to be unlisted")
