"""`fleetgate`: the command line. Each command parses, calls one library function, renders."""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fleetgate.errors import ExitCode, FleetgateError

err_console = Console(stderr=True)
_ROOT = {"name": "fleetgate", "help": "In-region data platform and export gate for connected-vehicle fleets.",
         "no_args_is_help": True, "add_completion": False, "pretty_exceptions_enable": False}


def main(
    ctx: typer.Context,
    home: Annotated[Path, typer.Option("--home", envvar="FLEETGATE_HOME", help="Workspace folder.")] = Path(
        ".fleetgate"
    ),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    """In-region data platform and export gate for connected-vehicle fleets."""
    ctx.obj = {"home": home, "debug": debug}


def _new_app() -> typer.Typer:
    app = typer.Typer(**_ROOT)
    app.callback()(main)
    return app


def _add_deid(app: typer.Typer, deid_cmds) -> None:
    app.add_typer(deid_cmds.app, name="deid", help="De-identify camera media, trajectories and identifier columns.")
    app.add_typer(deid_cmds.models_app, name="models", help="List, fetch and verify the detector models.")


def full_app() -> typer.Typer:
    """Every command (importing every command module: about 1.5 s of start-up on 2 cores)."""
    from fleetgate.cli import (
        catalog_cmds,
        compute_cmds,
        deid_cmds,
        federate_cmds,
        gate_cmds,
        ingest_cmds,
        people_cmds,
        policy_cmds,
        report_cmds,
        serve_cmds,
        subject_cmds,
        train_cmds,
    )

    app = _new_app()
    app.command("init", help="Create or extend a workspace (fleetgate.toml) with a region.")(ingest_cmds.init)
    app.command("sample", help="Generate a realistic, reproducible sample fleet drop.")(ingest_cmds.sample)
    app.command("ingest", help="Validate a drop and land it in a region's store and catalog.")(ingest_cmds.ingest)
    app.command("demo", help="Run the whole pipeline on a generated fleet and write report.html.")(ingest_cmds.demo)
    app.command("classify", help="Tag every asset with kind, features and subjects; decide each alone.")(
        policy_cmds.classify)
    app.command("decide", help="Decide an export request (JSON or YAML) against the rule packs.")(policy_cmds.decide)
    app.command("explain", help="Show why an asset was classified and decided as it was.")(policy_cmds.explain)
    app.add_typer(policy_cmds.app, name="policy", help="Lint, show and test rule packs.")
    _add_deid(app, deid_cmds)
    app.command("train")(train_cmds.train)
    app.command("federate")(federate_cmds.federate)
    app.add_typer(federate_cmds.federation_app, name="federation")
    app.add_typer(gate_cmds.export_app, name="export", help="Plan, approve and run exports through the gate.")
    app.add_typer(gate_cmds.audit_app, name="audit", help="Verify, prove, checkpoint and witness the transparency log.")
    app.command("verify-package", help="Check a received export package (signature, hashes, log inclusion).")(
        gate_cmds.verify_package_cmd)
    app.add_typer(people_cmds.keys_app, name="keys", help="Make your own signing key pair.")
    app.add_typer(people_cmds.principals_app, name="principals", help="Add, list and remove the people who may act.")
    app.add_typer(people_cmds.config_app, name="config", help="Sign and show the settings that decide exports.")
    app.add_typer(subject_cmds.subject_app, name="subject", help="Find, copy and erase one person's data.")
    app.add_typer(subject_cmds.retention_app, name="retention",
                  help="Delete what expired under the retention settings.")
    app.add_typer(catalog_cmds.app, name="catalog", help="Inspect a region's catalog, runs and quarantine.")
    app.add_typer(compute_cmds.app, name="compute", help="Plan a training cluster under US export controls.")
    app.add_typer(report_cmds.report_app, name="report",
                  help="Write the PIPIA, assessment, contract and annual filings.")
    app.command("status", help="The region's log and how close it is to each legal threshold.")(report_cmds.status)
    app.command("sign", help="Sign a statement the server showed (plan, approval, run) with your own key, offline.")(
        gate_cmds.sign_cmd)
    app.command("serve", help="Serve the JSON API (/api/v1) and the dashboard; loopback by default.")(serve_cmds.serve)
    app.command("worker", help="Ingest the drops uploaded over HTTP (serve starts one itself).")(serve_cmds.worker)
    return app


def deid_app() -> typer.Typer:
    """`fleetgate deid ...` and `fleetgate models ...` alone: the same commands, options and help, without
    loading the catalog, gate, policy and web modules that the other commands need (a clip's whole-process
    time is measured against deface, start-up included: docs/benchmarks.md)."""
    from fleetgate.cli import deid_cmds

    app = _new_app()
    _add_deid(app, deid_cmds)
    return app


_ON_THEIR_OWN = {"deid": deid_app, "models": deid_app}


def _command_word(args: list[str]) -> str | None:
    """The first word after the global options (--home takes a value)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--home":
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


@functools.cache
def _full() -> typer.Typer:
    return full_app()


def __getattr__(name: str):
    if name == "app":  # the whole command tree, built when first asked for (tests, documentation)
        return _full()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _NoteHandler(logging.Handler):
    """Library notes (a catalog migrated, a server started) as one line each on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[yellow]note:[/] {record.getMessage()}", highlight=False, soft_wrap=True)


def run() -> None:
    """Entry point: run the app and turn FleetgateErrors into one red line and an exit code."""
    notes = logging.getLogger("fleetgate")
    if not notes.handlers:
        notes.addHandler(_NoteHandler(logging.INFO))
        notes.setLevel(logging.INFO)
        notes.propagate = False
    try:
        from typer.exceptions import TyperException
    except ImportError:  # typer < 0.21 (which flwr pins) still raises click's own exceptions
        from click.exceptions import ClickException as TyperException

    debug = "--debug" in sys.argv or os.environ.get("FLEETGATE_DEBUG") == "1"
    try:
        # In non-standalone mode a typer.Exit comes back as the return value.
        chosen = _ON_THEIR_OWN.get(_command_word(sys.argv[1:]) or "", _full)
        app = chosen()
        # what the imports made lives as long as the process: the collector need not walk it on every full
        # collection, nor once more at exit (measured on `deid video`: 0.05-0.1 s of each run's wall time)
        gc.freeze()
        code = app(standalone_mode=False)
        gc.freeze()  # and what the command made: the process ends next
    except FleetgateError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(int(exc.exit_code))
    except TyperException as exc:  # bad options and arguments, reported the way click does
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(int(getattr(exc, "exit_code", ExitCode.USAGE)))
    except (KeyboardInterrupt, EOFError):
        err_console.print("[red]aborted[/]")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} (rerun with --debug)")
        sys.exit(int(ExitCode.ERROR))
    sys.exit(code if isinstance(code, int) else 0)
