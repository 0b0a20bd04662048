"""``dora --help``, ``dora run``: help, the default log location, one-line errors on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _dora_cli import REPO, dora, dora_popen

DORA_SCRIPT = Path(sys.executable).parent / "dora"


def assert_one_line_error(r: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), lines
    for text in expected:
        assert text in lines[0], lines


@pytest.mark.skipif(not DORA_SCRIPT.exists(), reason="dora console script not installed")
def test_dora_script_help_lists_the_verbs() -> None:
    r = subprocess.run([str(DORA_SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for verb in ("run", "validate", "new"):
        assert verb in r.stdout


def test_dora_run_help_documents_its_options() -> None:
    r = dora("run", "--help")
    assert r.returncode == 0, r.stderr
    for option in ("--stop-after", "--log-dir", "--grace", "--uv", "dataflow"):
        assert option in r.stdout


def test_run_accepts_dora_rs_uv_flag(tmp_path: Path) -> None:
    """Upstream READMEs say `dora run dataflow.yml --uv`: the nodes run as without it."""
    (tmp_path / "a.py").write_text("from dora import Node\nNode()\nprint('ran')\n")
    df = tmp_path / "df.yml"
    df.write_text("nodes:\n  - id: a\n    path: a.py\n")
    r = dora("run", str(df), "--uv")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ran" in r.stdout


def test_missing_dataflow_file(tmp_path: Path) -> None:
    r = dora("run", str(tmp_path / "nope.yml"))
    assert_one_line_error(r, "nope.yml", "not found")


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    df = tmp_path / "bad.yml"
    df.write_text("nodes:\n  - id: a\n    path: [x\n")
    r = dora("run", str(df))
    assert_one_line_error(r, "bad.yml:", "YAML")


def test_missing_node_file(tmp_path: Path) -> None:
    df = tmp_path / "df.yml"
    df.write_text("nodes:\n  - id: a\n    path: missing.py\n")
    r = dora("run", str(df))
    assert_one_line_error(r, "df.yml:3", "missing.py")


def test_bad_duration_option(tmp_path: Path) -> None:
    df = tmp_path / "df.yml"
    df.write_text("nodes:\n  - id: a\n    path: sh\n    args: -c true\n")
    r = dora("run", str(df), "--stop-after", "soon")
    assert_one_line_error(r, "--stop-after", "soon")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = dora("--debug", "run", str(tmp_path / "nope.yml"))
    assert r.returncode != 0
    assert "Traceback" in r.stderr


def test_logs_default_to_out_dataflow_id_next_to_the_file(tmp_path: Path) -> None:
    df = tmp_path / "df.yml"
    df.write_text("nodes:\n  - id: talker\n    path: sh\n    args: -c 'echo said-this'\n")
    r = dora("run", str(df), cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    (run_dir,) = (tmp_path / "out").iterdir()
    assert len(run_dir.name) == 36  # the dataflow id (a UUID)
    assert (run_dir / "log_talker.txt").read_text() == "said-this\n"
    assert str(run_dir) in r.stdout


def test_a_binary_file_as_dataflow_is_a_one_line_error(tmp_path: Path) -> None:
    rec = tmp_path / "run.dora"
    rec.write_bytes(b"\x89DORA\x00\xff\xfe" * 64)
    for verb in ("run", "validate"):
        r = dora(verb, str(rec))
        assert_one_line_error(r, "run.dora", "not a text file", "dora replay")
        assert r.returncode == 1


def test_run_lists_every_problem_like_validate(tmp_path: Path) -> None:
    df = tmp_path / "df.yml"
    df.write_text(
        "nodes:\n  - id: a\n    path: missing_a.py\n  - id: b\n    path: missing_b.py\n"
        "    inputs:\n      x: a/nope\n"
    )
    run, validate = dora("run", str(df)), dora("validate", str(df))
    assert run.returncode == validate.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr == validate.stderr  # the same listing from both commands
    lines = run.stderr.strip().splitlines()
    assert len(lines) >= 3 and all(line.startswith(f"{df}:") for line in lines[:-1])
    assert lines[-1] == f"error: {len(lines) - 1} problems found in {df}"


TICKER = """
import os
from dora import Node

node = Node()
for event in node:
    if event["type"] == "INPUT":
        print("tick", flush=True)
    elif event["type"] == "STOP":
        with open(os.environ["STOPPED"], "w") as f:
            f.write(event["id"])
"""


def test_run_stops_when_nobody_reads_its_output_any_more(tmp_path: Path) -> None:
    """``dora run ... | head -1``: the reader goes away, the dataflow stops as on Ctrl-C."""
    (tmp_path / "ticker.py").write_text(TICKER)
    df = tmp_path / "df.yml"
    df.write_text(
        "nodes:\n  - id: ticker\n    path: ticker.py\n"
        "    inputs: {tick: dora/timer/millis/50}\n"
        f"    env: {{STOPPED: '{tmp_path / 'stopped'}'}}\n"
    )
    proc = dora_popen("run", str(df), "--stop-after", "120s")
    try:
        assert "tick" in proc.stdout.readline()  # type: ignore[union-attr]
        proc.stdout.close()  # type: ignore[union-attr]
        rc = proc.wait(timeout=30)  # it hung until SIGKILL
        err = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    assert rc == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert (tmp_path / "stopped").read_text() == "MANUAL"


def test_prints_logs_and_tracebacks_keep_the_order_the_node_wrote_them(tmp_path: Path) -> None:
    (tmp_path / "talker.py").write_text(
        "from dora import Node\n"
        "node = Node()\n"
        "for i in range(100):\n"
        "    print(f'print {i}')\n"
        "    node.log_info(f'log {i}')\n"
        "raise SystemExit('the end')\n"
    )
    df = tmp_path / "df.yml"
    df.write_text("nodes:\n  - id: talker\n    path: talker.py\n")
    r = dora("run", str(df))
    assert r.returncode == 1  # SystemExit with a message exits 1
    lines = [
        line.split("|", 1)[1].strip()
        for line in r.stdout.splitlines()
        if line.split("|", 1)[0].strip() == "talker"
    ]
    expected = [x for i in range(100) for x in (f"print {i}", f"INFO log {i}")] + ["the end"]
    assert lines[: len(expected)] == expected, r.stdout


@pytest.mark.parametrize("timer", ["dora/timer/nanos/1", "dora/timer/micros/1"])
def test_a_timer_faster_than_the_daemon_can_tick_does_not_hang_the_run(
    tmp_path: Path, timer: str
) -> None:
    """A period shorter than one tick takes: the timer goes as fast as it can, and STOP,
    --stop-after and signals still work (the daemon's loop used to spin without yielding)."""
    (tmp_path / "count.py").write_text(
        "import os\nfrom dora import Node\nn = 0\n"
        "for event in Node():\n"
        "    if event['type'] == 'INPUT':\n        n += 1\n"
        "with open(os.environ['COUNT'], 'w') as f:\n    f.write(str(n))\n"
    )
    df = tmp_path / "df.yml"
    df.write_text(
        f"nodes:\n  - id: count\n    path: count.py\n    inputs: {{t: {timer}}}\n"
        f"    env: {{COUNT: '{tmp_path / 'count'}'}}\n"
    )
    r = dora("run", str(df), "--stop-after", "2s", timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert int((tmp_path / "count").read_text()) > 100


def test_help_does_not_show_flags_as_taking_a_value() -> None:
    """typer showed `--assert <bool>`, `--debug <bool>`: as if they took true/false."""
    for args in (["--help"], ["replay", "--help"], ["run", "--help"], ["record", "--help"]):
        r = dora(*args)
        assert r.returncode == 0, r.stderr
        assert "<bool>" not in r.stdout, r.stdout
    assert "<float>" in dora("replay", "--help").stdout  # options with a value keep their type
