"""A whole deployment on one machine: the SuperLink and each region's SuperNode as separate processes
on 127.0.0.1, each started as a user would (`fleetgate federation superlink|supernode`), with free
ports, TLS and node authentication as in production. The tests and the bench use it; so can anyone
who wants to try the deployed mode before spreading it over data centers.

Every process runs in its own session and is stopped with its whole process group;
`leftover_processes` finds anything still running for the deployment (Linux: /proc).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleetgate.train.deployment import Deployment, init_deployment
from fleetgate.train.federation import FederationError
from fleetgate.train.nodes import DEPLOYMENT_ENV, free_port, read_node_log
from fleetgate.workspace import Workspace


class LoopbackDeployment:
    """Start, kill, restart and stop a deployment's processes on this machine."""

    def __init__(self, home: Path, regions: tuple[str, ...], server_region: str = "global",
                 threads: int | None = 1, logs: Path | None = None) -> None:
        self.home, self.regions, self.server_region, self.threads = home, regions, server_region, threads
        self.logs = logs or home / "federation" / "loopback-logs"
        self.superlink: subprocess.Popen | None = None
        self.supernodes: dict[str, subprocess.Popen] = {}
        self.started: list[subprocess.Popen] = []
        self.deployment: Deployment | None = None

    # -- processes ------------------------------------------------------------------------------
    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        path = self.logs / f"{name}-{len(self.started)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")}
        with open(path, "w") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen([sys.executable, "-m", "fleetgate", "--home", str(self.home), "federation",
                                     *args], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        proc.log_path = path  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    def start(self, timeout_s: float = 120.0) -> LoopbackDeployment:
        with Workspace.open(self.home) as ws:
            self.deployment = init_deployment(ws, self.regions, self.server_region, port=free_port())
        self.deployment.nodes_file.unlink(missing_ok=True)
        self.superlink = self._spawn("superlink", "superlink", "--deployment", str(self.deployment.folder))
        self._wait(lambda: self.deployment.nodes_file.is_file(), self.superlink, timeout_s, "the SuperLink")
        for region in self.regions:
            self.start_supernode(region, timeout_s=timeout_s)
        return self

    def start_supernode(self, region: str, node_key: Path | None = None, join_timeout_s: float = 120.0,
                        wait: bool = True, timeout_s: float = 180.0) -> subprocess.Popen:
        args = ["supernode", "--region", region, "--deployment", str(self.deployment.folder),
                "--join-timeout", str(join_timeout_s)]
        if node_key:
            args += ["--node-key", str(node_key)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        proc = self._spawn(f"supernode-{region}", *args)
        if wait:
            self._wait(lambda: self.joined(region, proc.pid), proc, timeout_s, f"the SuperNode of {region}")
            self.supernodes[region] = proc
        return proc

    def joined(self, region: str, supervisor_pid: int) -> bool:
        return any(e["event"] == "joined" and e["pid"] == supervisor_pid for e in read_node_log(self.home, region))

    def _wait(self, ready, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if proc.poll() is not None:
                raise FederationError(f"{what} exited with code {proc.returncode}; see {proc.log_path}")
            if time.monotonic() > deadline:
                raise FederationError(f"{what} was not ready within {timeout_s:.0f} s; see {proc.log_path}")
            time.sleep(0.3)

    def kill(self, region: str, sig: int = signal.SIGKILL) -> None:
        """Stop a region's SuperNode: SIGKILL takes its whole process group (the data center lost power);
        SIGTERM goes to the supervisor alone, which lets Flower's SuperNode say goodbye to the SuperLink."""
        proc = self.supernodes.pop(region)
        if sig == signal.SIGKILL:
            _signal_group(proc, sig)
        else:
            proc.send_signal(sig)
        proc.wait(timeout=60)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every process group, then SIGKILL what is left; the SuperLink last."""
        order = [p for p in self.started if p is not self.superlink] + [p for p in (self.superlink,) if p]
        for proc in order:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the supervisor stops its Flower process in order
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        for proc in order:
            _signal_group(proc, signal.SIGKILL)  # whatever stayed in the group

    def __enter__(self) -> LoopbackDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def leftover_processes(deployment_folder: Path) -> list[int]:
    """Pids of processes still running for the deployment (their environment names its folder)."""
    marker = f"{DEPLOYMENT_ENV}={deployment_folder.resolve()}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.append(int(entry.name))
    return found
