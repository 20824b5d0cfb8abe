"""Run the app with uvicorn in one process (the catalog is SQLite: one writer at a time anyway)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import uvicorn

from fleetgate.services import Services
from fleetgate.web.app import create_app
from fleetgate.workspace import Workspace


def serve(home: Path, overrides: dict[str, Any] | None = None) -> None:
    services = Services(Workspace.open(home, overrides))
    web = services.ws.config.web
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if web.host not in ("127.0.0.1", "::1", "localhost"):
        logging.getLogger("fleetgate.web").warning("binding %s: the dashboard is reachable beyond this machine; "
                                                   "put it behind TLS", web.host)
    config = uvicorn.Config(create_app(services), host=web.host, port=web.port, log_level="info",
                            access_log=False, proxy_headers=False, server_header=False)
    # uvicorn's own startup lines say where it listens (the real port when --port 0); no access log: the
    # state-changing requests are in the transparency log, and reads are not worth a line each
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        services.close()
