"""``dora build``: run the ``build:`` commands of a dataflow's nodes, as dora-rs 1.1 does locally.

Every line of a node's ``build:`` is one command, split like a shell would but run without one,
in the dataflow file's folder, with the node's environment. The whole plan (every line of every
node split, ``uv`` found) is made before anything runs, so a typo in the last node does not
leave the first ones half built.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from dora_cli._common import fail, print_problems

if TYPE_CHECKING:
    from dora_runtime.descriptor import Descriptor

_PIP_PROGRAMS = ("pip", "pip3")  # what dora-rs runs as `uv pip` with --uv
_TERM_GRACE_S = 2.0


def register(app: typer.Typer) -> None:
    app.command("build")(build)


def build(
    dataflow: Path = typer.Argument(
        ..., metavar="DATAFLOW", help="The dataflow YAML file (dora-rs 1.x format)."
    ),
    uv: bool = typer.Option(
        False,
        "--uv",
        help="Run build lines whose program is pip (or pip3) as `uv pip` instead; needs uv "
        "on PATH.",
    ),
) -> None:
    """Run the `build:` commands of every node, in file order, in the dataflow's folder.

    Each non-empty line is one command, split like a shell would (quotes work) but run without
    a shell, with the node's `env` (and the top-level `env`) added to the environment. The first
    command that fails stops the build (exit 1). Nodes without `build:` are skipped.
    """
    from dora_runtime.descriptor import load_descriptor
    from dora_runtime.errors import DescriptorError

    try:
        descriptor = load_descriptor(dataflow)
    except DescriptorError as e:
        print_problems(e)
        raise typer.Exit(1) from None
    if not any(node.build is not None for node in descriptor.nodes):
        typer.echo("nothing to build: no node has a build: field")
        return
    start = time.monotonic()
    try:
        steps = plan(descriptor, uv=uv)
        if any(step.argv[0] == "uv" for step in steps) and shutil.which("uv") is None:
            fail("--uv: `uv` is not on PATH; install uv (https://docs.astral.sh/uv/) or drop --uv")
        run_steps(steps, cwd=descriptor.base_dir)
    except BuildError as e:
        fail(str(e))
        return
    n = len(dict.fromkeys(step.node_id for step in steps))
    typer.echo(f"built {n} node{'s' if n != 1 else ''} in {time.monotonic() - start:.1f} s")


class BuildError(Exception):
    """A build line that cannot be split, a program that cannot start, a failed command."""


def plan(descriptor: Descriptor, *, uv: bool) -> list[BuildStep]:
    """Every command of every node with ``build:``, in file order (a node with ``git:`` is
    skipped with a warning: dora-py does not clone sources)."""
    steps: list[BuildStep] = []
    for node in descriptor.nodes:
        if "git" in node.raw:
            typer.secho(
                f"warning: node `{node.id}` has `git:`; dora-py does not clone sources, so its "
                "build is skipped: clone the repository and point `path:` at it",
                fg="yellow",
                err=True,
            )
            continue
        if node.build is None:
            continue
        steps.extend(plan_node(node.id, node.build, node.env, uv=uv))
    return steps


@dataclass(frozen=True)
class BuildStep:
    """One line of a node's ``build:``, ready to run."""

    node_id: str
    argv: list[str]
    env: dict[str, str]
    """Only the node's variables; the build adds them to ``os.environ``."""
    display: str
    """The line as written (``uv `` in front when ``--uv`` rewrote it), for messages."""


def plan_node(node_id: str, build: str, env: dict[str, str], *, uv: bool) -> list[BuildStep]:
    """The commands of one node's ``build:``; a line that cannot be split is a one-line error.

    ``env`` is the node's ``env`` as the parser made it for ``dora run`` (top-level ``env``
    merged in, values as strings). Raises ``BuildError``."""
    steps = []
    for line in build.splitlines():
        display = line.strip()
        if not display:
            continue
        try:
            argv = shlex.split(display)
        except ValueError as e:
            raise BuildError(f"build of node `{node_id}`: cannot split `{display}`: {e}") from None
        if uv and argv[0] in _PIP_PROGRAMS:
            argv = ["uv", "pip", *argv[1:]]
            display = f"uv {display}"
        steps.append(BuildStep(node_id, argv, env, display))
    return steps


class _Terminated(Exception):
    """SIGTERM arrived while a build command ran."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def run_steps(steps: list[BuildStep], cwd: Path) -> None:
    """Run ``steps`` one after the other; the first failure (``BuildError``), Ctrl-C (exit 130)
    or SIGTERM (exit 143) ends the build."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        for step in steps:
            typer.echo(f"building {step.node_id}: {step.display}")
            code = _run_one(step, cwd)
            if code != 0:
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code < 0
                    else f"exited with {code}"
                )
                raise BuildError(f"build of node `{step.node_id}` failed: `{step.display}` {how}")
    except _Terminated:  # between two commands; during one, _run_one stops it first
        raise typer.Exit(128 + signal.SIGTERM) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_one(step: BuildStep, cwd: Path) -> int:
    """Run one command in a session (process group) of its own, so that on Ctrl-C or SIGTERM
    it and everything it started can be killed; its output goes straight to ours."""
    from dora_runtime._spawn import die_with_parent

    try:
        proc = subprocess.Popen(
            step.argv,
            cwd=cwd,
            env={**os.environ, **step.env},
            stdin=subprocess.DEVNULL,  # as dora-rs: a build never waits for the keyboard
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    except FileNotFoundError:
        raise BuildError(
            f"build of node `{step.node_id}` failed: program `{step.argv[0]}` not found "
            f"(in `{step.display}`); install it or fix the `build:` line"
        ) from None
    except OSError as e:
        raise BuildError(
            f"build of node `{step.node_id}` failed: cannot run `{step.argv[0]}`: {e.strerror} "
            f"(in `{step.display}`)"
        ) from None
    try:
        return proc.wait()
    except (KeyboardInterrupt, _Terminated) as e:
        _stop(proc)
        how = "interrupted" if isinstance(e, KeyboardInterrupt) else "terminated"
        typer.secho(
            f"{how}: build of node `{step.node_id}` stopped (`{step.display}`)",
            fg="red",
            err=True,
        )
        if isinstance(e, KeyboardInterrupt):
            raise typer.Exit(130) from None
        raise


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group, SIGKILL after a grace period, then reap it."""
    from dora_runtime._spawn import kill_group

    kill_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + _TERM_GRACE_S
    # WNOWAIT: the command stays a zombie, so its group id cannot be reused before the SIGKILL
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.02)
    kill_group(proc.pid, signal.SIGKILL)  # also whatever it started that outlived it
    proc.wait()
