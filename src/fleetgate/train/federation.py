"""Federated learning across regions with Flower: raw data stays, only gated model updates cross.

A ServerApp runs in the server region (default `global`) and a ClientApp in each region. Every
round the server sends the global model to the training regions; each trains on its own store
(acting for its region, so the residency guard refuses anything else), applies the optional DP
clipping and noise to its update, and asks the gate (`release_model_update`) whether the update may
leave. A released update goes back with its SHA-256 and the index of its log entry; a refused one
goes back as an error reply and its weights never leave the client. The server checks each
update's digest against what the region logged, averages the released ones (FedAvg, or FedProx
with `proximal_mu` > 0) and logs the round in its own transparency log. Evaluation regions (which
may include regions that do not train, to measure a model on data it never saw) receive the global
model and return only ADE/FDE aggregates over their validation split.

The server first asks every node which region it serves (a Flower query message), so node ids are
never assumed to map to regions. Flower's telemetry is disabled before Flower is imported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fleetgate.audit import open_log
from fleetgate.errors import FleetgateError, UsageError
from fleetgate.gate.model_updates import DpSettings, release_model_update
from fleetgate.policy.service import packs_for
from fleetgate.store.residency import acting_for
from fleetgate.train import model as ref
from fleetgate.train.dataset import build_samples, constant_velocity_errors, raw_tracks, split_by_vehicle
from fleetgate.train.run import MODEL_NAME, store_checkpoint
from fleetgate.workspace import Workspace

# Set before flwr and ray are imported: no telemetry to flower.ai, no accelerator-env rewriting by Ray.
FLOWER_ENVIRONMENT = {"FLWR_TELEMETRY_ENABLED": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
                      "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
SUMMARY_FORMAT = "fleetgate-federation/1"
GATE_REFUSED = 4031  # error code of a reply whose update the gate kept in its region


class FederationError(FleetgateError):
    """A federated run could not complete."""


@dataclass(frozen=True)
class FederationSettings:
    """What a federated run does; recorded in full in its summary and log entries."""

    regions: tuple[str, ...]  # regions that train and send updates
    evaluate_regions: tuple[str, ...] = ()  # regions that only evaluate the global model (plus `regions`)
    server_region: str = "global"
    rounds: int = 3
    local_epochs: int = 5
    lr: float = 2e-3
    batch: int = 256
    proximal_mu: float = 0.0  # > 0: FedProx
    dp: DpSettings = field(default_factory=DpSettings)
    seed: int = 0
    device: str = "cpu"
    run_id: str = ""

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every region with a ClientApp: training regions first, then evaluation-only ones."""
        return self.regions + tuple(r for r in self.evaluate_regions if r not in self.regions)

    @property
    def strategy(self) -> str:
        return "FedProx" if self.proximal_mu > 0 else "FedAvg"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["regions"], out["evaluate_regions"] = list(self.regions), list(self.evaluate_regions)
        out["strategy"] = self.strategy
        return out


def new_run_id() -> str:
    return "fed-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def update_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of an update's arrays, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def privatize(start: dict[str, np.ndarray], trained: dict[str, np.ndarray], dp: DpSettings,
              rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The weights to send: start + the clipped, noised delta (Gaussian mechanism, fixed clipping)."""
    delta = {k: trained[k].astype(np.float64) - start[k].astype(np.float64) for k in trained}
    norm = float(np.sqrt(sum(float((d**2).sum()) for d in delta.values())))
    scale = 1.0
    if dp.clip_norm > 0 and norm > dp.clip_norm:
        scale = dp.clip_norm / norm
    sigma = dp.noise_multiplier * dp.clip_norm if dp.clip_norm > 0 else 0.0
    out = {}
    for k, d in delta.items():
        noisy = d * scale + (rng.normal(0.0, sigma, d.shape) if sigma > 0 else 0.0)
        out[k] = (start[k].astype(np.float64) + noisy).astype(trained[k].dtype)
    return out, {"update_norm": norm, "clipped": float(scale < 1.0)}


@dataclass
class LocalUpdate:
    """What a region's trainer produced in one round and what the gate said about it."""

    region: str
    arrays: dict[str, np.ndarray] | None  # None: the gate kept the update in the region
    samples: int
    metrics: dict[str, float]
    update_sha256: str
    released: bool
    outcome: str
    rules: list[str]
    log_index: int
    gate_seconds: float


def train_locally(ws: Workspace, settings: FederationSettings, region: str, start: dict[str, np.ndarray],
                  round_number: int) -> LocalUpdate:
    """One region's part of a round: train on its own data, privatize, ask the gate."""
    with acting_for(region):
        samples = build_samples(ws, region)
        train, _ = split_by_vehicle(samples)
        net = ref.new_model(settings.seed)
        ref.load_arrays(net, start)
        dev = ref.device(settings.device)
        fit = ref.fit(net, train, epochs=settings.local_epochs, lr=settings.lr, batch=settings.batch,
                      seed=settings.seed + round_number, dev=dev, proximal_mu=settings.proximal_mu)
        rng = np.random.default_rng([settings.seed, round_number, int.from_bytes(region.encode()[:8], "big")])
        arrays, dp_metrics = privatize(start, ref.state_arrays(net), settings.dp, rng)
        digest = update_digest(arrays)
        began = time.perf_counter()
        release = release_model_update(
            ws, region, settings.server_region, update_sha256=digest, aggregated_samples=len(train),
            dp=settings.dp, run_id=settings.run_id, round_number=round_number,
            extra={"lineage": {**samples.lineage(), "train_samples": len(train)}, "strategy": settings.strategy,
                   "proximal_mu": settings.proximal_mu, "local_epochs": settings.local_epochs})
        gate_seconds = time.perf_counter() - began
    metrics = {"train_loss": float(fit.final_loss), "samples_per_s": float(fit.samples_per_s), **dp_metrics}
    return LocalUpdate(region, arrays if release.released else None, len(train), metrics, digest,
                       release.released, release.outcome, release.rules, release.log_index, gate_seconds)


def evaluate_locally(ws: Workspace, settings: FederationSettings, region: str,
                     arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """ADE/FDE of a global model on the region's validation vehicles (aggregates only leave)."""
    with acting_for(region):
        samples = build_samples(ws, region)
        _, val = split_by_vehicle(samples)
        if not len(val):
            raise UsageError(f"region {region} has no validation vehicles to evaluate on")
        net = ref.new_model(settings.seed)
        ref.load_arrays(net, arrays)
        metrics = ref.evaluate(net, val, ref.device(settings.device))
        baseline = constant_velocity_errors(val)
    return {"ade_m": metrics["ade_m"], "fde_m": metrics["fde_m"], "samples": float(len(val)),
            "constant_velocity_ade_m": baseline["ade_m"]}


# --- Flower apps ---------------------------------------------------------------------------------


def flower_environment() -> None:
    for key, value in FLOWER_ENVIRONMENT.items():
        os.environ[key] = value


def _flwr():
    flower_environment()
    try:
        import flwr  # noqa: F401
        from flwr import app, clientapp, serverapp
        from flwr.serverapp import strategy
    except ImportError as exc:
        raise UsageError("federation needs Flower: pip install 'fleetgate[federate]'") from exc
    return app, clientapp, serverapp, strategy


def _to_record(arrays: dict[str, np.ndarray]):
    app, *_ = _flwr()
    return app.ArrayRecord.from_array_dict({k: app.Array.from_numpy_ndarray(np.ascontiguousarray(v))
                                            for k, v in arrays.items()})


def _from_record(record) -> dict[str, np.ndarray]:
    return {k: record[k].numpy() for k in record.keys()}


def client_app(home: str, settings: FederationSettings):
    """The ClientApp every region's SuperNode runs; `partition-id` names its region in `settings.nodes`."""
    app, clientapp, _, _ = _flwr()
    client = clientapp.ClientApp()

    def region_of(context) -> str:
        return settings.nodes[int(context.node_config["partition-id"])]

    @client.query()
    def roll_call(msg, context):
        return app.Message(app.RecordDict({"meta": app.ConfigRecord({"region": region_of(context)})}), reply_to=msg)

    @client.train()
    def train(msg, context):
        region = region_of(context)
        round_number = int(msg.content["config"]["server-round"])
        with Workspace.open(Path(home)) as ws:
            update = train_locally(ws, settings, region, _from_record(msg.content["arrays"]), round_number)
        if not update.released:
            return app.Message(app.Error(GATE_REFUSED, json.dumps({
                "region": region, "outcome": update.outcome, "rules": update.rules, "log_index": update.log_index,
                "update_sha256": update.update_sha256, "samples": update.samples})), reply_to=msg)
        return app.Message(app.RecordDict({
            "arrays": _to_record(update.arrays),
            "metrics": app.MetricRecord({"num-examples": update.samples, **update.metrics,
                                         "gate_seconds": update.gate_seconds}),
            "meta": app.ConfigRecord({"region": region, "update_sha256": update.update_sha256,
                                      "log_index": update.log_index, "outcome": update.outcome,
                                      "rules": ",".join(update.rules)}),
        }), reply_to=msg)

    @client.evaluate()
    def evaluate(msg, context):
        region = region_of(context)
        with Workspace.open(Path(home)) as ws:
            metrics = evaluate_locally(ws, settings, region, _from_record(msg.content["arrays"]))
        return app.Message(app.RecordDict({
            "metrics": app.MetricRecord({"num-examples": int(metrics.pop("samples")), **metrics}),
            "meta": app.ConfigRecord({"region": region}),
        }), reply_to=msg)

    return client


@dataclass
class RoundRecord:
    round: int
    seconds: float = 0.0
    updates: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)
    global_sha256: str | None = None
    log_index: int | None = None
    audit_seconds: float = 0.0  # server side: checking update digests and logging the round


def _regional_strategy(base):
    """`base` (FedAvg or FedProx) restricted to training regions, recording every update per round."""

    class Regional(base):
        def __init__(self, *, ws: Workspace, settings: FederationSettings, node_regions: dict[int, str],
                     on_round: Callable[[RoundRecord], None] | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.ws, self.settings, self.node_regions, self.on_round = ws, settings, node_regions, on_round
            self.rounds: dict[int, RoundRecord] = {}
            self._round_started = time.perf_counter()

        def configure_train(self, server_round, arrays, config, grid):
            self._round_started = time.perf_counter()
            messages = super().configure_train(server_round, arrays, config, grid)
            return [m for m in messages if self.node_regions.get(m.metadata.dst_node_id) in self.settings.regions]

        def aggregate_train(self, server_round, replies):
            record = self.rounds.setdefault(server_round, RoundRecord(server_round))
            began = time.perf_counter()
            accepted = []
            for msg in replies:
                region = self.node_regions.get(msg.metadata.src_node_id, "?")
                if msg.has_error():
                    detail = _refusal(msg.error)
                    record.updates.append({"region": region, "received": False, **detail})
                    continue
                meta = msg.content["meta"]
                digest = update_digest(_from_record(msg.content["arrays"]))
                entry = {"region": region, "update_sha256": digest, "log_index": int(meta["log_index"]),
                         "outcome": str(meta["outcome"]), "rules": [r for r in str(meta["rules"]).split(",") if r],
                         "samples": int(msg.content["metrics"]["num-examples"]),
                         "gate_seconds": float(msg.content["metrics"]["gate_seconds"])}
                if digest != meta["update_sha256"] or meta["region"] != region:
                    record.updates.append({**entry, "received": False,
                                           "reason": "the update differs from the one its region's gate released"})
                    continue
                record.updates.append({**entry, "received": True})
                accepted.append(msg)
            record.audit_seconds += time.perf_counter() - began
            arrays, metrics = super().aggregate_train(server_round, accepted)
            if arrays is not None:
                record.global_sha256 = update_digest(_from_record(arrays))
            return arrays, metrics

        def aggregate_evaluate(self, server_round, replies):
            replies = list(replies)
            record = self.rounds.setdefault(server_round, RoundRecord(server_round))
            for msg in replies:
                if not msg.has_error():
                    region = str(msg.content["meta"]["region"])
                    m = msg.content["metrics"]
                    record.evaluation[region] = {"ade_m": float(m["ade_m"]), "fde_m": float(m["fde_m"]),
                                                 "samples": int(m["num-examples"]),
                                                 "constant_velocity_ade_m": float(m["constant_velocity_ade_m"])}
            began = time.perf_counter()
            self._log_round(record)
            record.audit_seconds += time.perf_counter() - began
            record.seconds = time.perf_counter() - self._round_started
            if self.on_round:
                self.on_round(record)
            return super().aggregate_evaluate(server_round, replies)

        def _log_round(self, record: RoundRecord) -> None:
            server = self.settings.server_region
            with self.ws.region(server).catalog.transaction() as conn:
                record.log_index, _ = open_log(self.ws, server).append(conn, "federated_round", {
                    "run_id": self.settings.run_id, "round": record.round, "strategy": self.settings.strategy,
                    "updates": [{k: u.get(k) for k in ("region", "received", "update_sha256", "log_index",
                                                      "outcome", "rules", "samples", "reason")}
                                for u in record.updates],
                    "global_sha256": record.global_sha256,
                    "evaluation": record.evaluation})

    return Regional


def _refusal(error) -> dict[str, Any]:
    try:
        detail = json.loads(error.reason or "{}")
    except json.JSONDecodeError:
        detail = {}
    if error.code == GATE_REFUSED and isinstance(detail, dict):
        return {"outcome": detail.get("outcome"), "rules": detail.get("rules", []),
                "log_index": detail.get("log_index"), "update_sha256": detail.get("update_sha256"),
                "samples": detail.get("samples"), "reason": "refused by the gate; the update stayed in its region"}
    return {"reason": f"the region failed: {(error.reason or '')[:300]}"}


def _roll_call(app, grid, expected: int, timeout_s: float = 120.0) -> dict[int, str]:
    """Ask every node which region it serves."""
    deadline = time.monotonic() + timeout_s
    while len(nodes := list(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise FederationError(f"only {len(nodes)} of {expected} regions' nodes connected in {timeout_s:.0f} s")
        time.sleep(0.2)
    messages = [app.Message(app.RecordDict({"meta": app.ConfigRecord({})}), dst_node_id=node,
                            message_type=app.MessageType.QUERY) for node in nodes]
    out = {}
    for reply in grid.send_and_receive(messages, timeout=timeout_s):
        if reply.has_error():
            raise FederationError(f"node {reply.metadata.src_node_id} did not answer the roll call: "
                                  f"{reply.error.reason}")
        out[reply.metadata.src_node_id] = str(reply.content["meta"]["region"])
    return out


def server_app(home: str, settings: FederationSettings, sink: dict[str, Any],
               on_round: Callable[[RoundRecord], None] | None = None):
    """The ServerApp of the server region: roll call, rounds, the final checkpoint and summary."""
    app, _, serverapp, strategy = _flwr()
    server = serverapp.ServerApp()

    @server.main()
    def main(grid, context) -> None:
        with Workspace.open(Path(home)) as ws, acting_for(settings.server_region):
            node_regions = _roll_call(app, grid, len(settings.nodes))
            missing = set(settings.nodes) - set(node_regions.values())
            if missing:
                raise FederationError(f"no node serves region(s) {', '.join(sorted(missing))}")
            base = strategy.FedProx if settings.proximal_mu > 0 else strategy.FedAvg
            kwargs = {"proximal_mu": settings.proximal_mu} if settings.proximal_mu > 0 else {}
            fed = _regional_strategy(base)(
                ws=ws, settings=settings, node_regions=node_regions, on_round=on_round,
                fraction_train=1.0, fraction_evaluate=1.0,
                min_train_nodes=len(settings.nodes), min_evaluate_nodes=len(settings.nodes),
                min_available_nodes=len(settings.nodes), **kwargs)
            initial = ref.state_arrays(ref.new_model(settings.seed))
            # the ClientApp takes local epochs, lr and mu from the same settings, so no train config is sent
            result = fed.start(grid=grid, initial_arrays=_to_record(initial), num_rounds=settings.rounds)
            final = _from_record(result.arrays) if result.arrays is not None else initial
            sink["final"] = final
            sink["rounds"] = [fed.rounds[r] for r in sorted(fed.rounds)]
            sink["node_regions"] = node_regions

    return server


@dataclass
class FederationResult:
    settings: FederationSettings
    rounds: list[RoundRecord]
    checkpoint_asset: str | None
    summary_path: Path
    log_index: int
    seconds: float

    def final_evaluation(self) -> dict[str, dict[str, float]]:
        return self.rounds[-1].evaluation if self.rounds else {}

    def to_dict(self) -> dict[str, Any]:
        return {"format": SUMMARY_FORMAT, "run_id": self.settings.run_id, "settings": self.settings.to_dict(),
                "rounds": [asdict(r) for r in self.rounds], "final_evaluation": self.final_evaluation(),
                "checkpoint_asset": self.checkpoint_asset, "log_index": self.log_index,
                "seconds": round(self.seconds, 2), "summary": str(self.summary_path)}


def _check(ws: Workspace, settings: FederationSettings) -> None:
    if not settings.regions:
        raise UsageError("--regions: name at least one region to train in")
    if settings.rounds < 1 or settings.local_epochs < 1:
        raise UsageError("--rounds and --local-epochs must be at least 1")
    if settings.dp.noise_multiplier > 0 and settings.dp.clip_norm <= 0:
        raise UsageError("--dp-noise needs --dp-clip: the noise is scaled to the clipping norm")
    for name in (*settings.nodes, settings.server_region):
        ws.config.region(name)  # a clear error for an unknown region
    if settings.server_region in settings.nodes:
        raise UsageError(f"the server region {settings.server_region} cannot also be a client region")
    for name in settings.nodes:  # the catalog, not the blobs: the driver reads no region's data
        if not raw_tracks(ws, name):
            raise UsageError(f"region {name} has no GNSS tracks to train or evaluate on; ingest a drop "
                             f"with `fleetgate ingest DROP --region {name}`")


def run_federation(ws: Workspace, settings: FederationSettings, verbose: bool = False,
                   on_round: Callable[[RoundRecord], None] | None = None) -> FederationResult:
    """Run a federated training on this machine with Flower's simulation runtime (Ray)."""
    if not settings.run_id:
        settings = replace(settings, run_id=new_run_id())
    _check(ws, settings)
    _flwr()
    from flwr.simulation import run_simulation

    if not verbose:  # Flower logs every step at INFO and warns that run_simulation is deprecated
        logging.getLogger("flwr").setLevel(logging.ERROR)
    sink: dict[str, Any] = {}
    cpus = max(os.cpu_count() or 1, 1)
    gpus = 1.0 / len(settings.nodes) if settings.device == "cuda" else 0.0
    started = time.perf_counter()
    run_simulation(
        server_app=server_app(str(ws.home), settings, sink, on_round),
        client_app=client_app(str(ws.home), settings),
        num_supernodes=len(settings.nodes),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": gpus},
            "init_args": {"num_cpus": cpus, "num_gpus": 1 if gpus else 0, "include_dashboard": False,
                          "log_to_driver": verbose, "logging_level": "INFO" if verbose else "ERROR"},
        },
        verbose_logging=verbose,
    )
    seconds = time.perf_counter() - started
    if "final" not in sink:
        raise FederationError("the federated run ended without a result; rerun with --verbose to see Flower's log")
    return _finish(ws, settings, sink, seconds)


def _finish(ws: Workspace, settings: FederationSettings, sink: dict[str, Any], seconds: float) -> FederationResult:
    rounds: list[RoundRecord] = sink["rounds"]
    received = [u for r in rounds for u in r.updates if u["received"]]
    contributors = sorted({u["region"] for u in received})
    server = settings.server_region
    checkpoint = None
    if received:
        net = ref.new_model(settings.seed)
        ref.load_arrays(net, sink["final"])
        card = {
            "model": MODEL_NAME, "region": server, "federated": True, "run_id": settings.run_id,
            "data_lineage": {"trained_in": contributors,
                             "updates": [{"round": r.round, "region": u["region"], "update_sha256": u["update_sha256"],
                                          "log_index": u["log_index"], "samples": u["samples"]}
                                         for r in rounds for u in r.updates if u["received"]]},
            "metrics": {"validation_by_region": rounds[-1].evaluation},
            "settings": settings.to_dict(),
            "packs": {region: {p.id: p.hash_ref for p in packs_for(ws, region)} for region in contributors},
            "residency": "built only from model updates each region's gate released; no raw data left any region",
        }
        checkpoint, _ = store_checkpoint(ws, server, ref.state_bytes(net), card)
    with ws.region(server).catalog.transaction() as conn:
        log_index, _ = open_log(ws, server).append(conn, "federated_run", {
            "run_id": settings.run_id, "settings": settings.to_dict(), "rounds": len(rounds),
            "updates_received": len(received),
            "updates_refused": sum(1 for r in rounds for u in r.updates if not u["received"]),
            "contributors": contributors, "checkpoint_asset": checkpoint,
            "final_evaluation": rounds[-1].evaluation if rounds else {}})
    path = ws.home / "federation" / f"{settings.run_id}.json"
    result = FederationResult(settings, rounds, checkpoint, path, log_index, seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return result
