"""Helpers shared by the CLI verbs: one-line errors, durations, node-prefixed output."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from dora_runtime.errors import DescriptorError

_COLORS = ["cyan", "green", "yellow", "magenta", "blue", "bright_cyan", "bright_green"]


def print_problems(e: DescriptorError) -> None:
    """A dataflow file's problems (``dora validate`` and every command that loads one): one
    problem is one ``error: FILE:LINE: message`` line; several get a ``FILE:LINE: message``
    line each, then ``error: N problems found in FILE``."""
    lines = str(e).splitlines()
    if len(lines) == 1:
        typer.secho(f"error: {lines[0]}", fg="red", err=True)
        return
    for line in lines:
        typer.secho(line, fg="red", err=True)
    typer.secho(f"error: {len(e.problems)} problems found in {e.path}", fg="red", err=True)


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def duration(value: str | None, option: str) -> float | None:
    """Parse ``"30"``, ``"10s"``, ``"500ms"``, ``"5m"`` into seconds; one-line error otherwise."""
    if value is None:
        return None
    from dora_runtime._timer import parse_duration_s

    try:
        return parse_duration_s(value)
    except ValueError as e:
        fail(f"{option} {value!r}: {e}")
    return None


def node_printer(node_ids: list[str]) -> Callable[[str, str], None]:
    """A printer that prefixes each line with its node id, aligned, coloured on a terminal."""
    width = max([len(n) for n in node_ids] + [4])
    color = sys.stdout.isatty()
    styles = {n: _COLORS[i % len(_COLORS)] for i, n in enumerate(node_ids)}

    def printer(source: str, line: str) -> None:
        prefix = f"{source:>{width}} |"
        if color:
            prefix = typer.style(
                prefix, fg="red" if source == "dora" else styles.get(source), bold=source == "dora"
            )
        print(f"{prefix} {line}", flush=True)

    return printer
