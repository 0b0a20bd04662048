"""``dora validate``: check a dataflow file and list every problem with its line."""

from __future__ import annotations

from pathlib import Path

import typer

from dora_cli._common import print_problems


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


def validate(
    dataflow: Path = typer.Argument(
        ..., metavar="DATAFLOW", help="The dataflow YAML file to check."
    ),
) -> None:
    """Check a dataflow file: prints OK, or every problem as FILE:LINE: message (exit 1)."""
    from dora_runtime.descriptor import load_descriptor
    from dora_runtime.errors import DescriptorError

    try:
        descriptor = load_descriptor(dataflow)
    except DescriptorError as e:
        print_problems(e)
        raise typer.Exit(1) from None
    n = len(descriptor.nodes)
    typer.echo(f"OK: {dataflow} ({n} node{'s' if n != 1 else ''})")
    for note in descriptor.ignored_outputs():
        typer.echo(f"note: {note}")
