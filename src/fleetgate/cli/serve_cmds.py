"""`fleetgate serve`: the JSON API and the dashboard of a workspace, on loopback unless told otherwise."""

from __future__ import annotations

from typing import Annotated

import typer

from fleetgate.cli._common import home_of


def serve(ctx: typer.Context,
          host: Annotated[str | None, typer.Option(help="Address to bind (default web.host: 127.0.0.1).")] = None,
          port: Annotated[int | None, typer.Option(help="Port (default web.port: 8787; 0 picks a free one).")] = None,
          ) -> None:
    """Serve /api/v1 (OpenAPI at /api/v1/openapi.json) and the dashboard at /."""
    from fleetgate.web.server import serve as run_server

    overrides = {"web": {k: v for k, v in (("host", host), ("port", port)) if v is not None}}
    run_server(home_of(ctx), overrides if overrides["web"] else None)
