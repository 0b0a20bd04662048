"""The daemon as ``dora run`` drives it: spawning, logs, timers, queues, closing, stopping, failing."""

from __future__ import annotations

import os
import re
import signal
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _cli import NODES, REPO

if TYPE_CHECKING:
    from conftest import DoraRunner


def _inputs(result: dict) -> list:
    return [e[2] for e in result["events"] if e[0] == "INPUT"]


def _types(result: dict) -> list[str]:
    return [e[0] for e in result["events"]]


# -- spawning and logs ---------------------------------------------------------------------


def test_spawns_python_node_with_current_interpreter_args_and_env(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: probe
    path: NODES/probe.py
    args: --name "two words" -x 3
    env:
      GREETING: hi there
      NUMBER: 5
"""
    )
    assert r.returncode == 0, r.output
    probe = r.result("probe")
    assert probe["executable"] == sys.executable
    assert probe["argv"] == ["--name", "two words", "-x", "3"]
    assert probe["greeting"] == "hi there"
    assert probe["number"] == "5"
    assert probe["cores"] == sorted(os.sched_getaffinity(0))  # not pinned without cpu_affinity


def test_cpu_affinity_pins_the_node_and_names_cores_it_cannot_have(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: probe
    path: NODES/probe.py
    cpu_affinity: [0, 4096]
"""
    )
    assert r.returncode == 0, r.output
    assert r.result("probe")["cores"] == [0]
    assert re.search(
        r"warning: node `probe`: cpu_affinity core\(s\) 4096 not available on this machine "
        r"\(usable: [0-9, ]+\); the node runs on 0$",
        r.stdout,
        re.M,
    ), r.output


def test_node_output_is_prefixed_and_written_to_log_files(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: probe
    path: NODES/probe.py
"""
    )
    assert r.returncode == 0, r.output
    assert re.search(r"^\s*probe \| hello from probe stdout$", r.stdout, re.M), r.stdout
    assert re.search(r"^\s*probe \| hello from probe stderr$", r.stdout, re.M), r.stdout
    log = r.log("probe")
    assert "hello from probe stdout" in log
    assert "hello from probe stderr" in log


def test_a_line_longer_than_the_pipe_buffer_is_kept(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: talker
    path: NODES/long_line.py
"""
    )
    assert r.returncode == 0, r.output
    log = r.log("talker")
    assert "A" * 200_000 in log.replace("\n", "")  # possibly in pieces, but all of it
    assert log.endswith("\nafter the long line\n")


def test_spawns_executable_on_path_with_args(dora: DoraRunner, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "hello-node"
    script.write_text('#!/bin/sh\necho "shell node says $1 $2"\necho "shell stderr" >&2\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    dora.env["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"
    r = dora.run(
        """
nodes:
  - id: shell
    path: hello-node
    args: first second
"""
    )
    assert r.returncode == 0, r.output
    # stdout and stderr are read separately, so only the order within each stream is kept
    assert sorted(r.lines_of("shell")) == ["shell node says first second", "shell stderr"]
    assert "shell node says first second" in r.log("shell")


# -- timers ---------------------------------------------------------------------------------


def test_timers_millis_and_hz_tick_at_their_rate(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: counter
    path: NODES/count_ticks.py
    env: {WINDOW_S: 1.0}
    inputs:
      slow: dora/timer/millis/100
      fast: dora/timer/hz/40
"""
    )
    assert r.returncode == 0, r.output
    res = r.result("count_ticks")
    counts = res["counts"]
    assert 6 <= counts.get("slow", 0) <= 13, counts  # 10 expected in 1 s
    assert 25 <= counts.get("fast", 0) <= 46, counts  # 40 expected in 1 s
    length, _type, has_timestamp = res["values"][0]
    assert length == 0 and has_timestamp


# -- queues ---------------------------------------------------------------------------------


def test_queue_size_drops_oldest_and_reports_drops(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: snd
    path: NODES/send_seq.py
    outputs: [out]
    env: {COUNT: 50}
  - id: rcv
    path: NODES/collect.py
    env: {FIRST_SLEEP_S: 1.0}
    inputs:
      x: {source: snd/out, queue_size: 2}
"""
    )
    assert r.returncode == 0, r.output
    got = _inputs(r.result("collect"))
    assert got[-1] == 49, got  # the newest message survives
    assert len(got) <= 5, got  # a queue of 2 (plus perhaps the first, taken at once)
    assert got == sorted(got)
    dropped = 50 - len(got)
    assert f"input `rcv/x` dropped {dropped} message(s)" in r.stdout, r.stdout


@pytest.mark.parametrize("payload_bytes", [3000, 32768], ids=["inline", "shm"])
def test_backpressure_delivers_everything_and_blocks_the_sender(
    dora: DoraRunner, payload_bytes: int
) -> None:
    count = 300 if payload_bytes < 16384 else 30
    per_msg = 0.9 / count  # the receiver needs about 0.9 s in all
    r = dora.run(
        f"""
nodes:
  - id: snd
    path: NODES/send_seq.py
    outputs: [out]
    env: {{COUNT: {count}, PAYLOAD_BYTES: {payload_bytes}}}
  - id: rcv
    path: NODES/collect.py
    env: {{SLEEP_S: {per_msg}}}
    inputs:
      x: {{source: snd/out, queue_size: 2, queue_policy: backpressure}}
"""
    )
    assert r.returncode == 0, r.output
    assert _inputs(r.result("collect")) == list(range(count))
    assert "dropped" not in r.stdout
    # Unthrottled the sender needs a few ms; held back by the receiver it needs most of 0.9 s.
    assert r.result("send_seq")["elapsed_s"] > 0.4


# -- closing inputs and the end of the stream -----------------------------------------------


def test_input_closed_when_upstream_exits_and_stream_ends_when_all_closed(
    dora: DoraRunner,
) -> None:
    r = dora.run(
        """
nodes:
  - id: early
    path: NODES/send_seq.py
    outputs: [out]
    env: {COUNT: 2, NAME: early}
  - id: late
    path: NODES/send_seq.py
    outputs: [out]
    env: {COUNT: 2, NAME: late, START_DELAY_S: 0.8}
  - id: rcv
    path: NODES/collect.py
    inputs:
      a: early/out
      b: late/out
"""
    )
    assert r.returncode == 0, r.output
    res = r.result("collect")
    seen = [(t, i, v) for t, i, v, *_ in res["events"]]
    assert seen == [
        ("INPUT", "a", 0),
        ("INPUT", "a", 1),
        ("INPUT_CLOSED", "a", None),  # delivered when `early` exits, before `late` sends
        ("INPUT", "b", 0),
        ("INPUT", "b", 1),
        ("INPUT_CLOSED", "b", None),
        ("STOP", "ALL_INPUTS_CLOSED", None),  # as dora-rs: STOP with this id, then the end
    ]
    closed_a = res["events"][2][3]
    first_b = res["events"][3][3]
    assert first_b - closed_a > 0.4
    assert res["after_end"] is None  # next() after the end: None, not a timeout error


# -- stopping ---------------------------------------------------------------------------------

_TICKING = """
nodes:
  - id: rcv
    path: NODES/collect.py
    inputs:
      tick: dora/timer/millis/20
"""


def test_stop_after_sends_stop_and_ends_the_stream(dora: DoraRunner) -> None:
    r = dora.run(_TICKING, "--stop-after", "1s")
    assert r.returncode == 0, r.output
    res = r.result("collect")
    assert _types(res)[-1] == "STOP"
    assert _types(res).count("INPUT") > 10
    assert res["after_end"] is None
    assert r.elapsed_s < 8


def test_sigint_sends_stop_and_dora_run_exits_cleanly(dora: DoraRunner) -> None:
    proc = dora.start(_TICKING)
    dora.wait_for_file("collect.ready")
    proc.send_signal(signal.SIGINT)
    r = dora.wait(proc)
    assert r.returncode == 0, r.output
    res = r.result("collect")
    assert _types(res)[-1] == "STOP"
    assert "Traceback" not in r.output


def test_node_ignoring_stop_is_killed_after_the_grace_period(dora: DoraRunner) -> None:
    proc = dora.start(
        """
nodes:
  - id: stubborn
    path: NODES/ignore_stop.py
  - id: polite
    path: NODES/collect.py
    inputs:
      tick: dora/timer/millis/50
""",
        "--grace",
        "1s",
    )
    dora.wait_for_file("ignore_stop.ready")
    dora.wait_for_file("collect.ready")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    r = dora.wait(proc, timeout=20)
    took = time.monotonic() - t0
    assert 0.9 <= took < 12, (took, r.output)  # 1 s of grace, then the kill (slack for load)
    assert "node `stubborn` did not stop within 1 s; killed" in r.stdout, r.output
    assert _types(r.result("collect"))[-1] == "STOP"  # the polite one stopped by itself
    assert r.returncode == 1
    assert "stubborn (killed: did not stop within 1 s)" in r.stderr


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_crashing_node_is_reported_and_the_others_keep_running(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: ticker
    path: NODES/ticker.py
    env: {MAX_TICKS: 40}
    inputs:
      tick: dora/timer/millis/40
    outputs: [out]
  - id: crasher
    path: NODES/crash.py
    env: {CRASH_AFTER: 3}
    inputs:
      x: ticker/out
    outputs: [out]
  - id: survivor
    path: NODES/collect.py
    env: {NAME: survivor}
    inputs:
      x: ticker/out
  - id: downstream
    path: NODES/collect.py
    env: {NAME: downstream}
    inputs:
      x: crasher/out
"""
    )
    assert r.returncode == 1, r.output
    assert "node `crasher` failed with exit code 3; last log lines:" in r.stdout, r.stdout
    report = r.stdout.split("node `crasher` failed with exit code 3", 1)[1]
    assert "about to crash" in report
    assert "crasher (exit 3)" in r.stderr
    crashed_at = r.result("crash")["time"]
    survivor = r.result("survivor")
    assert _inputs(survivor) == list(range(40))  # nothing lost around the crash
    after_crash = [e for e in survivor["events"] if e[0] == "INPUT" and e[3] > crashed_at + 0.3]
    assert len(after_crash) > 5
    downstream = r.result("downstream")
    assert _types(downstream) == ["INPUT", "INPUT", "INPUT", "INPUT_CLOSED", "STOP"]


def test_second_sigint_kills_at_once(dora: DoraRunner) -> None:
    proc = dora.start(
        """
nodes:
  - id: stubborn
    path: NODES/ignore_stop.py
""",
        "--grace",
        "60s",
    )
    dora.wait_for_file("ignore_stop.ready")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    r = dora.wait(proc, timeout=20)
    assert time.monotonic() - t0 < 10, r.output  # not the 60 s grace
    assert "second interrupt: killing every node now" in r.stdout
    assert r.returncode == 1


def test_a_node_that_never_connects_is_named_and_the_rest_runs(dora: DoraRunner) -> None:
    dora.env["DORA_CONNECT_TIMEOUT_S"] = "2"
    r = dora.run(
        """
nodes:
  - id: stuck
    path: NODES/never_connects.py
  - id: collect
    path: NODES/collect.py
    inputs:
      tick: dora/timer/millis/50
""",
        "--stop-after",
        "1s",
    )
    assert r.returncode == 1, r.output
    assert "waiting for node `stuck` to connect (no Node() created after 1 s)" in r.stdout
    assert "node `stuck` did not connect within 2 s: starting without it" in r.stdout
    assert "node `stuck` never connected to the daemon (it did not create Node()); killed" in (
        r.stdout
    )
    assert "stuck (killed: never connected to the daemon" in r.stderr
    assert _types(r.result("collect")).count("INPUT") > 5  # timers ran for the others
    assert r.elapsed_s < 20  # not the 30 s default wait, nor a 5 s grace on top


def test_bad_connect_timeout_is_a_one_line_error(dora: DoraRunner) -> None:
    dora.env["DORA_CONNECT_TIMEOUT_S"] = "soon"
    r = dora.run(_TICKING, "--stop-after", "1s")
    assert r.returncode == 1
    assert "Traceback" not in r.output
    assert "error: DORA_CONNECT_TIMEOUT_S='soon': expected a number of seconds" in r.stderr


def test_a_node_still_starting_when_the_dataflow_stops_gets_stop_once_it_connects(
    dora: DoraRunner,
) -> None:
    """Only a node the dataflow started without (past the connect wait) is terminated on stop;
    one that is still importing its libraries connects, gets STOP and ends normally."""
    proc = dora.start(
        """
nodes:
  - id: slow
    path: NODES/slow_start.py
    env: {START_S: '2'}
    inputs:
      tick: dora/timer/millis/50
"""
    )
    dora.wait_for_file("slow_start.started")
    proc.send_signal(signal.SIGINT)  # stop while `slow` has not created its Node() yet
    r = dora.wait(proc, timeout=30)
    assert r.returncode == 0, r.output
    assert "never connected" not in r.output
    assert r.result("slow_start")["events"][-1] == "STOP"


# -- idle cost ------------------------------------------------------------------------------


def _context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of ``pid`` so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        total += sum(int(n) for n in re.findall(r"voluntary_ctxt_switches:\s+(\d+)", status))
    return total


def test_daemon_sleeps_while_its_nodes_idle(dora: DoraRunner) -> None:
    # The daemon watches each node's exit on its pidfd; it used to poll every 20 ms per node,
    # which woke it 50 times a second per node on the CPUs the nodes' messages need.
    proc = dora.start(
        """
nodes:
  - id: stubborn
    path: NODES/ignore_stop.py
    outputs: [out]
  - id: waiting
    path: NODES/collect.py
    inputs:
      x: stubborn/out
""",
        "--grace",
        "1s",
    )
    dora.wait_for_file("ignore_stop.ready")
    time.sleep(0.5)  # start-up done: both nodes are waiting, nothing is sent
    before = _context_switches(proc.pid)
    time.sleep(2.0)
    woken = _context_switches(proc.pid) - before
    proc.send_signal(signal.SIGINT)
    r = dora.wait(proc, timeout=20)
    assert woken < 20, f"the daemon woke {woken} times in 2 s with two idle nodes"
    assert "node `stubborn` did not stop within 1 s; killed" in r.stdout, r.output
    assert _types(r.result("collect"))[-1] == "STOP"


def test_a_node_run_as_a_python_module_uses_dora_s_interpreter(
    dora: DoraRunner, tmp_path: Path
) -> None:
    """`path: python` with `args: -m package.module` ran whatever `python` was first on PATH,
    which lacks pyarrow when dora runs from a virtual environment that is not activated."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    other = bin_dir / "python"
    other.write_text("#!/bin/sh\necho 'the python on PATH ran' >&2\nexit 3\n")
    other.chmod(0o755)
    pkg = dora.workdir / "mynodes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "probe.py").write_text((NODES / "probe.py").read_text())
    dora.env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    dora.env["PYTHONPATH"] = f"{REPO}{os.pathsep}{NODES}"  # probe's helpers
    r = dora.run(
        """
nodes:
  - id: probe
    path: python
    args: -m mynodes.probe --flag
"""
    )
    assert r.returncode == 0, r.output
    probe = r.result("probe")
    assert probe["executable"] == sys.executable and probe["argv"] == ["--flag"]


def test_path_python_needs_no_python_on_path(dora: DoraRunner, tmp_path: Path) -> None:
    """Debian and Ubuntu have only `python3` on PATH: `path: python` was refused as "neither a
    file nor an executable on PATH" although it runs dora's interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to("/bin/sh")
    dora.env["PATH"] = str(bin_dir)  # no python of any name
    dora.env["PYTHONPATH"] = f"{REPO}{os.pathsep}{NODES}"
    r = dora.run(
        f"""
nodes:
  - id: probe
    path: python
    args: {NODES / "probe.py"}
"""
    )
    assert r.returncode == 0, r.output
    assert r.result("probe")["executable"] == sys.executable
