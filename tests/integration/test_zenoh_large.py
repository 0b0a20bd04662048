"""Large messages across machines: two daemons on loopback, a sender on ``arm`` and a receiver
on ``local``, exchanging outputs over Zenoh.

A message above the local frame limit (64 MiB) must reach a receiver on another machine intact,
through shared memory on the receiving side as from a local sender, and the messages after it
too. A message above the Zenoh limit is refused by the sending daemon with one line naming the
output and the limit; the receiver keeps running and gets the next message.

The sender exits as soon as it has sent, with its messages still crossing, so daemon ``arm``
finishes while ``local`` still delivers them: both share this host's ``/dev/shm`` and the
dataflow's segment prefix, and each must remove only its own nodes' and bridge's segments
(``arm`` used to remove the receiving bridge's too, crashing the receiver about one run in six).

Each takes 2 to 4 s; the large one, marked slow, holds a few copies of its 64 MiB payload
at a time (a few hundred MiB in all).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _cluster import Cluster, cluster_fixture

from dora_runtime._framing import MAX_FRAME
from dora_runtime._zenoh_bridge import free_endpoint

MiB = 1 << 20

SENDER = """
import hashlib, json, os
import numpy as np
from dora import Node

node = Node()
rng = np.random.default_rng(7)
sent = []
for i, n in enumerate(int(s) for s in os.environ["SIZES"].split(",")):
    data = rng.integers(0, 256, n, dtype=np.uint8)
    node.send_output("data", data, {"i": i})
    sent.append([i, n, hashlib.sha256(data).hexdigest()])
    print(f"sent {n}", flush=True)
    del data
with open(os.path.join(os.environ["RESULT_DIR"], "big_sender.json"), "w") as f:
    json.dump(sent, f)
"""

RECEIVER = """
import hashlib, json, os
from dora import Node


def mapped_file(address):
    # the file mapped at this address (/dev/shm/... for shared memory), or None
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end:
                return parts[5].strip() if len(parts) > 5 else None
    return None


node = Node()
got, events, files = [], [], []
for event in node:
    events.append(event["type"])
    if event["type"] == "INPUT":
        v = event["value"]
        data = v.to_numpy(zero_copy_only=True)
        got.append([event["metadata"]["i"], len(v), hashlib.sha256(data).hexdigest()])
        files.append(mapped_file(v.buffers()[1].address))
        print(f"received {len(v)}", flush=True)
        del v, data, event
with open(os.path.join(os.environ["RESULT_DIR"], "big_receiver.json"), "w") as f:
    json.dump({"got": got, "events": events, "files": files}, f)
"""

DATAFLOW = """
nodes:
  - id: sender
    path: {dir}/big_sender.py
    deploy: {{machine: arm}}
    env: {{SIZES: "{sizes}"}}
    outputs: [data]
  - id: receiver
    path: {dir}/big_receiver.py
    inputs:
      data: sender/data
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path)


def _run(cluster: Cluster, sizes: list[int], **daemon_env: str) -> tuple[list, dict, str]:
    """Start a coordinator, daemons ``local`` and ``arm``, run the dataflow to its end; returns
    what the sender sent, what the receiver got, and what the CLI and the logs said."""
    (cluster.dir / "big_sender.py").write_text(SENDER, encoding="utf-8")
    (cluster.dir / "big_receiver.py").write_text(RECEIVER, encoding="utf-8")
    cluster.coordinator()
    cluster.daemon("local", **daemon_env)
    cluster.daemon("arm", "--zenoh-listen", free_endpoint(), **daemon_env)
    cluster.wait_daemons("local", "arm")
    path = cluster.write(
        DATAFLOW.format(dir=cluster.dir, sizes=",".join(map(str, sizes))), name="large.yml"
    )
    res = cluster.dora("start", str(path), "--name", "large", "--attach", timeout=120, check=False)
    row = cluster.dataflow("large")
    logs = cluster.dora("logs", "large", check=False)
    context = f"{res.stdout}{res.stderr}\n--- logs:\n{logs.stdout}{logs.stderr}"
    assert row["status"] == "finished", f"{row}\n{context}"
    assert row["placement"] == {"sender": "arm", "receiver": "local"}
    sent = cluster.result("big_sender")
    received = cluster.result("big_receiver")
    assert sent is not None and received is not None, context
    return sent, received, context


@pytest.mark.slow
def test_message_above_the_frame_limit_crosses_machines_intact(cluster: Cluster) -> None:
    big = MAX_FRAME + 4096  # just above what one inline frame may carry
    sizes = [MiB, big, MiB, 100]
    sent, received, _ = _run(cluster, sizes)
    assert [s[1] for s in sent] == sizes
    assert received["got"] == sent, "every message, the large one intact (sha256), in order"
    assert received["events"][-2:] == ["INPUT_CLOSED", "STOP"]
    files = received["files"]
    assert all(f and f.startswith("/dev/shm/dora-") for f in files[:3]), (
        f"payloads above the inline threshold are read from shared memory: {files}"
    )
    assert files[3] is None or not files[3].startswith("/dev/shm/"), files


def test_message_above_the_zenoh_limit_is_refused_by_the_sending_daemon(cluster: Cluster) -> None:
    limit = 4 * MiB
    sizes = [MiB, 5 * MiB, MiB, 100]
    sent, received, context = _run(cluster, sizes, DORA_ZENOH_MAX_MESSAGE_BYTES=str(limit))
    assert received["got"] == [sent[0], sent[2], sent[3]], "the receiver keeps going"
    assert received["events"][-2:] == ["INPUT_CLOSED", "STOP"]
    # The sending daemon says it, once, in the dataflow's log (what `dora logs` shows).
    said = context.split("--- logs:", 1)[1]
    lines = {line.strip() for line in said.splitlines() if "not sent to other machines" in line}
    assert len(lines) == 1, said
    line = lines.pop()
    assert "`sender/data`" in line and "5242880 bytes" in line, line
    assert "DORA_ZENOH_MAX_MESSAGE_BYTES=4194304" in line, line
    daemons = cluster.log("daemon-arm") + cluster.log("daemon-local")
    assert "Traceback" not in daemons, daemons
