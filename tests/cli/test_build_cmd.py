"""``dora build``: real build commands run in the dataflow's folder with each node's env."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from _dora_cli import dora, dora_popen

PY = shlex.quote(sys.executable)

# One build line: appends "tag|cwd|MINE|TOP|FLAG" to log.txt (relative: in the working directory).
LOG_LINE = (
    f"{PY} -c \"import os; open('log.txt', 'a').write('|'.join(['{{tag}}', os.getcwd()] + "
    "[os.environ.get(k, '-') for k in ('MINE', 'TOP', 'FLAG')]) + '\\n')\""
)


def log_line(tag: str) -> str:
    return LOG_LINE.replace("{tag}", tag)


def assert_one_line_error(r: subprocess.CompletedProcess[str], expected: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [expected], r.stderr


def write_dataflow(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    df = folder / "dataflow.yml"
    df.write_text(text)
    return df


def test_build_help_documents_uv() -> None:
    r = dora("build", "--help")
    assert r.returncode == 0, r.stderr
    assert "--uv" in r.stdout and "DATAFLOW" in r.stdout


def test_build_runs_every_line_in_order_in_the_dataflow_folder_with_node_env(
    tmp_path: Path,
) -> None:
    flow = tmp_path / "flow"
    df = write_dataflow(
        flow,
        "env:\n  TOP: from-top\n"
        "nodes:\n"
        "  - id: a\n    path: a.py\n    env:\n      MINE: 42\n      FLAG: true\n"
        f"    build: |\n      {log_line('a1')}\n\n      {log_line('a2')}\n"
        "  - id: b\n    path: sh\n    args: -c true\n"
        f"  - id: c\n    path: c.py\n    build: |\n      {log_line('c1')}\n"
        f"      {PY} -c \"open('c.py', 'w').write('')\"\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = dora("build", str(df), cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    log = (flow / "log.txt").read_text().splitlines()
    assert log == [
        f"a1|{flow}|42|from-top|true",
        f"a2|{flow}|42|from-top|true",
        f"c1|{flow}|-|from-top|-",  # a's env is not c's
    ]
    assert (flow / "c.py").exists()
    assert not (elsewhere / "log.txt").exists()
    lines = r.stdout.splitlines()
    progress = [line.split(":", 1)[0] for line in lines if line.startswith("building ")]
    assert progress == ["building a", "building a", "building c", "building c"]
    assert f"building a: {log_line('a1')}" in lines
    assert lines[-1].startswith("built 2 nodes in ") and lines[-1].endswith(" s")
    assert "building b" not in r.stdout


def test_a_dataflow_without_build_fields_has_nothing_to_build(tmp_path: Path) -> None:
    df = write_dataflow(tmp_path, "nodes:\n  - id: a\n    path: sh\n    args: -c true\n")
    r = dora("build", str(df))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "nothing to build: no node has a build: field"


def test_the_first_failing_line_stops_the_build(tmp_path: Path) -> None:
    df = write_dataflow(
        tmp_path,
        "nodes:\n"
        f"  - id: a\n    path: a.py\n    build: |\n      {log_line('a1')}\n"
        f"      {PY} -c 'raise SystemExit(3)'\n      {log_line('a3')}\n"
        f"  - id: b\n    path: b.py\n    build: {log_line('b1')}\n",
    )
    r = dora("build", str(df))
    assert_one_line_error(
        r, f"error: build of node `a` failed: `{PY} -c 'raise SystemExit(3)'` exited with 3"
    )
    assert [line.split("|")[0] for line in (tmp_path / "log.txt").read_text().splitlines()] == [
        "a1"
    ]
    assert "built" not in r.stdout


def test_a_missing_program_is_a_one_line_error(tmp_path: Path) -> None:
    df = write_dataflow(
        tmp_path, "nodes:\n  - id: a\n    path: a.py\n    build: no-such-program-xyz --fast\n"
    )
    r = dora("build", str(df))
    assert_one_line_error(
        r,
        "error: build of node `a` failed: program `no-such-program-xyz` not found "
        "(in `no-such-program-xyz --fast`); install it or fix the `build:` line",
    )


def test_an_unclosed_quote_is_reported_before_anything_runs(tmp_path: Path) -> None:
    df = write_dataflow(
        tmp_path,
        "nodes:\n"
        f"  - id: a\n    path: a.py\n    build: {log_line('a1')}\n"
        "  - id: b\n    path: b.py\n    build: echo 'unclosed\n",
    )
    r = dora("build", str(df))
    assert_one_line_error(
        r, "error: build of node `b`: cannot split `echo 'unclosed`: No closing quotation"
    )
    assert not (tmp_path / "log.txt").exists()


def test_a_node_with_git_is_skipped_with_a_warning(tmp_path: Path) -> None:
    df = write_dataflow(
        tmp_path,
        "nodes:\n  - id: g\n    git: https://example.invalid/g.git\n    path: g.py\n"
        f"    build: {log_line('g1')}\n"
        f"  - id: h\n    path: h.py\n    build: {log_line('h1')}\n",
    )
    r = dora("build", str(df))
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("warning: node `g` has `git:`; dora-py does not clone sources")
    assert [line.split("|")[0] for line in (tmp_path / "log.txt").read_text().splitlines()] == [
        "h1"
    ]
    assert r.stdout.splitlines()[-1].startswith("built 1 node in ")


def test_uv_absent_from_path_fails_before_running_anything(tmp_path: Path) -> None:
    """Only when a pip line would run as `uv pip`: a build without one does not need uv."""
    df = write_dataflow(
        tmp_path,
        f"nodes:\n  - id: a\n    path: a.py\n    build: |\n      {log_line('a1')}\n"
        "      pip install nothing-here\n",
    )
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    r = dora("build", str(df), "--uv", env={"PATH": str(empty_bin)})
    assert_one_line_error(
        r,
        "error: --uv: `uv` is not on PATH; install uv (https://docs.astral.sh/uv/) or drop --uv",
    )
    assert not (tmp_path / "log.txt").exists()
    no_pip = write_dataflow(
        tmp_path, f"nodes:\n  - id: a\n    path: a.py\n    build: {log_line('a1')}\n"
    )
    r = dora("build", str(no_pip), "--uv", env={"PATH": str(empty_bin)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "log.txt").exists()


def test_uv_runs_pip_lines_as_uv_pip(tmp_path: Path) -> None:
    """A stand-in `uv` on PATH records its arguments: `pip`/`pip3` lines go to it, others not."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_uv = fake_bin / "uv"
    fake_uv.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "with open('uv-calls.txt', 'a') as f:\n"
        "    f.write(' '.join(sys.argv[1:]) + ' ' + os.environ['MINE'] + '\\n')\n"
    )
    fake_uv.chmod(0o755)
    df = write_dataflow(
        tmp_path,
        "nodes:\n  - id: a\n    path: a.py\n    env: {MINE: x}\n    build: |\n"
        "      pip install -r 'requirements file.txt'\n      pip3 list\n"
        f"      {log_line('a3')}\n",
    )
    path = f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    r = dora("build", str(df), "--uv", env={"PATH": path})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "uv-calls.txt").read_text().splitlines() == [
        "pip install -r requirements file.txt x",
        "pip list x",
    ]
    assert "building a: uv pip install -r 'requirements file.txt'" in r.stdout.splitlines()
    assert (tmp_path / "log.txt").read_text().startswith("a3|")


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_uv_build_with_the_real_uv(tmp_path: Path) -> None:
    df = write_dataflow(
        tmp_path, f"nodes:\n  - id: a\n    path: a.py\n    build: pip list --python {PY}\n"
    )
    r = dora("build", str(df), "--uv")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"building a: uv pip list --python {PY}" in r.stdout.splitlines()
    assert "pyarrow" in r.stdout.lower()


def test_a_bad_dataflow_gives_the_errors_validate_gives(tmp_path: Path) -> None:
    df = write_dataflow(
        tmp_path,
        "nodes:\n  - id: a\n    path: missing_a.py\n  - id: b\n    path: missing_b.py\n"
        "    build: make\n    inputs:\n      x: a/nope\n",
    )
    build, validate = dora("build", str(df)), dora("validate", str(df))
    assert build.returncode == validate.returncode == 1
    assert "Traceback" not in build.stderr
    assert build.stderr == validate.stderr
    assert build.stderr.strip().splitlines()[-1] == f"error: 2 problems found in {df}"
    missing = dora("build", str(tmp_path / "nope.yml"))
    assert_one_line_error(
        missing, f"error: {tmp_path / 'nope.yml'}: file not found; check the path"
    )
    bad_yaml = write_dataflow(tmp_path / "y", "nodes:\n  - id: a\n    path: [x\n")
    r = dora("build", str(bad_yaml))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == dora("validate", str(bad_yaml)).stderr


# A build command that ignores SIGTERM and starts a grandchild, then waits: only SIGKILL of the
# whole process group ends both.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
with open('pids.tmp', 'w') as f:
    f.write(f'{__import__("os").getpid()} {child.pid}')
__import__('os').rename('pids.tmp', 'pids')
time.sleep(120)
"""


@pytest.mark.parametrize(
    ("sig", "code", "how"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_ctrl_c_kills_the_running_command_and_what_it_started(
    tmp_path: Path, sig: int, code: int, how: str
) -> None:
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    df = write_dataflow(
        tmp_path,
        f"nodes:\n  - id: a\n    path: a.py\n    build: |\n      {PY} stubborn.py\n"
        f"      {log_line('never')}\n",
    )
    proc = dora_popen("build", str(df))
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "pids").exists():
            assert time.monotonic() < deadline, "the build command never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == code, out + err
    assert "Traceback" not in out + err
    assert err.strip().splitlines() == [f"{how}: build of node `a` stopped (`{PY} stubborn.py`)"]
    for pid in pids:
        assert not _alive(pid), f"build process {pid} outlived dora build"
    assert not (tmp_path / "log.txt").exists()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
