"""``dora new``: scaffolding for new nodes."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

import typer

from dora_cli._common import fail

# Module names a node file must not take: it would shadow the import for nodes next to it.
_SHADOWING = frozenset(
    {
        "dora",
        "dora_runtime",
        "dora_replay",
        "dora_cli",
        "pytest_dora",
        "pyarrow",
        "numpy",
        "yaml",
        "msgpack",
        "typing",
        "logging",
        "json",
        "os",
        "sys",
        "time",
        "asyncio",
        "threading",
    }
)

app = typer.Typer(
    help="Create new nodes from a template.", no_args_is_help=True, rich_markup_mode="markdown"
)

_TEMPLATE = '''"""{name}: a dora node.

Receives every input declared for it in the dataflow and sends one output per input.
"""

import pyarrow as pa
from dora import Node


def main() -> None:
    node = Node()
    for event in node:
        if event["type"] == "INPUT":
            value = event["value"]
            # Replace this with the node's work; send what the next node needs.
            node.send_output("out", pa.array([len(value)]), event["metadata"])
        elif event["type"] == "STOP":
            break


if __name__ == "__main__":
    main()
'''

_SNIPPET = """  - id: {name}
    path: {path}
    inputs:
      tick: dora/timer/millis/100
    outputs:
      - out
"""


@app.command("node")
def new_node(
    name: str = typer.Argument(
        ...,
        metavar="NAME",
        help="Node id; the file is NAME.py, with '-' turned into '_' (my-node -> my_node.py).",
    ),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create NAME.py."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Create NAME.py, a Python node that runs unmodified on dora-py and dora-rs."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name) or keyword.iskeyword(name):
        fail(f"node name {name!r} must start with a letter and use letters, digits, '-' or '_'")
    module = name.replace("-", "_")
    if module in _SHADOWING:
        fail(
            f"a node file named {module}.py would hide the `{module}` package from every node in "
            "its folder; choose another name"
        )
    path = directory / f"{module}.py"
    if path.exists() and not force:
        fail(f"{path} already exists; pass --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(_TEMPLATE.format(name=name), encoding="utf-8")
    typer.echo(f"created {path}")
    typer.echo("add it to your dataflow file:")
    typer.echo(_SNIPPET.format(name=name, path=path.as_posix()))
