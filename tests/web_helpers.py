"""A served workspace for the API and dashboard tests: people with tokens and passwords, a classified fleet,
and a real `fleetgate serve` process on a free loopback port."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fleetgate.classify import classify_region
from fleetgate.domain import Role
from fleetgate.ingest import ingest_drop
from fleetgate.keys import envelope as env
from fleetgate.services import Services
from fleetgate.workspace import Workspace, init_workspace
from people import Team, load_team, make_team, new_actor

PASSWORD = "correct horse battery"


@dataclass
class Served:
    home: Path
    team: Team
    tokens: dict[str, str]  # principal name -> API token
    url: str = ""
    proc: subprocess.Popen | None = None
    log: Path | None = None
    extra: dict = field(default_factory=dict)

    def headers(self, who) -> dict[str, str]:  # noqa: ANN001 - an Actor
        return {"Authorization": f"Bearer {self.tokens[who.name]}"}


def build_home(root: Path, drop: Path, deid: bool = False) -> Served:
    """A workspace with the team of tests/people.py, the drop ingested and classified, a token per person and a
    password for the compliance officers."""
    home = root / "ws"
    init_workspace(home, "cn-shanghai")
    with Workspace.open(home) as ws:
        team = make_team(ws, root / "people")
        ingest_drop(ws.region(), drop)
        if deid:
            from fleetgate.deid import deid_region

            deid_region(ws)
        classify_region(ws)
        services = Services(ws)
        tokens = {a.name: services.principals.issue_token(a.name, team.admin).secret
                  for a in (team.engineer, *team.compliance, team.auditor, team.admin)}
        for officer in team.compliance:
            services.principals.set_password(officer.name, PASSWORD, team.admin)
    (root / "tokens.json").write_text(json.dumps(tokens))
    return Served(home, team, tokens)


def add_token_holders(root: Path, served: Served, people: dict[str, Role]) -> None:
    """Register more people (a key pair each under root/people) with a token each; tokens.json gains them."""
    with Workspace.open(served.home) as ws:
        services = Services(ws)
        for name, role in people.items():
            actor = new_actor(root / "people", name)
            services.principals.add(name, role, actor.signer.public_key, served.team.admin)
            served.tokens[name] = services.principals.issue_token(name, served.team.admin).secret
    (root / "tokens.json").write_text(json.dumps(served.tokens))


def tar_of(folder: Path) -> bytes:
    """An uncompressed tar of every file under `folder`, named relative to it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    return out.getvalue()


def copy_home(master: Path, dest: Path) -> Served:
    shutil.copytree(master, dest)
    tokens = json.loads((dest / "tokens.json").read_text())
    return Served(dest / "ws", load_team(dest / "people"), tokens)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(served: Served, env_extra: dict[str, str] | None = None, timeout: float = 60) -> Served:
    """`fleetgate serve` in its own process, as an operator would run it; waits for /api/v1/health."""
    port = free_port()
    served.log = served.home.parent / "server.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")} | (env_extra or {})
    # the test browser talks plain http to 127.0.0.1, which counts as a secure context for cookies
    with open(served.log, "wb") as log:  # the child keeps its own copy of the descriptor
        served.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetgate", "--home", str(served.home), "serve", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=environ)
    served.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            raise RuntimeError(f"fleetgate serve exited: {served.log.read_text()[-2000:]}")
        try:
            if httpx.get(served.url + "/api/v1/health", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"fleetgate serve did not answer in {timeout} s: {served.log.read_text()[-2000:]}")


def worker_pid(server: int, timeout: float = 30) -> int | None:
    """The pid of the `fleetgate worker` that a `fleetgate serve` process started (its one child, started
    by its supervisor thread), or None when none appears within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{server}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.1)
    return None


def stop_server(served: Served) -> None:
    if served.proc is not None and served.proc.poll() is None:
        served.proc.terminate()
        try:
            served.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            served.proc.kill()


def sign_with_cli(request_json: str, key: Path, tmp: Path) -> str:
    """What a person does on their own machine: save the signing request and run `fleetgate sign`."""
    statement = tmp / f"statement-{time.monotonic_ns()}.json"
    statement.write_text(request_json, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "fleetgate", "sign", str(statement), "--key", str(key)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def sign(request: dict, actor) -> dict:  # noqa: ANN001 - an Actor
    """Sign a signing request's statement with the actor's key (as `fleetgate sign` does)."""
    return env.sign_offline(json.loads(request["payload"]), actor.signer)


def upload(client, headers: dict[str, str], name: str, body: bytes) -> dict:  # noqa: ANN001 - a TestClient
    """POST a drop (202: a job), ingest the spool in this process as the worker would, and return the job's
    outcome as `GET /api/v1/jobs/{id}` shows it."""
    r = client.post("/api/v1/drops", params={"name": name}, headers={**headers, "Content-Type": "application/x-tar"},
                    content=body)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["status"] == "queued" and r.headers["location"] == f"/api/v1/jobs/{accepted['job_id']}"
    jobs = client.services.ingest_jobs
    with jobs.worker_lock() as mine:
        assert mine
        jobs.drain()
    done = client.get(r.headers["location"], headers=headers)
    assert done.status_code == 200, done.text
    return done.json()
