"""The ``dora`` command. One sub-app per verb group; handlers parse and call library code."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer

from dora_cli import (
    build_cmd,
    cluster_cmds,
    new_cmd,
    record_cmd,
    recording_cmds,
    replay_cmd,
    run_cmd,
    validate_cmd,
)


def _hide_flag_types() -> None:
    """typer 0.2x shows an on/off flag as ``--assert <bool>``, which reads as if it took a value;
    leave the type column empty for flags (options with values keep ``<path>``, ``<str>``...)."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # another typer: it shows what it shows
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()

app = typer.Typer(
    rich_markup_mode="markdown",
    name="dora",
    help="dora-py: run robotics dataflows, record them, replay them as tests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from dora_runtime import __version__

        typer.echo(f"dora-py {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """dora-py: run robotics dataflows, record them, replay them as tests."""
    # --debug is read by main() (tracebacks); declared here so that --help lists it.


run_cmd.register(app)
build_cmd.register(app)
replay_cmd.register(app)
cluster_cmds.register(app)
validate_cmd.register(app)
app.add_typer(new_cmd.app, name="new")
app.add_typer(record_cmd.app, name="record")

recording_cmds.register(app)  # info, export, import


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: errors become one line, tracebacks only with ``--debug``."""
    from dora_cli._common import print_problems
    from dora_runtime.errors import DescriptorError, DoraError

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        return app(args=args, prog_name="dora")
    except DescriptorError as e:
        if debug:
            traceback.print_exc()
        print_problems(e)
        sys.exit(1)
    except DoraError as e:
        if debug:
            traceback.print_exc()
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - never a traceback dump without --debug
        if debug:
            raise
        typer.secho(
            f"error: internal error: {type(e).__name__}: {e} (rerun with --debug for details)",
            fg=typer.colors.RED,
            err=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    sys.exit(main())
