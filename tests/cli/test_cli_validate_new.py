"""``dora validate`` and ``dora new node``: the scaffolded node runs in a real dataflow."""

from __future__ import annotations

import json
from pathlib import Path

from _dora_cli import REPO, dora

NODES = REPO / "tests" / "integration" / "nodes"


def test_validate_ok(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    df = tmp_path / "df.yml"
    df.write_text(
        "nodes:\n"
        "  - id: a\n    path: a.py\n    inputs:\n      tick: dora/timer/millis/10\n"
        "    outputs: [out]\n"
        "  - id: b\n    path: a.py\n    inputs:\n      x: a/out\n"
    )
    r = dora("validate", str(df))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK:") and "2 nodes" in r.stdout


def test_send_stdout_as_is_noted_by_validate_and_run(tmp_path: Path) -> None:
    """dora-rs would send the node's stdout lines on `a/stdout`; dora-py says it will not."""
    (tmp_path / "a.py").write_text("from dora import Node\nNode()\nprint('hello')\n")
    df = tmp_path / "df.yml"
    df.write_text(
        "nodes:\n"
        "  - id: a\n    path: a.py\n    outputs: [stdout]\n    send_stdout_as: stdout\n"
        "  - id: b\n    path: a.py\n    inputs:\n      x: a/stdout\n"
    )
    note = "node `a`: `send_stdout_as` is not supported by dora-py; nothing is sent on `a/stdout`"
    r = dora("validate", str(df))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == [f"note: {note}"]
    r = dora("run", str(df), "--stop-after", "20s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"note: {note}" in r.stdout and "hello" in r.stdout


def test_validate_lists_every_problem_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    df = tmp_path / "df.yml"
    df.write_text(
        "nodes:\n"  # 1
        "  - id: a\n"  # 2
        "    path: a.py\n"  # 3
        "    outputs: [out]\n"  # 4
        "    inptus: {}\n"  # 5
        "  - id: b\n"  # 6
        "    path: a.py\n"  # 7
        "    inputs:\n"  # 8
        "      x: a/nope\n"  # 9
    )
    r = dora("validate", str(df))
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert f"{df}:5:" in r.stderr and "inputs" in r.stderr  # unknown key, with the fix
    assert f"{df}:9:" in r.stderr and "nope" in r.stderr
    assert "2 problems found" in r.stderr


def test_new_node_creates_a_node_that_runs(tmp_path: Path) -> None:
    r = dora("new", "node", "my-node", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    created = tmp_path / "my_node.py"
    assert created.exists()
    assert "- id: my-node" in r.stdout

    results = tmp_path / "results"
    results.mkdir()
    df = tmp_path / "df.yml"
    df.write_text(
        "nodes:\n"
        "  - id: my-node\n"
        "    path: my_node.py\n"
        "    inputs:\n"
        "      tick: dora/timer/millis/50\n"
        "    outputs: [out]\n"
        "  - id: sink\n"
        f"    path: {NODES / 'collect.py'}\n"
        "    inputs:\n"
        "      x: my-node/out\n"
    )
    assert dora("validate", str(df)).returncode == 0
    r = dora("run", str(df), "--stop-after", "1.5s", env={"RESULT_DIR": str(results)})
    assert r.returncode == 0, r.stdout + r.stderr
    events = json.loads((results / "collect.json").read_text())["events"]
    inputs = [e for e in events if e[0] == "INPUT"]
    assert len(inputs) >= 3
    assert all(e[2] == 0 for e in inputs)  # len() of an empty timer tick
    # STOP reaches both nodes at once; the sink sees either its STOP or, when my-node exited
    # first, its input closing. Either way the stream ended cleanly.
    assert events[-1][0] in ("STOP", "INPUT_CLOSED")


def test_new_node_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    assert dora("new", "node", "n1", "--dir", str(tmp_path)).returncode == 0
    r = dora("new", "node", "n1", "--dir", str(tmp_path))
    assert r.returncode == 1 and "already exists" in r.stderr and "--force" in r.stderr
    r = dora("new", "node", "9lives", "--dir", str(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_validate_checks_every_field_of_a_node_with_a_bad_id(tmp_path: Path) -> None:
    df = tmp_path / "df.yml"
    df.write_text('nodes:\n  - id: 123\n    path: x.py\n    args: "unterminated \'quote"\n')
    (tmp_path / "x.py").write_text("")
    r = dora("validate", str(df))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{df}:2:" in r.stderr and "quote it if it looks like a number" in r.stderr
    assert f"{df}:4:" in r.stderr and "cannot split args" in r.stderr
    assert "2 problems found" in r.stderr
