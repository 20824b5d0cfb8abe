"""Federation as deployed: a SuperLink in the server region, a SuperNode in each region, TLS, node keys.

`fleetgate federation init` writes a deployment folder (default `<home>/federation/deployment`):

    deployment.toml          server region, the SuperLink's address, every region's log and node key
    tls/ca.pem               the deployment's CA certificate: every SuperNode and operator trusts it alone
    tls/ca.key               the CA's private key (operator only; it signs the SuperLink certificate)
    tls/superlink.pem, .key  the SuperLink's TLS certificate (SANs: its host and loopback) and key
    app/fleetgate-federation/pyproject.toml   the Flower App submitted to the SuperLink (no code in it)
    flwr/<role>/             FLWR_HOME of each process: superlink, operator, one per region
    state/superlink.db       the SuperLink's state (registered nodes, runs)
    state/nodes.json         node id -> region, written when the SuperLink registers the node keys

and, per region, `<keys dir>/<region>/supernode.key`: the SuperNode's EC P-384 key (never leaves).

The Flower App holds only `pyproject.toml`: its components are `fleetgate.train.flower_app:server`
and `:client`, so what runs in a region is the region's own installed fleetgate. A SuperNode accepts
only the app whose hash it computes itself from its own fleetgate (`app_fab`); the SuperLink cannot
ship code into a region. The operator side (`submit_run`, `wait_for_run`) talks to the SuperLink's
Control API over TLS; the process side is in `nodes.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import tomllib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from fleetgate import __version__
from fleetgate.errors import ConfigError, UsageError
from fleetgate.train import pki
from fleetgate.train.federation import (
    SETTINGS_KEY,
    FederationError,
    FederationResult,
    FederationSettings,
    flower_modules,
)
from fleetgate.workspace import Workspace

DEPLOYMENT_FORMAT = "fleetgate-deployment/1"
DEPLOYMENT_FILE = "deployment.toml"
APP_NAME = "fleetgate-federation"
NODE_KEY_FILE = "supernode.key"
DEFAULT_PORT = 9092
FINISHED = "finished"


@dataclass(frozen=True)
class RegionTrust:
    """What the deployment knows of a region: the key its log is signed with and its SuperNode's key."""

    log_key: bytes  # Ed25519 public key of the region's transparency log
    node_key: str  # OpenSSH public key line of the region's SuperNode


@dataclass(frozen=True)
class Deployment:
    """A parsed deployment folder."""

    folder: Path
    server_region: str
    host: str  # what SuperNodes and operators dial; in the SuperLink certificate
    port: int
    bind: str  # the interface the SuperLink listens on
    regions: dict[str, RegionTrust]

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def ca_cert(self) -> Path:
        return self.folder / "tls" / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "tls" / "ca.key"

    @property
    def superlink_cert(self) -> Path:
        return self.folder / "tls" / "superlink.pem"

    @property
    def superlink_key(self) -> Path:
        return self.folder / "tls" / "superlink.key"

    @property
    def app_dir(self) -> Path:
        return self.folder / "app" / APP_NAME

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @property
    def nodes_file(self) -> Path:
        return self.state_dir / "nodes.json"

    def flwr_home(self, role: str) -> Path:
        return self.folder / "flwr" / role

    def region(self, name: str) -> RegionTrust:
        if name not in self.regions:
            raise UsageError(f"{self.folder / DEPLOYMENT_FILE}: region {name} is not part of this deployment; "
                             f"add it with `fleetgate federation init --regions ...`")
        return self.regions[name]

    def to_toml(self) -> dict[str, Any]:
        return {"format": DEPLOYMENT_FORMAT, "server_region": self.server_region,
                "superlink": {"host": self.host, "port": self.port, "bind": self.bind},
                "regions": {name: {"log_key": t.log_key.hex(), "node_key": t.node_key}
                            for name, t in sorted(self.regions.items())}}


def default_folder(home: Path) -> Path:
    return home / "federation" / "deployment"


def load_deployment(folder: Path) -> Deployment:
    """Read `deployment.toml`; one line naming the file and field for anything wrong."""
    path = folder / DEPLOYMENT_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no deployment here; create one with `fleetgate federation init`")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not TOML ({exc})") from None
    if data.get("format") != DEPLOYMENT_FORMAT:
        raise ConfigError(f"{path}: format: expected {DEPLOYMENT_FORMAT!r}, got {data.get('format')!r}")
    link = _table(data, "superlink", path)
    regions = {}
    for name, entry in _table(data, "regions", path).items():
        try:
            regions[name] = RegionTrust(bytes.fromhex(str(entry["log_key"])), str(entry["node_key"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: regions.{name}: needs log_key (hex) and node_key (OpenSSH)") from None
        if len(regions[name].log_key) != 32:
            raise ConfigError(f"{path}: regions.{name}.log_key: an Ed25519 public key is 32 bytes")
    port = link.get("port")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{path}: superlink.port: must be a port number, got {port!r}")
    return Deployment(folder, str(data.get("server_region", "")), str(link.get("host", "")), port,
                      str(link.get("bind", link.get("host", ""))), regions)


def _table(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{key}]: missing")
    return value


def save_deployment(deployment: Deployment) -> None:
    path = deployment.folder / DEPLOYMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(tomli_w.dumps(deployment.to_toml()), encoding="utf-8")
    os.replace(tmp, path)


def node_key_path(ws: Workspace, region: str) -> Path:
    return ws.keys_root / region / NODE_KEY_FILE


def init_deployment(ws: Workspace, regions: tuple[str, ...], server_region: str = "global",
                    host: str = "127.0.0.1", port: int = DEFAULT_PORT, bind: str | None = None,
                    folder: Path | None = None, renew_tls: bool = False) -> Deployment:
    """Create or extend a deployment: CA, SuperLink certificate, a node key and trust entry per region."""
    folder = folder or default_folder(ws.home)
    ws.config.region(server_region)
    if not regions:
        raise UsageError("--regions: name the regions that run a SuperNode")
    if server_region in regions:
        raise UsageError(f"the server region {server_region} runs the SuperLink, not a SuperNode")
    old = load_deployment(folder) if (folder / DEPLOYMENT_FILE).exists() else None
    if old and old.server_region != server_region:
        raise UsageError(f"{folder}: this deployment's server region is {old.server_region}, not {server_region}")
    trust = dict(old.regions) if old else {}
    for name in regions:
        region = ws.config.region(name).name
        node_key = pki.ensure_node_key(node_key_path(ws, region), f"fleetgate-{region}")
        trust[region] = RegionTrust(ws.keys(region).public_key(), node_key)
    deployment = Deployment(folder, server_region, host, port, bind or host, trust)
    _ensure_tls(deployment, renew_tls)
    save_deployment(deployment)
    write_app(deployment)
    return deployment


def _ensure_tls(deployment: Deployment, renew: bool) -> None:
    pki.ensure_ca(deployment.ca_cert, deployment.ca_key, f"fleetgate federation CA ({deployment.server_region})")
    names = [deployment.host] + ([deployment.bind] if deployment.bind not in ("0.0.0.0", "::") else [])
    if deployment.superlink_cert.exists() and not renew:
        covered = pki.certificate_names(pki.load_certificate(deployment.superlink_cert))
        if set(names) <= covered:
            return
    pki.issue_server_certificate(deployment.ca_cert, deployment.ca_key, deployment.superlink_cert,
                                 deployment.superlink_key, names)


# --- the Flower App --------------------------------------------------------------------------------


def app_pyproject() -> str:
    """The app's only file: fleetgate's components, named; no code travels with it."""
    return f'''[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{APP_NAME}"
version = "{__version__}"
description = "fleetgate federated training: regions send only model updates their gate released"
license = "Apache-2.0"
# fleetgate {__version__} is installed wherever this app runs; runtime installation is off on every node
dependencies = []

[tool.flwr.app]
publisher = "fleetgate"

[tool.flwr.app.components]
serverapp = "fleetgate.train.flower_app:server"
clientapp = "fleetgate.train.flower_app:client"

[tool.flwr.app.config]
{SETTINGS_KEY} = ""
'''


def app_fab() -> tuple[bytes, str]:
    """The Flower App Bundle and its SHA-256; Flower builds it deterministically (fixed zip dates)."""
    flower_modules()
    from flwr.cli.build import build_fab_from_files

    with warnings.catch_warnings():  # flwr 1.41 still asks pathspec for its deprecated 'gitwildmatch'
        warnings.filterwarnings("ignore", "GitWildMatchPattern", DeprecationWarning)
        fab, _ = build_fab_from_files({"pyproject.toml": app_pyproject().encode()})
    return fab, hashlib.sha256(fab).hexdigest()


def write_app(deployment: Deployment) -> Path:
    """The app folder, so an operator can also submit it with `flwr run` by hand."""
    path = deployment.app_dir / "pyproject.toml"
    pki.write_public(path, app_pyproject().encode())
    return path


# --- the Control API (operator side) -------------------------------------------------------------


@contextmanager
def control_client(deployment: Deployment, address: str | None = None) -> Iterator[Any]:
    """A Control API client of the SuperLink over TLS, trusting only the deployment's CA."""
    flower_modules()
    import httpx  # Flower's HTTP client library
    from flwr.supercore.control import ControlHttpClient
    from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor

    address = address or deployment.address
    client = ControlHttpClient.from_server_address(
        server_address=address, insecure=False, root_certificates=deployment.ca_cert.read_bytes(),
        interceptors=[RuntimeVersionHttpInterceptor(component_name="fleetgate")])
    try:
        yield client
    except httpx.HTTPError as exc:
        raise FederationError(f"the SuperLink's Control API at {address}: {_http_problem(exc)}") from None
    finally:
        client.close()


def _http_problem(exc: Exception) -> str:
    """Flower's public error message where the SuperLink sent one, else the transport error."""
    from flwr.supercore.error import FlowerError

    response = getattr(exc, "response", None)
    if response is not None and (error := FlowerError.from_json(response.text)):
        return f"[code {error.code}] {error.message}"
    return f"{type(exc).__name__}: {exc}"


def register_nodes(deployment: Deployment, address: str | None = None) -> dict[int, str]:
    """Register every region's node key with the SuperLink (once) and record node id -> region."""
    from flwr.proto.control_pb2 import ListNodesRequest, RegisterNodeRequest

    keys = {pki.public_key_bytes(t.node_key): name for name, t in deployment.regions.items()}
    with control_client(deployment, address) as client:
        known = {bytes(n.public_key): int(n.node_id) for n in client.ListNodes(ListNodesRequest()).nodes_info}
        nodes = {}
        for key, region in keys.items():
            if key not in known:
                known[key] = int(client.RegisterNode(RegisterNodeRequest(public_key=key, name=region)).node_id)
            nodes[known[key]] = region
    deployment.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = deployment.nodes_file.with_suffix(".partial")
    tmp.write_text(json.dumps({str(k): v for k, v in sorted(nodes.items())}, indent=2) + "\n")
    os.replace(tmp, deployment.nodes_file)
    return nodes


def registered_nodes(deployment: Deployment) -> dict[int, str]:
    if not deployment.nodes_file.is_file():
        raise FederationError(f"{deployment.nodes_file}: missing; the SuperLink writes it when it registers "
                              f"the regions' node keys (`fleetgate federation superlink`)")
    return {int(k): str(v) for k, v in json.loads(deployment.nodes_file.read_text()).items()}


def submit_run(deployment: Deployment, settings: FederationSettings) -> int:
    """Start a run of the fleetgate app on the SuperLink; returns Flower's run id."""
    from flwr.common.serde import fab_to_proto, user_config_to_proto
    from flwr.proto.control_pb2 import StartRunRequest
    from flwr.supercore.fab import Fab

    fab, fab_hash = app_fab()
    request = StartRunRequest(fab=fab_to_proto(Fab(fab_hash, fab, {})),
                              override_config=user_config_to_proto({SETTINGS_KEY: settings.encode()}))
    with control_client(deployment) as client:
        response = client.StartRun(request)
    if not response.HasField("run_id"):
        raise FederationError(f"the SuperLink at {deployment.address} did not start the run")
    return int(response.run_id)


@dataclass(frozen=True)
class RunStatus:
    status: str  # pending, starting, running, finished
    sub_status: str  # completed, failed, stopped (when finished)
    details: str


def run_status(deployment: Deployment, flower_run_id: int) -> RunStatus:
    from flwr.proto.control_pb2 import ListRunsRequest

    with control_client(deployment) as client:
        runs = client.ListRuns(ListRunsRequest(run_id=flower_run_id)).run_dict
    if flower_run_id not in runs:
        raise FederationError(f"the SuperLink has no run {flower_run_id}")
    status = runs[flower_run_id].status
    return RunStatus(status.status, status.sub_status, status.details)


def stop_run(deployment: Deployment, flower_run_id: int) -> None:
    from flwr.proto.control_pb2 import StopRunRequest

    with control_client(deployment) as client:
        client.StopRun(StopRunRequest(run_id=flower_run_id))


def wait_for_run(deployment: Deployment, flower_run_id: int, timeout_s: float, poll_s: float = 2.0,
                 on_status: Callable[[RunStatus], None] | None = None) -> RunStatus:
    """Poll the run until it finishes; stop it on the SuperLink if it outlives `timeout_s` or we are stopped."""
    deadline = time.monotonic() + timeout_s
    try:
        while (status := run_status(deployment, flower_run_id)).status != FINISHED:
            if on_status:
                on_status(status)
            if time.monotonic() > deadline:
                stop_run(deployment, flower_run_id)
                raise FederationError(f"run {flower_run_id} did not finish in {timeout_s:.0f} s; stopped it")
            time.sleep(poll_s)
    except KeyboardInterrupt:
        stop_run(deployment, flower_run_id)
        raise
    return status


def run_deployed(ws: Workspace, deployment: Deployment, settings: FederationSettings,
                 on_status: Callable[[RunStatus], None] | None = None, poll_s: float = 2.0) -> FederationResult:
    """Submit a run to the deployment's SuperLink, wait for it and read the server region's summary."""
    from fleetgate.train.federation import check_settings, new_run_id

    if not settings.run_id:
        settings = FederationSettings.from_dict({**settings.to_dict(), "run_id": new_run_id()})
    check_settings(ws, settings, needs_data=False)  # the regions check their own data; we may not see it
    if settings.server_region != deployment.server_region:
        raise UsageError(f"--server-region {settings.server_region}: this deployment's SuperLink serves "
                         f"{deployment.server_region}")
    for region in settings.nodes:
        deployment.region(region)
    flower_run_id = submit_run(deployment, settings)
    timeout = settings.rounds * (2 * settings.round_timeout_s + settings.rejoin_wait_s) + 600
    status = wait_for_run(deployment, flower_run_id, timeout, poll_s, on_status)
    summary = ws.home / "federation" / f"{settings.run_id}.json"
    if status.sub_status != "completed":
        failure = _failure_of(summary) or status.details or status.sub_status
        raise FederationError(f"run {settings.run_id} (Flower run {flower_run_id}) {status.sub_status}: {failure}")
    if not summary.is_file():
        raise FederationError(f"run {settings.run_id} completed; its summary is in the server region's "
                              f"workspace, not here: {summary}")
    return FederationResult.from_dict(json.loads(summary.read_text()))


def _failure_of(summary: Path) -> str | None:
    if not summary.is_file():
        return None
    return json.loads(summary.read_text()).get("failure")
