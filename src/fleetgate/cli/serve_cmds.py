"""`fleetgate serve`: the JSON API and the dashboard of a workspace, on loopback unless told otherwise; and
`fleetgate worker`, which ingests the drops uploaded to it (serve starts one as its child)."""

from __future__ import annotations

import os
import signal
import threading
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


def worker(ctx: typer.Context,
           parent: Annotated[int | None, typer.Option(
               help="Stop when process PARENT exits (`fleetgate serve` starts its worker so).")] = None,
           nice: Annotated[int, typer.Option(min=0, max=19, help="Lower this process's CPU priority by NICE.")] = 0,
           ) -> None:
    """Ingest the drops uploaded to `POST /api/v1/drops` until stopped; queued ones first."""
    from fleetgate.services import Services
    from fleetgate.workspace import Workspace

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())  # after the job at hand: one cut short is resumed anyway

    def stopped() -> bool:
        return stop.is_set() or (parent is not None and os.getppid() != parent)

    if nice:
        os.nice(nice)
    services = Services(Workspace.open(home_of(ctx)))
    jobs = services.ingest_jobs
    try:
        while not stopped():
            with jobs.worker_lock(wait=False) as mine:
                if mine:
                    jobs.watch(stopped)
                    return
            stop.wait(1.0)  # another worker drains this spool: stand by
    finally:
        services.close()
