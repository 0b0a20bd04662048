"""Lockstep mode: feeders wait until every live node is idle and nothing is in flight."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from dora_runtime.daemon import run_dataflow
from dora_runtime.descriptor import load_descriptor

FEEDER = textwrap.dedent(
    """
    import os, sys
    import pyarrow as pa
    from dora import Node

    node = Node()
    start, step, count = (int(x) for x in sys.argv[1:4])
    for k in range(count):
        value = start + k * step
        node.lockstep_barrier(timeout=30, order_key=value)  # False at once without lockstep
        node.send_output("out", pa.array([value]))
    """
)

SLOW = textwrap.dedent(
    """
    import json, os, time
    from dora import Node

    node = Node()
    seen = []
    for event in node:
        if event["type"] == "INPUT":
            time.sleep(0.01)  # slower than the feeders could send
            v = event["value"][0].as_py()
            seen.append(v)
            node.send_output("doubled", [v * 2])
    with open(os.environ["OUT"], "w") as f:
        json.dump(seen, f)
    """
)

SINK = textwrap.dedent(
    """
    import json, os
    from dora import Node

    node = Node()
    got = [e["value"][0].as_py() for e in node if e["type"] == "INPUT"]
    with open(os.environ["OUT"], "w") as f:
        json.dump(got, f)
    """
)


def _write(tmp_path: Path) -> Path:
    (tmp_path / "feeder.py").write_text(FEEDER)
    (tmp_path / "slow.py").write_text(SLOW)
    (tmp_path / "sink.py").write_text(SINK)
    df = tmp_path / "df.yml"
    df.write_text(
        textwrap.dedent(
            f"""
            nodes:
              - id: even
                path: feeder.py
                args: "0 2 15"
                outputs: [out]
              - id: odd
                path: feeder.py
                args: "1 2 15"
                outputs: [out]
              - id: slow
                path: slow.py
                env: {{OUT: "{tmp_path / "slow.json"}"}}
                inputs:
                  a: {{source: even/out, queue_size: 1}}
                  b: {{source: odd/out, queue_size: 1}}
                outputs: [doubled]
              - id: sink
                path: sink.py
                env: {{OUT: "{tmp_path / "sink.json"}"}}
                inputs:
                  d: {{source: slow/doubled, queue_size: 1}}
            """
        )
    )
    return df


@pytest.mark.timeout(120)
def test_lockstep_delivers_in_global_order_without_drops(tmp_path: Path) -> None:
    df = _write(tmp_path)
    result = run_dataflow(
        load_descriptor(df),
        log_dir=tmp_path / "logs",
        printer=lambda *_: None,
        handle_signals=False,
        lockstep=True,
        feeders={"even", "odd"},
    )
    assert result.ok, result.failures
    assert not result.drops
    # queue_size 1 and a slow node: without lockstep most of these would be dropped
    assert json.loads((tmp_path / "slow.json").read_text()) == list(range(30))
    assert json.loads((tmp_path / "sink.json").read_text()) == [2 * v for v in range(30)]


@pytest.mark.timeout(120)
def test_without_lockstep_the_same_flow_drops(tmp_path: Path) -> None:
    df = _write(tmp_path)
    result = run_dataflow(
        load_descriptor(df),
        log_dir=tmp_path / "logs",
        printer=lambda *_: None,
        handle_signals=False,
    )
    assert result.ok, result.failures
    seen = json.loads((tmp_path / "slow.json").read_text())
    assert seen != list(range(30))  # barriers return False immediately: feeders flood the queue
