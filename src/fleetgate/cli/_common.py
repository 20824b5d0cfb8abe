"""Helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from fleetgate.errors import UsageError

if TYPE_CHECKING:  # loaded where used: `fleetgate deid video` and `models` need none of them (start-up time)
    from fleetgate.keys.personal import Actor
    from fleetgate.services import Services
    from fleetgate.workspace import Workspace

console = Console()


class OutputFormat(StrEnum):
    """How a command prints its result."""

    table = "table"
    json = "json"


def home_of(ctx: typer.Context) -> Path:
    """The workspace folder chosen by --home or FLEETGATE_HOME."""
    return Path(ctx.obj["home"]) if ctx.obj else Path(".fleetgate")


def open_workspace(ctx: typer.Context) -> Workspace:
    """Open the workspace named by --home."""
    from fleetgate.workspace import Workspace

    return Workspace.open(home_of(ctx))


@contextmanager
def open_services(ctx: typer.Context) -> Iterator[Services]:
    """The services of the workspace named by --home (closed afterwards)."""
    from fleetgate.services import Services

    services = Services(open_workspace(ctx))
    try:
        yield services
    finally:
        services.close()


def print_json(data: object) -> None:
    """Write JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def human_bytes(n: float | None) -> str:
    """1536 → '1.5 KiB'."""
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


AsOpt = Annotated[str | None, typer.Option("--as", envvar="FLEETGATE_AS",
                                           help="Your registered principal name (or FLEETGATE_AS).")]
KeyOpt = Annotated[Path | None, typer.Option("--key", envvar="FLEETGATE_KEY",
                                             help="Your own private key file (or FLEETGATE_KEY).")]


def actor(name: str | None, key: Path | None, what: str) -> Actor:
    """The person acting, from --as/--key or FLEETGATE_AS/FLEETGATE_KEY; the key is theirs, never the region's."""
    if not name or key is None:
        raise UsageError(f"{what} is signed by a person: pass --as NAME --key FILE (or set FLEETGATE_AS and "
                         "FLEETGATE_KEY)")
    from fleetgate.keys.personal import Actor

    return Actor.from_key_file(name, key)
