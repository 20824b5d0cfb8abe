"""The deployment's processes: the SuperLink in the server region and one SuperNode per region.

`fleetgate federation superlink` and `fleetgate federation supernode --region R` are small
supervisors. Before anything else each pins its process to its region (FLEETGATE_ACTING_REGION,
inherited by every process below it: Flower's SuperExec and the ServerApp or ClientApp process it
starts per task), so the residency guard refuses any read of another region's blobs from start-up;
Flower's telemetry is off. Then each starts Flower's own process with TLS and node authentication:

    superlink:  flower-superlink --ssl-ca-certfile/--ssl-certfile/--ssl-keyfile --enable-supernode-auth,
                then registers every region's node key through the Control API (state/nodes.json)
    supernode:  flower-supernode --root-certificates <the deployment's CA> --auth-supernode-private-key
                <the region's key>, behind the app pin of `flower_node.py`

A SuperNode that the SuperLink will not activate is retried until `join_timeout_s` (a SuperNode that
died without saying goodbye stays "online" at the SuperLink for two heartbeats, 60 s) and then
refused with one line. Every start, join and exit is appended to `<home>/federation/nodes/<region>.jsonl`,
as is every ClientApp process (pid and its SuperNode's pid), so the access log's pids can be traced
to the region's own processes. Children die with their supervisor (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import collections
import ctypes
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from fleetgate.errors import UsageError
from fleetgate.store.residency import ACTING_ENV
from fleetgate.train.deployment import Deployment, app_fab, node_key_path, register_nodes
from fleetgate.train.federation import FLOWER_ENVIRONMENT, FederationError
from fleetgate.workspace import Workspace

HOME_ENV = "FLEETGATE_HOME"
DEPLOYMENT_ENV = "FLEETGATE_DEPLOYMENT"
SUPERNODE_PID_ENV = "FLEETGATE_SUPERNODE_PID"
ACTIVATION_REFUSED = "Failed to activate SuperNode"  # Flower's public message for an unknown or busy key
APP_REFUSED = "fleetgate: refused app"  # flower_node.py's message for an app this region does not run
JOINED = "SuperNode ID:"


def node_log(home: Path, region: str) -> Path:
    return home / "federation" / "nodes" / f"{region}.jsonl"


def record_node_event(home: Path, region: str, event: str, **fields: object) -> None:
    """One line per event; short appends keep whole lines across processes."""
    line = json.dumps({"at": dt.datetime.now(dt.UTC).isoformat(), "region": region, "event": event,
                       "pid": os.getpid(), **fields}, sort_keys=True)
    path = node_log(home, region)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def read_node_log(home: Path, region: str) -> list[dict]:
    path = node_log(home, region)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pin_process(region: str, home: Path, deployment: Deployment) -> None:
    """Pin this process (and every child) to `region` before it opens any store."""
    pinned = os.environ.get(ACTING_ENV)
    if pinned and pinned != region:
        raise UsageError(f"this process is pinned to region {pinned} ({ACTING_ENV}); it cannot serve {region}")
    os.environ.update({ACTING_ENV: region, HOME_ENV: str(home.resolve()),
                       DEPLOYMENT_ENV: str(deployment.folder.resolve()), **FLOWER_ENVIRONMENT})


def _flower_bin(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise UsageError(f"{path}: Flower's commands are not installed next to this Python; "
                         "pip install 'fleetgate[federate]'")
    return path


def _child_env(deployment: Deployment, role: str, threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    home = deployment.flwr_home(role)
    home.mkdir(parents=True, exist_ok=True)
    # Flower starts flower-superexec, flwr-serverapp and flwr-clientapp by name
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["FLWR_HOME"] = str(home)
    if threads:
        env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Child:
    """A supervised Flower process: output echoed (and remembered), signals forwarded, killed with us."""

    def __init__(self, cmd: list[str], env: dict[str, str], on_line=None) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.on_line = on_line
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace", bufsize=1, preexec_fn=preexec)
        self._reader = threading.Thread(target=self._echo, daemon=True)
        self._reader.start()

    def _echo(self) -> None:
        for line in self.proc.stdout:
            sys.stderr.write(line)
            self.tail.append(line)
            if self.on_line:
                self.on_line(line)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.tail)

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.wait()

    def wait(self) -> int:
        code = self.proc.wait()
        self._reader.join(timeout=5)
        return code


class Supervisor:
    """Forwards SIGTERM/SIGINT to the current child and remembers that we were asked to stop."""

    def __init__(self) -> None:
        self.stopping = False
        self.child: Child | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)

    def _stop(self, signum, frame) -> None:
        if self.stopping:  # once: Flower's handler takes a second SIGTERM as "exit now", skipping its goodbye
            return
        self.stopping = True
        if self.child and self.child.proc.poll() is None:
            self.child.proc.send_signal(signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_listening(host: str, port: int, child: Child, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise FederationError(f"the SuperLink exited with code {child.proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise FederationError(f"the SuperLink did not listen on {host}:{port} within {timeout_s:.0f} s")


def run_superlink(ws: Workspace, deployment: Deployment, announce=print) -> int:
    """The server region's SuperLink until it is stopped; returns its exit code."""
    pin_process(deployment.server_region, ws.home, deployment)
    deployment.state_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(_flower_bin("flower-superlink")),
           "--ssl-ca-certfile", str(deployment.ca_cert), "--ssl-certfile", str(deployment.superlink_cert),
           "--ssl-keyfile", str(deployment.superlink_key), "--enable-supernode-auth",
           "--host", deployment.bind, "--port", str(deployment.port),
           "--database", str(deployment.state_dir / "superlink.db"),
           "--disable-runtime-dependency-installation"]
    supervisor = Supervisor()
    child = supervisor.child = Child(cmd, _child_env(deployment, "superlink"))
    local = "127.0.0.1" if deployment.bind in ("0.0.0.0", "::") else deployment.bind  # in the certificate
    try:
        _wait_listening(local, deployment.port, child)
        nodes = register_nodes(deployment, f"[{local}]:{deployment.port}" if ":" in local
                               else f"{local}:{deployment.port}")
    except BaseException as exc:
        child.stop()
        if isinstance(exc, FederationError | KeyboardInterrupt | SystemExit):
            raise
        raise FederationError(f"the SuperLink started but registering the regions' node keys failed: "
                              f"{type(exc).__name__}: {exc}") from None
    listed = ", ".join(f"{region} (node {node})" for node, region in sorted(nodes.items(), key=lambda kv: kv[1]))
    announce(f"SuperLink of {deployment.server_region} ready on {deployment.address} (TLS, node authentication); "
             f"registered {listed}")
    return child.wait()


def run_supernode(ws: Workspace, deployment: Deployment, region: str, runtime_port: int = 0,
                  join_timeout_s: float = 120.0, node_key: Path | None = None, threads: int | None = None,
                  announce=print) -> int:
    """The region's SuperNode until it is stopped; returns its exit code, raises when it cannot join."""
    deployment.region(region)
    pin_process(region, ws.home, deployment)
    os.environ[SUPERNODE_PID_ENV] = str(os.getpid())
    key = node_key or node_key_path(ws, region)
    if not key.is_file():
        raise UsageError(f"{key}: region {region} has no SuperNode key; run `fleetgate federation init`")
    _, app_hash = app_fab()
    supervisor = Supervisor()
    deadline = time.monotonic() + join_timeout_s
    record_node_event(ws.home, region, "supervisor-start", app_sha256=app_hash, superlink=deployment.address)
    while True:
        port = runtime_port or free_port()
        cmd = [sys.executable, "-m", "fleetgate.train.flower_node", "--app-sha256", app_hash, "--",
               "--superlink", deployment.address, "--root-certificates", str(deployment.ca_cert),
               "--auth-supernode-private-key", str(key), "--host", "127.0.0.1", "--port", str(port),
               "--node-config", f"region='{region}'"]
        child = supervisor.child = Child(cmd, _child_env(deployment, region, threads),
                                         on_line=lambda line: _on_supernode_line(ws.home, region, line, announce))
        code = child.wait()
        record_node_event(ws.home, region, "supernode-exit", child_pid=child.proc.pid, code=code)
        if supervisor.stopping:
            return code
        if child.saw(APP_REFUSED):
            raise FederationError(f"region {region} refused the app the SuperLink sent: it runs only fleetgate's "
                                  f"own app (sha256 {app_hash[:12]}…); see the SuperNode's log above")
        if child.saw(ACTIVATION_REFUSED) and time.monotonic() < deadline:
            time.sleep(3.0)  # a previous SuperNode of this key may still count as online: wait it out
            continue
        if child.saw(ACTIVATION_REFUSED):
            raise FederationError(f"the SuperLink at {deployment.address} refused region {region}'s SuperNode key "
                                  f"{key}: it is not registered there (or its previous SuperNode was still "
                                  f"online after {join_timeout_s:.0f} s)")
        if code:
            raise FederationError(f"region {region}'s SuperNode exited with code {code}; see its log above")
        return code


def _on_supernode_line(home: Path, region: str, line: str, announce) -> None:
    if JOINED in line:
        node_id = line.rsplit(JOINED, 1)[1].strip()
        record_node_event(home, region, "joined", node_id=node_id)
        announce(f"SuperNode of {region} joined the SuperLink as node {node_id}")
