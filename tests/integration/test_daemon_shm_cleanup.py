"""A daemon removes only its own shared-memory segments when its part of a dataflow ends.

Two daemons of one dataflow on one host (a cluster tried out on one machine) share
``/dev/shm`` and the dataflow's segment prefix. The first to finish used to remove every
segment of the dataflow, the other daemon's nodes' and bridge's too, and a receiver of the other
daemon then crashed mapping a message that was still on its way."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from dora_runtime._shm import SHM_DIR
from dora_runtime._zenoh_bridge import BRIDGE_NODE
from dora_runtime.daemon import Daemon
from dora_runtime.descriptor import load_descriptor

DATAFLOW = """
nodes:
  - id: here
    path: here.py
  - id: there
    path: there.py
"""


def test_a_daemon_leaves_the_segments_of_another_daemon_of_the_dataflow(tmp_path: Path) -> None:
    (tmp_path / "here.py").write_text("from dora import Node\nNode()\n")
    (tmp_path / "there.py").write_text("raise SystemExit('never run here')\n")
    (tmp_path / "flow.yml").write_text(DATAFLOW)
    desc = load_descriptor(tmp_path / "flow.yml")
    daemon = Daemon(desc, log_dir=tmp_path / "logs", nodes_here={"here"})
    prefix = daemon.shm_prefix
    mine = [f"{prefix}here-4242-1", f"{prefix}{BRIDGE_NODE}-{os.getpid()}-1"]
    theirs = [f"{prefix}there-4343-1", f"{prefix}{BRIDGE_NODE}-1-1", f"{prefix}there-x-4-2"]
    for name in mine + theirs:
        Path(SHM_DIR, name).write_bytes(b"\0" * 16)
    try:
        result = asyncio.run(daemon.run())
        assert not result.failures, result.failures
        left = set(os.listdir(SHM_DIR))
        assert not left & set(mine)
        assert set(theirs) <= left
    finally:
        for name in mine + theirs:
            Path(SHM_DIR, name).unlink(missing_ok=True)
