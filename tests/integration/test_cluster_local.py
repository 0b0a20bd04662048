"""`dora up/start/list/logs/stop/destroy` with real background processes, tokens, bad input."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster import TALKER, Cluster, cluster_fixture, wait_for

from dora_runtime.coordinator.client import pid_alive


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path)


def test_up_start_list_logs_stop_destroy(cluster: Cluster) -> None:
    out = cluster.dora("up").stdout
    assert "coordinator listening on ws://127.0.0.1:" in out
    assert "daemon `local` connected" in out
    info = json.loads((cluster.home / "coordinator.json").read_text())
    daemon_pid = json.loads((cluster.home / "daemon-local.json").read_text())["pid"]
    try:
        again = cluster.dora("up").stdout
        assert "already running" in again

        path = cluster.write(TALKER)
        started = cluster.dora("start", str(path), "--name", "chat").stdout
        assert "dataflow chat started:" in started
        wait_for(lambda: (cluster.result("talker") or {}).get("count", 0) >= 3, 15, "ticks")

        listing = cluster.dora("list").stdout
        row = next(ln for ln in listing.splitlines() if ln.startswith("chat "))
        assert " running " in row and " 2/2 " in row

        logs = cluster.dora("logs", "chat", "talker").stdout
        assert "tick 1" in logs.splitlines()
        every = cluster.dora("logs", "chat").stdout
        assert "talker: tick 1" in every

        stopped = cluster.dora("stop", "chat", "--grace", "3s").stdout
        assert "dataflow chat: stopped" in stopped
        assert "got STOP" in cluster.dora("logs", "chat", "talker").stdout
        assert cluster.result("collect")["events"][-1][0] in ("INPUT_CLOSED", "STOP")
        listing = cluster.dora("list").stdout
        assert " stopped " in next(ln for ln in listing.splitlines() if ln.startswith("chat "))
    finally:
        down = cluster.dora("destroy").stdout
    assert "dora is down" in down
    assert not (cluster.home / "coordinator.json").exists()
    assert not pid_alive(info["pid"]) and not pid_alive(daemon_pid)
    assert "no coordinator is running" in cluster.dora("destroy").stdout


def test_destroy_stops_running_dataflows(cluster: Cluster) -> None:
    cluster.dora("up")
    path = cluster.write(TALKER)
    cluster.dora("start", str(path), "--name", "a")
    wait_for(lambda: cluster.result("talker"), 15, "the talker")
    down = cluster.dora("destroy", "--grace", "2s").stdout
    assert "stopped dataflow a" in down
    pid = cluster.result("talker")["pid"]
    assert not pid_alive(pid)


def test_start_attach_streams_until_the_end(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("local")
    cluster.wait_daemons("local")
    path = cluster.write(
        TALKER.replace("outputs: [out]", "outputs: [out]\n    env: {MAX_TICKS: '5'}")
    )
    res = cluster.dora("start", str(path), "--attach")
    assert "tick 5" in res.stdout
    assert cluster.dataflow("dataflow")["status"] == "finished"

    crash = cluster.write(
        """
nodes:
  - id: bad
    path: NODES/crash.py
    env: {CRASH_AFTER: "0"}
    inputs:
      tick: dora/timer/millis/20
    outputs: [out]
""",
        "crash.yml",
    )
    res = cluster.dora("start", str(crash), "--attach", check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    row = cluster.dataflow("crash")
    assert row["status"] == "failed" and "bad" in row["reason"]


def test_stop_kills_after_the_grace_period(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("local")
    cluster.wait_daemons("local")
    path = cluster.write("nodes:\n  - id: stubborn\n    path: NODES/ignore_stop.py\n")
    cluster.dora("start", str(path), "--name", "stubborn")
    wait_for(lambda: (cluster.results / "ignore_stop.ready").exists(), 15, "the node")
    t0 = time.monotonic()
    res = cluster.dora("stop", "stubborn", "--grace", "1s", check=False)
    took = time.monotonic() - t0
    # killed after the grace period: failed, as under `dora run`
    assert res.returncode == 1
    assert "killed: did not stop within 1 s" in res.stderr
    assert 0.9 < took < 8
    assert "did not stop within 1 s" in cluster.dora("logs", "stubborn").stdout


def test_bad_input_is_reported_before_anything_starts(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("local")
    cluster.wait_daemons("local")
    path = cluster.write(
        TALKER.replace("    outputs: [out]", "    outputs: [out]\n    deploy: {machine: mars}")
    )
    res = cluster.dora("start", str(path), check=False)
    assert res.returncode == 1
    assert "node `talker` is placed on machine `mars`" in res.stderr
    assert "connected: local" in res.stderr
    assert cluster.request({"type": "list"})["dataflows"] == []
    assert cluster.result("talker") is None

    labels = cluster.write(
        TALKER.replace(
            "    outputs: [out]", "    outputs: [out]\n    deploy: {labels: {gpu: 'yes'}}"
        ),
        "l.yml",
    )
    res = cluster.dora("start", str(labels), check=False)
    assert "needs a daemon with labels gpu=yes" in res.stderr

    typo = cluster.write("nodes:\n  - id: x\n    pth: a.py\n", "typo.yml")
    res = cluster.dora("start", str(typo), check=False)
    assert res.returncode == 1 and "pth" in res.stderr

    res = cluster.dora("stop", "nope", check=False)
    assert res.returncode == 1 and "no dataflow named or with id `nope`" in res.stderr

    res = cluster.dora("record", "nope", "-o", "x.dora", check=False)
    assert res.returncode == 1 and "no dataflow named" in res.stderr


def test_record_running_dataflow_and_start_record(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("local")
    cluster.wait_daemons("local")
    path = cluster.write(TALKER)
    out = cluster.dir / "run.dora"
    cluster.dora("start", str(path), "--name", "rec", "--record", str(out))
    wait_for(lambda: (cluster.result("talker") or {}).get("count", 0) >= 5, 15, "ticks")
    late = cluster.dir / "late.dora"
    res = cluster.dora("record", "rec", "-o", str(late))
    assert "recording 1 channel(s) of `rec`" in res.stdout
    attached_at = (cluster.result("talker") or {}).get("count", 0)
    wait_for(
        lambda: (cluster.result("talker") or {}).get("count", 0) >= attached_at + 5,
        15,
        "more ticks",
    )
    res = cluster.dora("record", "rec", "-o", str(late), check=False)
    assert res.returncode == 1 and "--overwrite" in res.stderr
    res = cluster.dora(
        "record", "rec", "-o", str(cluster.dir / "x.dora"), "--topics", "nope/x", check=False
    )
    assert res.returncode == 1 and "no running node output matches nope/x" in res.stderr
    cluster.dora("stop", "rec")
    import dora_replay

    full = dora_replay.open(out).channels["talker/out"].message_count
    attached = dora_replay.open(late).channels["talker/out"].message_count
    # the late recorder saw every message from its attachment on, and nothing before it
    assert 5 <= attached < full


def test_second_coordinator_on_the_same_state_is_refused(cluster: Cluster) -> None:
    cluster.coordinator()
    first = cluster.url
    res = cluster.dora("coordinator", "--port", "0", "--state-dir", str(cluster.home), check=False)
    assert res.returncode == 1
    assert "another coordinator is already running" in res.stderr
    assert json.loads((cluster.home / "coordinator.json").read_text())["url"] == first


def test_token_is_required_off_loopback(cluster: Cluster, tmp_path) -> None:
    res = cluster.dora("coordinator", "--host", "0.0.0.0", "--port", "0", check=False)
    assert res.returncode == 1 and "requires a token" in res.stderr

    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    token_file.chmod(0o644)
    res = cluster.dora(
        "coordinator",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "--token-file",
        str(token_file),
        check=False,
    )
    assert res.returncode == 1 and "chmod 600" in res.stderr

    token_file.chmod(0o600)
    cluster.coordinator(host="0.0.0.0", DORA_TOKEN="s3cret")
    res = cluster.dora("list", check=False)
    assert res.returncode == 1 and "wrong or missing token" in res.stderr
    res = cluster.dora("list", check=False, DORA_TOKEN="wrong")
    assert res.returncode == 1 and "wrong or missing token" in res.stderr
    assert cluster.dora("list", DORA_TOKEN="s3cret").returncode == 0

    cluster.daemon("intruder")
    proc = cluster.procs["daemon-intruder"]
    assert proc.wait(15) == 1  # an error, as for every command (2 is for usage errors)
    assert cluster.log("daemon-intruder").strip().splitlines()[-1] == (
        f"error: the coordinator at {cluster.url} refused the connection (401): wrong or "
        "missing token (set DORA_TOKEN, or pass --token-file)"
    )
    cluster.daemon("friend", "--token-file", str(token_file))
    wait_for(
        lambda: any(
            d["machine_id"] == "friend" and d["connected"]
            for d in cluster.request({"type": "daemons"}, token="s3cret")["daemons"]
        ),
        15,
        "the daemon with the token",
    )
    assert os.environ.get("DORA_TOKEN") is None


@pytest.mark.parametrize("verb", ["list", "logs x", "stop x", "start x.yml"])
def test_no_coordinator_is_one_line(cluster: Cluster, verb: str) -> None:
    if verb.startswith("start"):
        cluster.write(TALKER, "x.yml")
    res = cluster.dora(*verb.split(), check=False)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "dora up" in res.stderr


def test_logs_follow_streams_until_the_dataflow_ends(cluster: Cluster) -> None:
    import subprocess
    import sys

    cluster.coordinator()
    cluster.daemon("local")
    cluster.wait_daemons("local")
    cluster.dora("start", str(cluster.write(TALKER)), "--name", "f")
    wait_for(lambda: (cluster.result("talker") or {}).get("count", 0) >= 2, 15, "ticks")
    follow = subprocess.Popen(
        [sys.executable, "-m", "dora_cli.main", "logs", "f", "talker", "--follow"],
        env={**cluster.env, "DORA_COORDINATOR": cluster.url or ""},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert follow.stdout is not None
        seen = []
        for line in follow.stdout:
            seen.append(line.strip())
            if len(seen) > 1 and int(line.split()[-1]) >= 25:  # past the snapshot: streamed
                break
        assert seen[0] == "tick 1"
        cluster.dora("stop", "f")
        rest = follow.stdout.read()
        assert follow.wait(10) == 0
        assert "got STOP" in rest
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        follow.stdout.close()  # type: ignore[union-attr]


def test_cluster_commands_refuse_bad_input_in_one_line(cluster: Cluster) -> None:
    cluster.coordinator()
    taken = cluster.url.rsplit(":", 1)[1]
    res = cluster.dora(
        "coordinator", "--port", taken, "--state-dir", str(cluster.dir / "other"), check=False
    )
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: port {taken} on 127.0.0.1 is already in use (another coordinator, or another "
        "program); choose another with --port"
    )
    for bad in ("arm/left", "../up", ".hidden"):
        res = cluster.dora("daemon", "--machine-id", bad, check=False)
        assert res.returncode == 1
        assert res.stderr.strip() == (
            f"error: --machine-id {bad!r}: use letters, digits, '-', '_' and '.', not starting "
            "with '.' (it names the daemon's state folder and `_unstable_deploy: machine:`)"
        )
    cluster.daemon("local")
    cluster.wait_daemons("local")
    cluster.dora("start", str(cluster.write(TALKER)), "--name", "t")
    res = cluster.dora("logs", "t", "nosuch", check=False)
    assert res.returncode == 1
    assert "dataflow `t` has no node `nosuch`; its nodes: talker, sink" in res.stderr


def test_stop_uses_the_grace_period_given_at_start(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.daemon("local")
    cluster.wait_daemons("local")
    path = cluster.write("nodes:\n  - id: stubborn\n    path: NODES/ignore_stop.py\n")
    cluster.dora("start", str(path), "--name", "stubborn", "--grace", "1s")
    wait_for(lambda: (cluster.results / "ignore_stop.ready").exists(), 15, "the node")
    t0 = time.monotonic()
    res = cluster.dora("stop", "stubborn", check=False)
    assert time.monotonic() - t0 < 4.5  # not the 5 s default
    assert res.returncode == 1 and "did not stop within 1 s" in res.stderr
    assert "did not stop within 1 s" in cluster.dora("logs", "stubborn").stdout
