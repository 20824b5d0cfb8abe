"""Federation as deployed: certificates and keys per workspace, the app pin, and three processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fleetgate.audit import open_log
from fleetgate.ingest import ingest_drop
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.store.residency import read_access_log
from fleetgate.workspace import Workspace, init_workspace

pytest.importorskip("torch", reason="training needs the [train] extra (torch==2.13.0)")
pytest.importorskip("flwr", reason="federation needs the [federate] extra (flwr[simulation]==1.41.0)")

from cli_helpers import run_cli  # noqa: E402
from fleetgate.errors import ConfigError, UsageError  # noqa: E402
from fleetgate.train import pki  # noqa: E402
from fleetgate.train.deployment import (  # noqa: E402
    DEPLOYMENT_FILE,
    app_fab,
    control_client,
    init_deployment,
    load_deployment,
    node_key_path,
)
from fleetgate.train.federation import FederationError, FederationSettings  # noqa: E402
from fleetgate.train.loopback import LoopbackDeployment, leftover_processes  # noqa: E402
from fleetgate.train.nodes import read_node_log  # noqa: E402

REGIONS = ("cn-shanghai", "eu-frankfurt")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    home = tmp_path / "ws"
    for region in (*REGIONS, "global"):
        init_workspace(home, region)
    return Workspace.open(home)


# --- certificates, keys and the deployment file ----------------------------------------------------

def test_init_makes_a_ca_that_signed_the_superlink_certificate_and_a_node_key_per_region(workspace) -> None:
    dep = init_deployment(workspace, REGIONS, host="superlink.example.net", port=19092)
    ca, cert = pki.load_certificate(dep.ca_cert), pki.load_certificate(dep.superlink_cert)
    cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert {"superlink.example.net", "127.0.0.1", "localhost"} <= pki.certificate_names(cert)
    for secret in (dep.ca_key, dep.superlink_key, *(node_key_path(workspace, r) for r in REGIONS)):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    for region in REGIONS:
        line = dep.regions[region].node_key
        assert line.startswith("ecdsa-sha2-nistp384 ") and line.endswith(f"fleetgate-{region}")
        assert dep.regions[region].log_key == workspace.keys(region).public_key()
    assert load_deployment(dep.folder) == dep


def test_rerunning_init_keeps_every_key_and_adds_regions(workspace) -> None:
    first = init_deployment(workspace, ("cn-shanghai",), port=19092)
    keys = {p: p.read_bytes() for p in (first.ca_key, first.superlink_key, node_key_path(workspace, "cn-shanghai"))}
    cert = first.superlink_cert.read_bytes()
    second = init_deployment(workspace, ("eu-frankfurt",), port=19092)
    assert set(second.regions) == set(REGIONS)
    assert all(p.read_bytes() == data for p, data in keys.items()) and second.superlink_cert.read_bytes() == cert
    moved = init_deployment(workspace, ("eu-frankfurt",), host="10.0.0.7", port=19092)  # a new host: new cert
    assert "10.0.0.7" in pki.certificate_names(pki.load_certificate(moved.superlink_cert))
    assert moved.superlink_key.read_bytes() == keys[first.superlink_key]


def test_init_refuses_the_server_region_as_a_supernode(workspace) -> None:
    result = run_cli("federation", "init", "--regions", "cn-shanghai,global", home=workspace.home)
    assert result.returncode == 2 and "runs the SuperLink, not a SuperNode" in result.stderr


def test_node_keys_are_what_flowers_node_authentication_loads(workspace) -> None:
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

    dep = init_deployment(workspace, REGIONS, port=19092)
    private = load_ssh_private_key(node_key_path(workspace, "cn-shanghai").read_bytes(), None)
    public = load_ssh_public_key(dep.regions["cn-shanghai"].node_key.encode())
    assert isinstance(private.curve, ec.SECP384R1) and private.public_key() == public


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("fleetgate-deployment/1", "v0"), "format: expected"),
    (lambda t: t.replace("port = 19092", 'port = "x"'), "superlink.port: must be a port number"),
    (lambda t: t.replace('log_key = "', 'log_key = "zz', 1), "regions.cn-shanghai: needs log_key"),
])
def test_a_bad_deployment_file_names_the_file_and_field(workspace, edit, message) -> None:
    dep = init_deployment(workspace, REGIONS, port=19092)
    path = dep.folder / DEPLOYMENT_FILE
    path.write_text(edit(path.read_text()))
    with pytest.raises(ConfigError, match=message) as err:
        load_deployment(dep.folder)
    assert str(path) in err.value.message


def test_the_app_is_deterministic_and_carries_no_code() -> None:
    import io
    import zipfile

    fab, digest = app_fab()
    assert app_fab() == (fab, digest)
    assert sorted(zipfile.ZipFile(io.BytesIO(fab)).namelist()) == [".info/CONTENT", "pyproject.toml"]


def test_settings_travel_through_the_run_config_unchanged() -> None:
    from fleetgate.gate.model_updates import DpSettings

    settings = FederationSettings(regions=REGIONS, evaluate_regions=("cn-beijing",), rounds=4, local_epochs=2,
                                  dp=DpSettings(1.0, 0.5), on_region_loss="continue", rejoin_wait_s=30, run_id="r")
    assert FederationSettings.decode(settings.encode()) == settings
    with pytest.raises(FederationError, match="not fleetgate federation settings"):
        FederationSettings.decode("bm90IGpzb24")


def test_the_supernode_refuses_an_app_it_did_not_build(monkeypatch) -> None:
    from flwr.supercore.fab import Fab
    from flwr.supernode import start_client_internal as sci

    from fleetgate.train import flower_node

    fab, digest = app_fab()
    served = {"fab": Fab(digest, fab, {})}

    @contextmanager
    def fake_connection(*args, **kwargs):
        yield (1, None, None, None, lambda fab_hash, run_id: served["fab"], None, None, None)

    monkeypatch.setattr(sci, "_init_connection", fake_connection)
    flower_node.pin_app(digest)
    with sci._init_connection("x") as conn:
        assert conn[4](digest, 7).content == fab  # the region's own app passes
        served["fab"] = Fab(digest, fab + b"\0", {})  # same claimed hash, other bytes
        with pytest.raises(flower_node.AppRefused):
            conn[4](digest, 7)
        other = b"PK not fleetgate"
        served["fab"] = Fab(__import__("hashlib").sha256(other).hexdigest(), other, {})
        with pytest.raises(flower_node.AppRefused):
            conn[4](digest, 8)


def test_a_supernode_for_a_region_outside_the_deployment_is_refused(workspace) -> None:
    init_workspace(workspace.home, "cn-beijing")
    init_deployment(workspace, REGIONS, port=19092)
    result = run_cli("federation", "supernode", "--region", "cn-beijing", home=workspace.home)
    assert result.returncode == 2 and "region cn-beijing is not part of this deployment" in result.stderr


def test_federate_without_a_deployment_says_how_to_make_one(workspace) -> None:
    result = run_cli("federate", "--deployment", str(workspace.home / "nowhere"), home=workspace.home)
    assert result.returncode == 2 and "create one with `fleetgate federation init`" in result.stderr


# --- three processes on loopback --------------------------------------------------------------------

@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory):
    """cn-shanghai and eu-frankfurt with enough driving to release updates; a SuperLink and two SuperNodes."""
    root = tmp_path_factory.mktemp("deployed")
    home = root / "ws"
    for region in (*REGIONS, "global"):
        init_workspace(home, region)
    with Workspace.open(home) as ws:
        for region, area, seed in (("cn-shanghai", "shanghai", 1), ("eu-frankfurt", "frankfurt", 2)):
            generate_sample(root / region, SampleSpec(vehicles=4, clips=2, seed=seed, video_seconds=0.5,
                                                      drive_seconds=150, area=area))
            ingest_drop(ws.region(region), root / region)
    deployment = LoopbackDeployment(home, REGIONS, threads=1, logs=root / "logs")
    try:
        yield deployment.start()
    finally:
        deployment.stop()
        folder = deployment.deployment.folder if deployment.deployment else home
        deadline = time.monotonic() + 20
        while (left := leftover_processes(folder)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"processes left behind: {left}"


def _train_events(home: Path, region: str) -> list[dict]:
    return [e for e in read_node_log(home, region) if e["event"] == "clientapp" and e["message_type"] == "train"]


class Submitted:
    """`fleetgate federate --deployment` running in a thread, as an operator would start it."""

    def __init__(self, loopback: LoopbackDeployment, *args: str) -> None:
        self.result: subprocess.CompletedProcess | None = None
        cmd = ("federate", "--deployment", str(loopback.deployment.folder), "--regions", ",".join(REGIONS),
               "--local-epochs", "1", "--format", "json", *args)
        self.thread = threading.Thread(target=lambda: setattr(self, "result", run_cli(*cmd, home=loopback.home)))
        self.thread.start()

    def wait(self) -> subprocess.CompletedProcess:
        self.thread.join(timeout=900)
        assert self.result is not None, "fleetgate federate --deployment did not return"
        return self.result


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_supernode_with_an_unknown_key_is_refused(loopback: LoopbackDeployment, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue.key"
    pki.ensure_node_key(rogue, "rogue")
    before = json.loads(loopback.deployment.nodes_file.read_text())
    proc = loopback.start_supernode("cn-shanghai", node_key=rogue, join_timeout_s=0, wait=False)
    assert proc.wait(timeout=120) != 0
    log = Path(proc.log_path).read_text()
    assert "refused region cn-shanghai's SuperNode key" in log and "Failed to activate SuperNode" in log
    assert not loopback.joined("cn-shanghai", proc.pid)
    assert json.loads(loopback.deployment.nodes_file.read_text()) == before
    from flwr.proto.control_pb2 import ListNodesRequest

    with control_client(loopback.deployment) as client:  # the SuperLink knows the two registered keys only
        known = {bytes(n.public_key) for n in client.ListNodes(ListNodesRequest()).nodes_info}
    assert known == {pki.public_key_bytes(t.node_key) for t in loopback.deployment.regions.values()}
    assert pki.public_key_bytes(pki.node_public_key(rogue)) not in known


def _reads_since(home: Path, region: str, start: int) -> list[dict]:
    path = Workspace.open(home).access_log(region)
    return read_access_log(path)[start:]


def test_three_rounds_over_tls_a_killed_region_is_skipped_and_rejoins(loopback: LoopbackDeployment) -> None:
    home = loopback.home
    ws = Workspace.open(home)
    seen = {r: len(read_access_log(ws.access_log(r))) for r in (*REGIONS, "global")}
    trains = len(_train_events(home, "eu-frankfurt"))
    first_supervisor = loopback.supernodes["eu-frankfurt"].pid

    run = Submitted(loopback, "--rounds", "3", "--on-region-loss", "continue", "--rejoin-wait", "150",
                    "--round-timeout", "240")
    # round 2 has reached Frankfurt's ClientApp: its data center loses power mid-round, then comes back
    _wait_for(lambda: len(_train_events(home, "eu-frankfurt")) >= trains + 2, 400, "round 2 in eu-frankfurt")
    loopback.kill("eu-frankfurt", signal.SIGKILL)
    second_supervisor = loopback.start_supernode("eu-frankfurt", wait=False).pid
    result = run.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    rounds = {r["round"]: r for r in summary["rounds"]}
    assert sorted(rounds) == [1, 2, 3] and summary["status"] == "completed"

    # the run went on without the lost region and took it back once its SuperNode rejoined
    def received(r: int) -> set[str]:
        return {u["region"] for u in rounds[r]["updates"] if u["received"]}

    assert received(1) == received(3) == set(REGIONS)
    assert received(2) == {"cn-shanghai"} and set(rounds[2]["lost"]) == {"eu-frankfurt"}
    joins = [e for e in read_node_log(home, "eu-frankfurt") if e["event"] == "joined"]
    assert {e["pid"] for e in joins} >= {first_supervisor, second_supervisor}
    assert len({e["node_id"] for e in joins}) == 1  # the same registered key, the same node

    # the updates at the server are the sources' signed, logged entries; nothing crossed unlogged
    for region in REGIONS:
        log = open_log(ws, region)
        log.verify()
        logged = [e for e in log.entries("model_update") if e["run_id"] == summary["run_id"]]
        at_server = {(r["round"], u["update_sha256"]) for r in summary["rounds"] for u in r["updates"]
                     if u["region"] == region and u["received"]}
        assert at_server <= {(e["round"], e["update_sha256"]) for e in logged if e["released"]}
        for r in summary["rounds"]:
            for u in (u for u in r["updates"] if u["region"] == region and u["received"]):
                entry = log.entry(u["log_index"])
                assert (entry["update_sha256"], entry["round"], entry["to_region"]) == (u["update_sha256"],
                                                                                       r["round"], "global")
                cp = u["source_checkpoint"]
                assert any(c.size == cp["size"] and c.root.hex() == cp["root"] for c in log.checkpoints())
        unreceived = {(e["round"], e["update_sha256"]) for e in logged} - at_server
        assert {rnd for rnd, _ in unreceived} <= {2} and (region == "eu-frankfurt" or not unreceived)
    server = open_log(ws, "global")
    server.verify()
    logged_rounds = [e for e in server.entries("federated_round") if e["run_id"] == summary["run_id"]]
    assert [e["round"] for e in logged_rounds] == [1, 2, 3] and set(logged_rounds[1]["lost"]) == {"eu-frankfurt"}
    assert next(e for e in server.entries("federated_run") if e["run_id"] == summary["run_id"])["status"] == \
        "completed"

    # each region's blobs were read only by that region's own processes; the server read none
    pids: dict[str, set[int]] = {}
    for region in REGIONS:
        supervisors = {e["pid"] for e in read_node_log(home, region) if e["event"] == "supervisor-start"}
        clientapps = {e["pid"] for e in read_node_log(home, region) if e["event"] == "clientapp"
                      and e["run_id"] == summary["run_id"] and int(e["supernode_pid"]) in supervisors}
        reads = _reads_since(home, region, seen[region])
        assert reads and {r["reader"] for r in reads} == {region} and all(r["allowed"] for r in reads)
        pids[region] = {r["pid"] for r in reads}
        assert pids[region] <= clientapps, (region, pids[region] - clientapps)
        assert os.getpid() not in pids[region]
    assert not pids["cn-shanghai"] & pids["eu-frankfurt"]
    assert _reads_since(home, "global", seen["global"]) == []


def test_a_lost_region_fails_the_run_when_so_configured(loopback: LoopbackDeployment) -> None:
    home = loopback.home
    if "eu-frankfurt" not in loopback.supernodes:  # rejoined by the previous test, but not waited for
        supervisor = [p for p in loopback.started if "supernode-eu-frankfurt" in str(p.log_path)][-1]
        _wait_for(lambda: loopback.joined("eu-frankfurt", supervisor.pid), 200, "eu-frankfurt to rejoin")
        loopback.supernodes["eu-frankfurt"] = supervisor
    trains = len(_train_events(home, "eu-frankfurt"))
    run = Submitted(loopback, "--rounds", "2", "--on-region-loss", "fail", "--round-timeout", "240")
    _wait_for(lambda: len(_train_events(home, "eu-frankfurt")) > trains, 300, "round 1 in eu-frankfurt")
    loopback.kill("eu-frankfurt", signal.SIGTERM)  # an orderly shutdown: the SuperLink knows at once
    result = run.wait()
    assert result.returncode == 1
    assert "was lost in round 1" in result.stderr and "eu-frankfurt" in result.stderr
    ws = Workspace.open(home)
    server = open_log(ws, "global")
    failed = server.entries("federated_run")[-1]
    assert failed["status"] == "failed" and "eu-frankfurt" in failed["failure"]
    last_round = server.entries("federated_round")[-1]
    assert last_round["run_id"] == failed["run_id"] and last_round["status"] == "failed"
    assert "eu-frankfurt" in last_round["lost"]
    summary = json.loads((home / "federation" / f"{failed['run_id']}.json").read_text())
    assert summary["status"] == "failed" and summary["checkpoint_asset"] is None
    for region in REGIONS:  # whatever a region released in the failed run is in its own log
        log = open_log(ws, region)
        log.verify()
        for u in (u for r in summary["rounds"] for u in r["updates"] if u["region"] == region and u["received"]):
            assert log.entry(u["log_index"])["update_sha256"] == u["update_sha256"]


def test_the_deployed_apps_refuse_to_run_outside_a_pinned_process(monkeypatch) -> None:
    from fleetgate.train import flower_app

    for key in ("FLEETGATE_ACTING_REGION", "FLEETGATE_HOME", "FLEETGATE_DEPLOYMENT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(FederationError, match="refusing to act"):
        flower_app.client_setup(None, None)


def test_python_m_flower_node_needs_the_app_hash() -> None:
    proc = subprocess.run([sys.executable, "-m", "fleetgate.train.flower_node"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--app-sha256" in proc.stderr


class _Context:
    def __init__(self, node_config: dict, run_config: dict, run_id: int = 7) -> None:
        self.node_config, self.run_config, self.run_id = node_config, run_config, run_id


class _Message:
    class metadata:  # noqa: N801 - the shape of Flower's Message.metadata
        message_type = "train"


@pytest.fixture
def pinned(workspace, monkeypatch):
    """A process pinned to cn-shanghai as its SuperNode's supervisor would leave it."""
    dep = init_deployment(workspace, REGIONS, port=19092)
    monkeypatch.setenv("FLEETGATE_ACTING_REGION", "cn-shanghai")
    monkeypatch.setenv("FLEETGATE_HOME", str(workspace.home))
    monkeypatch.setenv("FLEETGATE_DEPLOYMENT", str(dep.folder))
    return dep


def _run_config(**overrides) -> dict:
    settings = FederationSettings(regions=REGIONS, run_id="fed-x", **overrides)
    return {"fleetgate-settings": settings.encode()}


def test_a_pinned_clientapp_acts_only_for_its_own_region_and_destination(pinned, workspace) -> None:
    from fleetgate.train import flower_app

    setup = flower_app.client_setup(_Message, _Context({"region": "cn-shanghai"}, _run_config()))
    assert (setup.region, setup.settings.run_id) == ("cn-shanghai", "fed-x")
    events = [e for e in read_node_log(workspace.home, "cn-shanghai") if e["event"] == "clientapp"]
    assert events[-1]["pid"] == os.getpid() and events[-1]["message_type"] == "train"
    with pytest.raises(FederationError, match="not the region this process is pinned to"):
        flower_app.client_setup(_Message, _Context({"region": "eu-frankfurt"}, _run_config()))
    with pytest.raises(FederationError, match="sends them only to global"):
        flower_app.client_setup(_Message, _Context({"region": "cn-shanghai"}, _run_config(server_region="us-west")))
    with pytest.raises(FederationError, match="is not part of run"):
        flower_app.client_setup(_Message, _Context({"region": "cn-shanghai"}, {
            "fleetgate-settings": FederationSettings(regions=("eu-frankfurt",), run_id="fed-y").encode()}))
    with pytest.raises(FederationError, match="carries no fleetgate-settings"):
        flower_app.client_setup(_Message, _Context({"region": "cn-shanghai"}, {"fleetgate-settings": ""}))


def test_the_serverapp_runs_only_in_the_server_regions_process(pinned, monkeypatch) -> None:
    from fleetgate.train import flower_app

    with pytest.raises(FederationError, match="not this SuperLink's"):  # pinned to cn-shanghai, not global
        flower_app.server_setup(_Context({}, _run_config()))
    monkeypatch.setenv("FLEETGATE_ACTING_REGION", "global")
    with pytest.raises(FederationError, match="nodes.json: missing"):  # no SuperLink registered the nodes yet
        flower_app.server_setup(_Context({}, _run_config()))
    pinned.state_dir.mkdir(parents=True)
    pinned.nodes_file.write_text('{"11": "cn-shanghai", "12": "eu-frankfurt"}')
    setup = flower_app.server_setup(_Context({}, _run_config()))
    assert setup.registered == {11: "cn-shanghai", 12: "eu-frankfurt"} and setup.flower_run_id == 7
    assert setup.log_key("eu-frankfurt") == pinned.regions["eu-frankfurt"].log_key


def test_a_process_pinned_to_one_region_cannot_be_repinned(pinned, workspace) -> None:
    from fleetgate.train.nodes import pin_process

    with pytest.raises(UsageError, match="pinned to region cn-shanghai"):
        pin_process("eu-frankfurt", workspace.home, pinned)


def test_a_node_claiming_a_region_its_key_was_not_registered_for_serves_none(tmp_path: Path, monkeypatch) -> None:
    from flwr.app import ConfigRecord, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from fleetgate.train.federation import ServerSetup, _ask_regions

    for attribute in ("_task_id", "_run_id", "_node_id"):  # what a ServerApp process has set
        monkeypatch.setattr(TaskIdentity, attribute, 1)

    claims = {11: "cn-shanghai", 12: "cn-shanghai", 13: "eu-frankfurt"}
    asked: list[int] = []

    class Grid:
        def send_and_receive(self, messages, timeout=None):
            replies = []
            for n, message in enumerate(messages):
                message.metadata.__dict__["_message_id"] = f"m{n}"  # what Flower's grids do on send
                asked.append(message.metadata.dst_node_id)
                claim = ConfigRecord({"region": claims[message.metadata.dst_node_id]})
                replies.append(Message(RecordDict({"meta": claim}), reply_to=message))
            return replies

    setup = ServerSetup(tmp_path, FederationSettings(regions=REGIONS), log_key=lambda r: b"",
                        registered={11: "cn-shanghai", 12: "eu-frankfurt"})
    assert _ask_regions(Grid(), [11, 12, 13], setup) == {11: "cn-shanghai", 12: "", 13: ""}
    assert asked == [11, 12]  # 13's key is not registered for any region: not even asked


def test_federate_against_a_superlink_that_is_not_running_says_so_in_one_line(workspace) -> None:
    from fleetgate.train.nodes import free_port

    dep = init_deployment(workspace, REGIONS, port=free_port())
    result = run_cli("federate", "--deployment", str(dep.folder), home=workspace.home)
    assert result.returncode == 1, result.stderr
    assert f"the SuperLink's Control API at {dep.address}: ConnectError" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
