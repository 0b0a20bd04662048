"""What the cluster commands report when things go wrong: a coordinator that goes away under
`dora start --attach` / `dora logs -f`, nodes that fail, nodes that cannot start, stops."""

from __future__ import annotations

import re
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


CRASHER = """
nodes:
  - id: talker
    path: NODES/cluster_talker.py
    deploy: {machine: a}
    inputs:
      tick: dora/timer/millis/50
    outputs: [out]
  - id: crasher
    path: NODES/crash.py
    deploy: {machine: MACHINE}
    env: {CRASH_AFTER: "3"}
    inputs:
      tick: dora/timer/millis/50
    outputs: [out]
"""


@pytest.mark.parametrize("machines", [["a"], ["a", "b"]], ids=["one-daemon", "two-daemons"])
def test_a_node_failure_is_reported_at_once_and_kept_by_stop(
    cluster: Cluster, machines: list[str]
) -> None:
    cluster.coordinator()
    for m in machines:
        cluster.daemon(m)
    cluster.wait_daemons(*machines)
    path = cluster.write(CRASHER.replace("MACHINE", machines[-1]))
    cluster.dora("start", str(path), "--name", "c")
    wait_for(lambda: cluster.result("crash"), 15, "the crash")
    row = wait_for(lambda: (r := cluster.dataflow("c"))["reason"] and r, 10, "a reason")
    assert row["status"] == "running", row
    assert row["reason"] == "failed nodes: crasher (exit 3)"
    listing = cluster.dora("list").stdout
    line = next(ln for ln in listing.splitlines() if ln.startswith("c "))
    assert (
        " running " in line and " 1/2 " in line and line.endswith("failed nodes: crasher (exit 3)")
    )

    res = cluster.dora("stop", "c", check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.startswith("error: dataflow c failed (stopping took ")
    assert res.stderr.strip().endswith("s): failed nodes: crasher (exit 3)")
    row = cluster.dataflow("c")
    assert row["status"] == "failed" and row["reason"] == "failed nodes: crasher (exit 3)"
    assert row["node_status"]["talker"]["status"] == "finished"
    again = cluster.dora("stop", "c", check=False)
    assert again.returncode == 1
    assert (
        again.stderr.strip()
        == "error: dataflow c had already failed: failed nodes: crasher (exit 3)"
    )


def test_a_node_killed_after_the_grace_period_fails_the_dataflow(cluster: Cluster) -> None:
    _local(cluster)
    path = cluster.write(
        TALKER + "  - id: stubborn\n    path: NODES/ignore_stop.py\n", "stubborn.yml"
    )
    cluster.dora("start", str(path), "--name", "s")
    wait_for(lambda: (cluster.results / "ignore_stop.ready").exists(), 15, "the node")
    res = cluster.dora("stop", "s", "--grace", "1s", check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    reason = "failed nodes: stubborn (killed: did not stop within 1 s)"
    assert res.stderr.strip().endswith(f"s): {reason}"), res.stderr
    row = cluster.dataflow("s")
    assert row["status"] == "failed" and row["reason"] == reason

    cluster.dora("start", str(cluster.write(TALKER)), "--name", "fine")
    wait_for(lambda: _count(cluster) >= 2, 15, "ticks")
    assert cluster.dora("stop", "fine").stdout.startswith("dataflow fine: stopped (stopping took")
    again = cluster.dora("stop", "fine")
    assert again.stdout.strip() == "dataflow fine was already stopped: nothing to stop"


def test_error_messages_suggest_options_that_exist(cluster: Cluster, tmp_path: Path) -> None:
    _local(cluster)
    path = cluster.write(TALKER)
    out = cluster.dir / "run.dora"
    out.write_bytes(b"not a recording")
    res = cluster.dora("start", str(path), "--name", "r", "--record", str(out), check=False)
    assert res.returncode == 1
    assert "pass --overwrite to replace it" in res.stderr
    assert "--overwrite" in cluster.dora("start", "--help").stdout
    cluster.dora("start", str(path), "--name", "r", "--record", str(out), "--overwrite")
    wait_for(lambda: _count(cluster) >= 3, 15, "ticks")
    cluster.dora("stop", "r")
    import dora_replay

    assert dora_replay.open(out).channels["talker/out"].message_count >= 3

    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    cluster.kill("coordinator", signal.SIGTERM)
    cluster.procs["coordinator"].wait(10)
    cluster.coordinator(DORA_TOKEN="s3cret")
    for verb in (["list"], ["stop", "x"], ["logs", "x"]):
        res = cluster.dora(*verb, check=False)
        assert res.returncode == 1
        assert "wrong or missing token (set DORA_TOKEN, or write it to" in res.stderr
        assert "--token-file" not in res.stderr, "client commands have no --token-file"
        assert "--token-file" not in cluster.dora(verb[0], "--help").stdout


def test_start_reports_nodes_that_could_not_start(cluster: Cluster) -> None:
    _local(cluster)
    bad = cluster.dir / "bad.bin"
    bad.write_bytes(b"\x00\x01 not a program\n")
    bad.chmod(0o755)
    path = cluster.write(TALKER + f"  - id: bad\n    path: {bad}\n", "bad.yml")
    res = cluster.dora("start", str(path), "--name", "b", check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.startswith("dataflow b started: ")
    err = res.stderr.strip()
    assert err.startswith("error: dataflow b started, but node(s) could not start: bad (")
    assert "Exec format error" in err
    assert err.endswith("the other 2 node(s) run: `dora stop b` stops them"), err
    row = cluster.dataflow("b")
    assert row["status"] == "running" and row["reason"].startswith("failed nodes: bad (could not")
    wait_for(lambda: _count(cluster) >= 2, 15, "the other nodes to run")


def test_help_says_what_the_commands_do(cluster: Cluster) -> None:
    def text(verb: str) -> str:  # the words, without the boxes and the wrapping
        return " ".join(re.sub("[│╭╮╰╯─]", " ", cluster.dora(verb, "--help").stdout).split())

    assert "also those started by hand" in text("destroy")
    up = text("up")
    assert "[default: 0]" not in up and "the last coordinator" in up
    assert "[default: local]" in text("daemon")


def test_destroy_stops_hand_started_daemons_and_they_say_why(cluster: Cluster) -> None:
    import json

    try:
        cluster.dora("up")
        cluster.url = json.loads((cluster.home / "coordinator.json").read_text())["url"]
        arm = cluster.daemon("arm")
        cluster.wait_daemons("local", "arm")
    finally:
        down = cluster.dora("destroy").stdout
    assert "dora is down" in down
    assert arm.wait(10) == 0
    assert "shutting down: the coordinator asked (`dora destroy`)" in cluster.log("daemon-arm")


def test_recording_a_running_dataflow_stores_its_path(cluster: Cluster) -> None:
    import dora_replay

    _local(cluster)
    path = cluster.write(TALKER)
    cluster.dora("start", str(path), "--name", "live")
    wait_for(lambda: _count(cluster) >= 2, 15, "ticks")
    out = cluster.dir / "late.dora"
    cluster.dora("record", "live", "-o", str(out))
    seen = _count(cluster)
    wait_for(lambda: _count(cluster) >= seen + 3, 15, "more ticks")
    cluster.dora("stop", "live")
    rec = dora_replay.open(out)
    # replay finds the node files through it, from any folder
    assert rec.metadata["dataflow_path"] == str(path.resolve())


def test_destroy_reaches_the_coordinator_it_is_pointed_at(cluster: Cluster) -> None:
    """`dora destroy --coordinator URL` (or $DORA_COORDINATOR) for a coordinator `dora up` did
    not start here: it only knew $DORA_HOME's and said "no coordinator is running"."""
    cluster.coordinator()
    arm = cluster.daemon("arm")
    cluster.wait_daemons("arm")
    elsewhere = cluster.dir / "elsewhere"  # a $DORA_HOME where `dora up` never ran
    elsewhere.mkdir()
    down = cluster.dora(
        "destroy", "--coordinator", str(cluster.url), DORA_HOME=str(elsewhere)
    ).stdout
    assert f"the coordinator at {cluster.url} and its daemons are shutting down" in down, down
    assert arm.wait(10) == 0
    assert cluster.procs["coordinator"].wait(10) == 0
