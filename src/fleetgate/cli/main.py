"""`fleetgate`: the command line. Each command parses, calls one library function, renders."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleetgate.cli import catalog_cmds, compute_cmds, ingest_cmds
from fleetgate.errors import ExitCode, FleetgateError

app = typer.Typer(
    name="fleetgate",
    help="In-region data platform and export gate for connected-vehicle fleets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[Path, typer.Option("--home", envvar="FLEETGATE_HOME", help="Workspace folder.")] = Path(
        ".fleetgate"
    ),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    """In-region data platform and export gate for connected-vehicle fleets."""
    ctx.obj = {"home": home, "debug": debug}


app.command("init", help="Create or extend a workspace (fleetgate.toml) with a region.")(ingest_cmds.init)
app.command("sample", help="Generate a realistic, reproducible sample fleet drop.")(ingest_cmds.sample)
app.command("ingest", help="Validate a drop and land it in a region's store and catalog.")(ingest_cmds.ingest)
app.command("demo", help="Run the whole pipeline on a generated fleet and write report.html.")(ingest_cmds.demo)
app.add_typer(catalog_cmds.app, name="catalog", help="Inspect a region's catalog, runs and quarantine.")
app.add_typer(compute_cmds.app, name="compute", help="Plan a training cluster under US export controls.")


def run() -> None:
    """Entry point: run the app and turn FleetgateErrors into one red line and an exit code."""
    debug = "--debug" in sys.argv or os.environ.get("FLEETGATE_DEBUG") == "1"
    try:
        app(standalone_mode=False)
    except FleetgateError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(int(exc.exit_code))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[red]aborted[/]")
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(int(ExitCode.USAGE))
        if debug:
            raise
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (rerun with --debug)")
        sys.exit(int(ExitCode.ERROR))
