"""``dora validate``: check a dataflow file and list every problem with its line."""

from __future__ import annotations

from pathlib import Path

import typer


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
        for line in str(e).splitlines():
            typer.secho(line, fg="red", err=True)
        n = len(e.problems)
        typer.secho(f"{n} problem{'s' if n != 1 else ''} found", err=True)
        raise typer.Exit(1) from None
    n = len(descriptor.nodes)
    typer.echo(f"OK: {dataflow} ({n} node{'s' if n != 1 else ''})")
