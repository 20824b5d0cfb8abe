"""Run the app with uvicorn in one process, and the ingest worker beside it as a child process.

The server only spools uploads (`services.ingest_jobs`); the worker ingests them in a process of its
own, so an ingest never takes the server's CPU time slice or Python's GIL from the readers. The
server starts the worker (`fleetgate worker`), starts it again when it exits, and stops it on the way
out; the worker drains the spool when it starts, so a crash of either loses no accepted upload.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from fleetgate.services import Services
from fleetgate.web.app import create_app
from fleetgate.workspace import Workspace

log = logging.getLogger("fleetgate.web")


def serve(home: Path, overrides: dict[str, Any] | None = None) -> None:
    services = Services(Workspace.open(home, overrides))
    web = services.ws.config.web
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if web.host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("binding %s: the dashboard is reachable beyond this machine; put it behind TLS", web.host)
    services.ingest_jobs.clear_incoming()  # uploads a stopped server was receiving: never acknowledged
    config = uvicorn.Config(create_app(services), host=web.host, port=web.port, log_level="info",
                            access_log=False, proxy_headers=False, server_header=False, loop="uvloop",
                            http="httptools")
    # uvicorn's own startup lines say where it listens (the real port when --port 0); no access log: the
    # state-changing requests are in the transparency log, and reads are not worth a line each
    server = uvicorn.Server(config)
    # Everything built so far (the app, the modules, the policy packs: some 200,000 objects) lives as long as
    # the process; a full collection of the cyclic garbage collector walks them all, a pause of a quarter
    # of a second on this 2-core machine in the middle of requests. Frozen, it walks only what came later.
    gc.collect()
    gc.freeze()
    worker = WorkerSupervisor(services.ws.home, web.ingest_nice)
    worker.start()
    try:
        server.run()
    finally:
        worker.stop()
        services.close()


class WorkerSupervisor:
    """Keeps one `fleetgate worker` child running: started again after it exits (waiting longer each time
    it exits soon after a start), stopped with the server. It runs `nice` steps below the server
    (`web.ingest_nice`): when the two want the same CPU, the readers waiting on the server go first and
    the uploads, already acknowledged, wait."""

    def __init__(self, home: Path, nice: int = 0, grace_s: float = 10.0) -> None:
        self.home, self.nice, self.grace_s = home, nice, grace_s
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleetgate-worker-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "fleetgate", "--home", str(self.home), "worker",
                                 "--parent", str(os.getpid()), "--nice", str(self.nice)])

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            self.proc = self._spawn()
            while self.proc.poll() is None and not self._stop.wait(0.5):
                pass
            if self._stop.is_set():
                return
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            log.warning("the ingest worker exited (%s); starting it again in %.0f s", self.proc.returncode, backoff)
            self._stop.wait(backoff)

    def stop(self) -> None:
        """Ask the worker to stop after its current job; kill it after `grace_s` (a job cut short is resumed)."""
        self._stop.set()
        self._thread.join(timeout=5)
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
