"""Several daemons: placement by machine id and labels, outputs across daemons over Zenoh, on
loopback and between two network namespaces joined by a veth pair."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster import Cluster, cluster_fixture, wait_for


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path)


CROSS = """
nodes:
  - id: sender
    path: NODES/send_seq.py
    deploy: {machine: a}
    env: {COUNT: "30", LARGE_EVERY: "3", INTERVAL_S: "0.01"}
    outputs: [out]
  - id: sink
    path: NODES/collect.py
    deploy: {labels: {role: sink}}
    inputs:
      x: {source: sender/out, queue_size: 100}
  - id: talker
    path: NODES/cluster_talker.py
    deploy: {machine: b}
    env: {MAX_TICKS: "5"}
    inputs:
      tick: dora/timer/millis/20
    outputs: [out]
  - id: back
    path: NODES/collect.py
    deploy: {machine: a}
    env: {NAME: back}
    inputs:
      t: talker/out
"""


def _check_cross(c: Cluster) -> None:
    sink = c.result("collect")
    values = [e[2] for e in sink["events"] if e[0] == "INPUT"]
    assert values == list(range(30)), "every message, large (shm) and small, in order"
    assert [e[0] for e in sink["events"][-2:]] == ["INPUT_CLOSED", "STOP"]
    back = c.result("back")
    assert [e[2] for e in back["events"] if e[0] == "INPUT"] == [1, 2, 3, 4, 5]
    assert [e[0] for e in back["events"][-2:]] == ["INPUT_CLOSED", "STOP"]
    sender = c.result("send_seq")
    assert sender["created"] <= 2, "the bridge releases shared memory at once"


@pytest.mark.slow
def test_two_daemons_place_by_machine_and_labels_and_exchange_outputs(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("a")
    cluster.daemon("b", "--labels", "role=sink")
    cluster.wait_daemons("a", "b")
    res = cluster.dora("start", str(cluster.write(CROSS)), "--name", "cross", "--attach")
    assert "tick 5" in res.stdout
    row = cluster.dataflow("cross")
    assert row["status"] == "finished", row
    assert row["placement"] == {"sender": "a", "sink": "b", "talker": "b", "back": "a"}
    _check_cross(cluster)
    logs = cluster.dora("logs", "cross", "talker").stdout
    assert "tick 5" in logs


PHASE = """
nodes:
  - id: early
    path: NODES/tick_times.py
    deploy: {machine: a}
    env: {NAME: early}
    inputs: {tick: dora/timer/millis/100}
  - id: late
    path: NODES/tick_times.py
    deploy: {machine: b}
    env: {NAME: late, START_S: "1.0"}
    inputs: {tick: dora/timer/millis/100}
"""


def test_timers_start_together_on_every_machine(cluster: Cluster) -> None:
    """Each daemon started its timers once its own nodes were up: a 10 Hz timer on `a` ran a
    second ahead of the same timer on `b` (whose node took 1 s to start), at any phase, and a
    recording of the two could not be replayed exactly."""
    cluster.coordinator()
    cluster.daemon("a")
    cluster.daemon("b")
    cluster.wait_daemons("a", "b")
    cluster.dora("start", str(cluster.write(PHASE)), "--name", "phase", "--attach")
    early, late = cluster.result("early"), cluster.result("late")
    assert len(early["ticks"]) == len(late["ticks"]) == 5
    assert early["ticks"][0] > late["connected_ns"], "timers wait for every machine's nodes"
    offsets_ms = [(a - b) / 1e6 for a, b in zip(early["ticks"], late["ticks"], strict=True)]
    assert all(abs(d) < 30 for d in offsets_ms), offsets_ms


def test_remote_sender_that_dies_early_closes_the_input(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("a")
    cluster.daemon("b")
    cluster.wait_daemons("a", "b")
    (cluster.dir / "dies.py").write_text("import sys\nprint('bye', flush=True)\nsys.exit(3)\n")
    path = cluster.write(
        f"""
nodes:
  - id: dies
    path: {cluster.dir / "dies.py"}
    deploy: {{machine: a}}
    outputs: [out]
  - id: sink
    path: NODES/collect.py
    deploy: {{machine: b}}
    inputs:
      x: dies/out
"""
    )
    cluster.dora("start", str(path), "--name", "early")
    row = cluster.wait_status("early", "failed", timeout_s=20)
    assert "dies" in row["reason"]
    events = cluster.result("collect")["events"]
    assert [e[:2] for e in events] == [["INPUT_CLOSED", "x"], ["STOP", "ALL_INPUTS_CLOSED"]]


def _sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


@pytest.fixture
def netns():
    """Two network namespaces joined by a veth pair: 10.213.N.1 and 10.213.N.2."""
    tag = uuid.uuid4().hex[:6]
    ns = (f"dora-a-{tag}", f"dora-b-{tag}")
    probe = _sh("ip", "netns", "add", ns[0])
    if probe.returncode != 0:
        reason = f"cannot create network namespaces (`ip netns add`): {probe.stderr.strip()}"
        print(reason)
        pytest.skip(reason)
    net = int(tag[:2], 16)
    try:
        steps = [
            ("ip", "netns", "add", ns[1]),
            ("ip", "link", "add", f"dva{tag}", "type", "veth", "peer", "name", f"dvb{tag}"),
            ("ip", "link", "set", f"dva{tag}", "netns", ns[0]),
            ("ip", "link", "set", f"dvb{tag}", "netns", ns[1]),
        ]
        for i, n in enumerate(ns):
            dev = f"dv{'ab'[i]}{tag}"
            steps += [
                ("ip", "-n", n, "addr", "add", f"10.213.{net}.{i + 1}/24", "dev", dev),
                ("ip", "-n", n, "link", "set", dev, "up"),
                ("ip", "-n", n, "link", "set", "lo", "up"),
            ]
        for step in steps:
            res = _sh(*step)
            if res.returncode != 0:
                reason = f"cannot set up the veth pair ({' '.join(step)}): {res.stderr.strip()}"
                print(reason)
                pytest.skip(reason)
        yield ns, (f"10.213.{net}.1", f"10.213.{net}.2")
    finally:
        for n in ns:
            _sh("ip", "netns", "del", n)


@pytest.mark.slow
def test_two_daemons_in_two_network_namespaces(cluster: Cluster, netns) -> None:
    (ns_a, ns_b), (ip_a, ip_b) = netns
    token = "t-" + uuid.uuid4().hex
    url = f"ws://{ip_a}:6012"
    in_a = ["ip", "netns", "exec", ns_a]
    in_b = ["ip", "netns", "exec", ns_b]
    info = cluster.home / "coordinator.json"
    cluster.spawn(
        "coordinator",
        ["coordinator", "--host", ip_a, "--port", "6012", "--state-dir", str(cluster.home)],
        prefix=in_a,
        DORA_TOKEN=token,
    )
    wait_for(info.exists, 15, "the coordinator in the namespace")
    for name, prefix, ip, extra in (
        ("a", in_a, ip_a, []),
        ("b", in_b, ip_b, ["--labels", "role=sink"]),
    ):
        args = [
            "daemon",
            "--coordinator",
            url,
            "--machine-id",
            name,
            "--zenoh-listen",
            f"tcp/{ip}:7447",
        ]
        cluster.spawn(
            f"daemon-{name}",
            [*args, "--state-dir", str(cluster.dir / name), *extra],
            prefix=prefix,
            DORA_TOKEN=token,
        )

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**cluster.env, "DORA_COORDINATOR": url, "DORA_TOKEN": token}
        res = subprocess.run(
            [*in_a, *_python_cli(), *args], env=env, capture_output=True, text=True, timeout=60
        )
        if check:
            assert res.returncode == 0, res.stdout + res.stderr
        return res

    def both_connected() -> bool:
        out = cli("list", "--daemons", check=False).stdout
        return out.count(" connected ") == 2

    wait_for(both_connected, 20, "both daemons to connect across namespaces")
    out = cli("list", "--daemons").stdout
    assert f"tcp/{ip_b}:7447" in out
    res = cli("start", str(cluster.write(CROSS)), "--name", "netns", "--attach")
    assert "tick 5" in res.stdout
    _check_cross(cluster)
    no_token = subprocess.run(
        [*in_a, *_python_cli(), "list"],
        env={**cluster.env, "DORA_COORDINATOR": url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert no_token.returncode == 1 and "wrong or missing token" in no_token.stderr
    cli("destroy")  # the coordinator in the other namespace, through $DORA_COORDINATOR
    assert os.environ.get("DORA_TOKEN") is None


def _python_cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "dora_cli.main"]
