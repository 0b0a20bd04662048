"""Two stalls found by a trial: a backpressure edge whose receiver keeps one shared-memory
message, and timers waiting for a node that had already exited without creating Node()."""

from __future__ import annotations

import time
from pathlib import Path

from _cli import run_dora

SRC = """
import numpy as np
import pyarrow as pa
from dora import Node

node = Node()
frame = np.zeros(64 * 1024, np.uint8)  # shared memory (inline only below 16 KiB)
for i in range(12):
    frame[0] = i
    node.send_output("frame", pa.array(frame), {"i": i})
"""

KEEPER = """
from dora import Node

node = Node()
background = None
got = []
for event in node:
    if event["type"] == "INPUT":
        if background is None:
            background = event["value"]  # kept for the whole run, as a background frame is
        got.append(event["metadata"]["i"])
print("got", got, flush=True)
"""

BACKPRESSURE = """
nodes:
  - id: src
    path: src.py
    outputs: [frame]
  - id: sink
    path: keeper.py
    inputs:
      frame: {source: src/frame, queue_size: 3, queue_policy: backpressure}
"""


def test_a_receiver_keeping_one_message_does_not_stall_backpressure(tmp_path: Path) -> None:
    """The sender counted regions in flight from the oldest one and stopped at the first it
    found held: one kept message blocked it for good after queue_size messages."""
    (tmp_path / "src.py").write_text(SRC)
    (tmp_path / "keeper.py").write_text(KEEPER)
    (tmp_path / "df.yml").write_text(BACKPRESSURE)
    r = run_dora("run", "df.yml", "--stop-after", "30s", cwd=tmp_path, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"got {list(range(12))}" in r.stdout, r.stdout
    assert "stopping dataflow" not in r.stdout  # it ended by itself, not at --stop-after


LATE_EXIT = """
import sys, time
time.sleep(1)  # after the ticker connected
sys.exit(0)  # a helper program: never creates Node()
"""

TICKER = """
from dora import Node

n = 0
for event in Node():
    if event["type"] == "INPUT":
        n += 1
print("ticks", n, flush=True)
"""

TIMERS = """
nodes:
  - id: helper
    path: late_exit.py
  - id: ticker
    path: ticker.py
    inputs:
      tick: dora/timer/millis/100
"""


def test_timers_start_when_a_node_exits_without_connecting(tmp_path: Path) -> None:
    """Timers and --stop-after wait for every node to connect or exit; an exit after the others
    had connected was not noticed, so they waited the whole connect timeout (30 s)."""
    (tmp_path / "late_exit.py").write_text(LATE_EXIT)
    (tmp_path / "ticker.py").write_text(TICKER)
    (tmp_path / "df.yml").write_text(TIMERS)
    t0 = time.monotonic()
    r = run_dora("run", "df.yml", "--stop-after", "2s", cwd=tmp_path, timeout=90)
    took = time.monotonic() - t0
    assert "ticks " in r.stdout and "ticks 0" not in r.stdout, r.stdout + r.stderr
    assert took < 20, f"the run took {took:.1f} s: the timers waited for the exited node"
