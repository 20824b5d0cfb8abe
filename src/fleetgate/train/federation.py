"""Federated learning across regions with Flower: raw data stays, only gated model updates cross.

A ServerApp runs in the server region (default `global`) and a ClientApp in each region. Every
round the server sends the global model to the training regions; each trains on its own store
(acting for its region, so the residency guard refuses anything else), applies the optional DP
clipping and noise to its update, and asks the gate (`release_model_update`) whether the update may
leave. A released update goes back with its evidence: the region's log entry, signed by the region,
with an inclusion proof under the region's signed checkpoint; a refused one goes back as an error
reply and its weights never leave the client. The server verifies each update's evidence against
the region's public key (the entry's signature, not a digest the sender claims), averages the
verified ones (FedAvg, or FedProx with `proximal_mu` > 0) and logs the round in its own
transparency log. Evaluation regions (which may include regions that do not train, to measure a
model on data it never saw) receive the global model and return only ADE/FDE aggregates.

The server first asks every node which region it serves (a Flower query message); where the
deployment registered each region's node key, a node's claim must match its registration. A region
whose node is lost (no reply, node gone, ClientApp failed, evidence that does not verify) fails the
run or is left out of the round, as `on_region_loss` says; both are logged. The same apps run in
Flower's simulation runtime (`run_federation`) and in the deployed runtime (`deployment.py`).
Flower's telemetry is disabled before Flower is imported.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from fleetgate.audit import open_log
from fleetgate.errors import FleetgateError, UsageError
from fleetgate.gate.model_updates import (
    DpSettings,
    EvidenceError,
    UpdateEvidence,
    release_model_update,
    verify_update_evidence,
)
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
REGION_LOSS = ("fail", "continue")
SETTINGS_KEY = "fleetgate-settings"  # the run-config key that carries the settings in a deployment


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
    on_region_loss: str = "fail"  # "fail": a lost region fails the run; "continue": the round goes on without it
    round_timeout_s: float = 3600.0  # how long the server waits for the replies of one round
    rejoin_wait_s: float = 0.0  # before each round, how long a lost region's node gets to come back

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

    def encode(self) -> str:
        """The settings as one run-config string (base64url JSON: no quoting through Flower's parser)."""
        data = {k: v for k, v in self.to_dict().items() if k != "strategy"}
        return base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).decode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FederationSettings:
        known = {f.name for f in fields(cls)}
        out = {k: v for k, v in data.items() if k in known}
        out["regions"], out["evaluate_regions"] = tuple(out["regions"]), tuple(out["evaluate_regions"])
        out["dp"] = DpSettings(**out["dp"])
        return cls(**out)

    @classmethod
    def decode(cls, text: str) -> FederationSettings:
        try:
            return cls.from_dict(json.loads(base64.urlsafe_b64decode(text.encode())))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise FederationError(f"run config {SETTINGS_KEY}: not fleetgate federation settings ({exc})") from None


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
    evidence: UpdateEvidence | None = None


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
                       release.released, release.outcome, release.rules, release.log_index, gate_seconds,
                       release.evidence)


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


def flower_modules():
    flower_environment()
    try:
        import flwr  # noqa: F401
        from flwr import app, clientapp, serverapp
        from flwr.serverapp import strategy
    except ImportError as exc:
        raise UsageError("federation needs Flower: pip install 'fleetgate[federate]'") from exc
    return app, clientapp, serverapp, strategy


def _to_record(arrays: dict[str, np.ndarray]):
    app, *_ = flower_modules()
    return app.ArrayRecord.from_array_dict({k: app.Array.from_numpy_ndarray(np.ascontiguousarray(v))
                                            for k, v in arrays.items()})


def _from_record(record) -> dict[str, np.ndarray]:
    return {k: record[k].numpy() for k in record.keys()}


@dataclass(frozen=True)
class ClientSetup:
    """Who a ClientApp call acts for: the workspace, the run's settings and the node's region."""

    home: Path
    settings: FederationSettings
    region: str


def _train_reply(app, msg, setup: ClientSetup):
    round_number = int(msg.content["config"]["server-round"])
    with Workspace.open(setup.home) as ws:
        update = train_locally(ws, setup.settings, setup.region, _from_record(msg.content["arrays"]), round_number)
    if not update.released:
        return app.Message(app.Error(GATE_REFUSED, json.dumps({
            "region": setup.region, "outcome": update.outcome, "rules": update.rules, "log_index": update.log_index,
            "update_sha256": update.update_sha256, "samples": update.samples})), reply_to=msg)
    return app.Message(app.RecordDict({
        "arrays": _to_record(update.arrays),
        "metrics": app.MetricRecord({"num-examples": update.samples, **update.metrics,
                                     "gate_seconds": update.gate_seconds}),
        "meta": app.ConfigRecord({"region": setup.region}),
        "evidence": app.ConfigRecord(update.evidence.to_record()),
    }), reply_to=msg)


def _evaluate_reply(app, msg, setup: ClientSetup):
    with Workspace.open(setup.home) as ws:
        metrics = evaluate_locally(ws, setup.settings, setup.region, _from_record(msg.content["arrays"]))
    return app.Message(app.RecordDict({
        "metrics": app.MetricRecord({"num-examples": int(metrics.pop("samples")), **metrics}),
        "meta": app.ConfigRecord({"region": setup.region}),
    }), reply_to=msg)


def make_client_app(resolve: Callable[[Any, Any], ClientSetup]):
    """The ClientApp every region's node runs; `resolve(message, context)` says for whom it acts."""
    app, clientapp, _, _ = flower_modules()
    client = clientapp.ClientApp()

    @client.query()
    def roll_call(msg, context):
        region = resolve(msg, context).region
        return app.Message(app.RecordDict({"meta": app.ConfigRecord({"region": region})}), reply_to=msg)

    @client.train()
    def train(msg, context):
        return _train_reply(app, msg, resolve(msg, context))

    @client.evaluate()
    def evaluate(msg, context):
        return _evaluate_reply(app, msg, resolve(msg, context))

    return client


def client_app(home: str, settings: FederationSettings):
    """The simulation's ClientApp: `partition-id` names its region in `settings.nodes`."""
    def resolve(msg, context) -> ClientSetup:
        return ClientSetup(Path(home), settings, settings.nodes[int(context.node_config["partition-id"])])

    return make_client_app(resolve)


@dataclass
class RoundRecord:
    round: int
    seconds: float = 0.0
    updates: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)  # region → why its node did not take part
    global_sha256: str | None = None
    log_index: int | None = None
    audit_seconds: float = 0.0  # server side: verifying update evidence and logging the round


@dataclass(frozen=True)
class ServerSetup:
    """What the ServerApp needs besides Flower's grid."""

    home: Path
    settings: FederationSettings
    log_key: Callable[[str], bytes]  # region → the public key its transparency log is signed with
    registered: dict[int, str] | None = None  # node id → region its key was registered for (deployment)
    flower_run_id: int | None = None


class RegionLost(FederationError):
    """A region's node was lost and the run is set to fail on that."""


def _regional_strategy(base):
    """`base` (FedAvg or FedProx) sending to regions, verifying every update and logging every round."""

    class Regional(base):
        def __init__(self, *, ws: Workspace, setup: ServerSetup, grid, node_regions: dict[int, str],
                     on_round: Callable[[RoundRecord], None] | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.ws, self.setup, self.settings, self._grid = ws, setup, setup.settings, grid
            self.node_regions, self.on_round = node_regions, on_round
            self.rounds: dict[int, RoundRecord] = {}
            self._outgoing: list[tuple[Any, str]] = []  # (message, region) of the current phase
            self._round_started = time.perf_counter()

        def record(self, server_round: int) -> RoundRecord:
            return self.rounds.setdefault(server_round, RoundRecord(server_round))

        # -- sending ----------------------------------------------------------------------------
        def configure_train(self, server_round, arrays, config, grid):
            self._round_started = time.perf_counter()
            return self._messages(server_round, arrays, config, self.settings.regions, "train")

        def configure_evaluate(self, server_round, arrays, config, grid):
            return self._messages(server_round, arrays, config, self.settings.nodes, "evaluate")

        def _messages(self, server_round, arrays, config, regions, kind):
            app, *_ = flower_modules()
            record = self.record(server_round)
            targets = _wait_for_regions(self._grid, self, [r for r in regions if r not in record.lost])
            for region in regions:
                if region not in targets and region not in record.lost:
                    self._lose(record, region, f"its node is not connected ({kind})")
            config["server-round"] = server_round
            content = app.RecordDict({"arrays": arrays, "config": config})
            message_type = app.MessageType.TRAIN if kind == "train" else app.MessageType.EVALUATE
            self._outgoing = [(app.Message(content=content, message_type=message_type, dst_node_id=node), region)
                              for region, node in targets.items()]
            return [message for message, _ in self._outgoing]

        def _region_of(self, msg) -> str:
            """The region a reply answers for; the SuperLink itself answers for a node it lost."""
            for message, region in self._outgoing:  # the grid set each message's id when it sent it
                if message.metadata.message_id == msg.metadata.reply_to_message_id:
                    return region
            return "?"

        def _unanswered(self, record: RoundRecord, replies: list, kind: str) -> None:
            answered = {self._region_of(m) for m in replies}
            for region in {region for _, region in self._outgoing} - answered:
                if region not in record.lost:
                    self._lose(record, region, f"no {kind} reply within {self.settings.round_timeout_s:.0f} s")

        def _lose(self, record: RoundRecord, region: str, reason: str) -> None:
            record.lost[region] = reason
            if self.settings.on_region_loss == "fail":
                self._log_round(record, status="failed")
                raise RegionLost(f"region {region} was lost in round {record.round}: {reason}")

        # -- receiving ---------------------------------------------------------------------------
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            record = self.record(server_round)
            began = time.perf_counter()
            accepted = []
            for msg in replies:
                region = self._region_of(msg)
                if msg.has_error():
                    detail = _refusal(msg.error)
                    record.updates.append({"region": region, "received": False, **detail})
                    if msg.error.code != GATE_REFUSED:
                        self._lose(record, region, detail["reason"])
                    continue
                try:
                    entry = self._verified(msg, region, server_round)
                except EvidenceError as exc:
                    record.updates.append({"region": region, "received": False,
                                           "reason": f"evidence rejected: {exc.message}"})
                    self._lose(record, region, f"its update's evidence did not verify: {exc.message}")
                    continue
                record.updates.append({**entry, "received": True})
                accepted.append(msg)
            self._unanswered(record, replies, "training")
            record.audit_seconds += time.perf_counter() - began
            arrays, metrics = super().aggregate_train(server_round, accepted)
            if arrays is not None:
                record.global_sha256 = update_digest(_from_record(arrays))
            return arrays, metrics

        def _verified(self, msg, region: str, server_round: int) -> dict[str, Any]:
            """The update's record, after its evidence verified against the region's log key."""
            try:
                digest = update_digest(_from_record(msg.content["arrays"]))
                evidence = UpdateEvidence.from_record(msg.content["evidence"])
                samples = int(msg.content["metrics"]["num-examples"])
                gate_seconds = float(msg.content["metrics"]["gate_seconds"])
            except (KeyError, TypeError, ValueError) as exc:
                raise EvidenceError(f"the reply lacks an update, its evidence or its metrics ({exc})") from None
            if evidence.region != region:
                raise EvidenceError(f"the evidence is for region {evidence.region}, the node serves {region}")
            entry, checkpoint = verify_update_evidence(
                evidence, self.setup.log_key(region), update_sha256=digest, to_region=self.settings.server_region,
                run_id=self.settings.run_id, round_number=server_round)
            if samples != entry.get("aggregated_samples"):
                raise EvidenceError("the reply's sample count differs from the signed entry's")
            return {"region": region, "update_sha256": digest, "log_index": entry["index"],
                    "outcome": entry["outcome"], "rules": entry["rules"], "samples": entry["aggregated_samples"],
                    "gate_seconds": gate_seconds,
                    "source_checkpoint": {"size": checkpoint.size, "root": checkpoint.root.hex()}}

        def aggregate_evaluate(self, server_round, replies):
            replies = list(replies)
            record = self.record(server_round)
            for msg in replies:
                region = self._region_of(msg)
                if msg.has_error():
                    self._lose(record, region, _refusal(msg.error)["reason"])
                    continue
                m = msg.content["metrics"]
                record.evaluation[region] = {"ade_m": float(m["ade_m"]), "fde_m": float(m["fde_m"]),
                                             "samples": int(m["num-examples"]),
                                             "constant_velocity_ade_m": float(m["constant_velocity_ade_m"])}
            self._unanswered(record, replies, "evaluation")
            began = time.perf_counter()
            self._log_round(record)
            record.audit_seconds += time.perf_counter() - began
            record.seconds = time.perf_counter() - self._round_started
            if self.on_round:
                self.on_round(record)
            return super().aggregate_evaluate(server_round, [m for m in replies if not m.has_error()])

        def _log_round(self, record: RoundRecord, status: str = "completed") -> None:
            server = self.settings.server_region
            with self.ws.region(server).catalog.transaction() as conn:
                record.log_index, _ = open_log(self.ws, server).append(conn, "federated_round", {
                    "run_id": self.settings.run_id, "round": record.round, "strategy": self.settings.strategy,
                    "status": status, "flower_run_id": self.setup.flower_run_id,
                    "updates": [{k: u.get(k) for k in ("region", "received", "update_sha256", "log_index",
                                                      "outcome", "rules", "samples", "reason", "source_checkpoint")}
                                for u in record.updates],
                    "lost": record.lost, "global_sha256": record.global_sha256,
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


def _wait_for_regions(grid, strategy, regions: list[str]) -> dict[str, int]:
    """Node id per region among `regions` whose node is connected; waits `rejoin_wait_s` for the rest."""
    deadline = time.monotonic() + strategy.settings.rejoin_wait_s
    while True:
        online = set(grid.get_node_ids())
        unknown = online - set(strategy.node_regions)
        if unknown:
            strategy.node_regions.update(_ask_regions(grid, sorted(unknown), strategy.setup))
        found = {strategy.node_regions[n]: n for n in online if strategy.node_regions.get(n) in regions}
        if len(found) == len(regions) or time.monotonic() >= deadline:
            return found
        time.sleep(1.0)


def _ask_regions(grid, nodes: list[int], setup: ServerSetup, timeout_s: float = 120.0) -> dict[int, str]:
    """Ask nodes which region they serve; a node whose claim differs from its registration serves none."""
    app, *_ = flower_modules()
    out = {node: "" for node in nodes}  # "": serves no region of ours; not asked again
    if setup.registered is not None:  # a node whose key the SuperLink did not register for a region: ignored
        nodes = [node for node in nodes if node in setup.registered]
    messages = [app.Message(app.RecordDict({"meta": app.ConfigRecord({})}), dst_node_id=node,
                            message_type=app.MessageType.QUERY) for node in nodes]
    replies = list(grid.send_and_receive(messages, timeout=timeout_s)) if messages else []
    asked = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}  # ids set by the grid on send
    for node in nodes:
        out.pop(node)  # no (good) answer: ask again next time
    for reply in replies:
        node = asked.get(reply.metadata.reply_to_message_id)
        if node is None or reply.has_error():
            continue
        claimed = str(reply.content["meta"]["region"])
        if setup.registered is not None and setup.registered.get(node) != claimed:
            logging.getLogger("fleetgate").warning("node %s claims region %s; its key is registered for %s",
                                                   node, claimed, setup.registered.get(node))
            claimed = ""
        out[node] = claimed
    return out


def _roll_call(grid, setup: ServerSetup, timeout_s: float) -> dict[int, str]:
    """Wait for a node of every region in the run and learn which node serves which region."""
    expected = set(setup.settings.nodes)
    deadline = time.monotonic() + timeout_s
    regions: dict[int, str] = {}
    while True:
        online = sorted(set(grid.get_node_ids()) - set(regions))
        if online:
            regions.update(_ask_regions(grid, online, setup))
        missing = expected - set(regions.values())
        if not missing:
            return regions
        if time.monotonic() > deadline:
            raise FederationError(f"no node serves region(s) {', '.join(sorted(missing))} "
                                  f"after {timeout_s:.0f} s")
        time.sleep(0.5)


def serve(grid, setup: ServerSetup, on_round: Callable[[RoundRecord], None] | None = None) -> FederationResult:
    """The server region's part of a run: roll call, rounds, the final checkpoint, summary and log."""
    _, _, _, strategy = flower_modules()
    settings = setup.settings
    started = time.perf_counter()
    with Workspace.open(setup.home) as ws, acting_for(settings.server_region):
        rounds: dict[int, RoundRecord] = {}
        try:
            node_regions = _roll_call(grid, setup, min(settings.round_timeout_s, 600.0))
            base = strategy.FedProx if settings.proximal_mu > 0 else strategy.FedAvg
            kwargs = {"proximal_mu": settings.proximal_mu} if settings.proximal_mu > 0 else {}
            fed = _regional_strategy(base)(
                ws=ws, setup=setup, grid=grid, node_regions=node_regions, on_round=on_round,
                fraction_train=1.0, fraction_evaluate=1.0, min_available_nodes=1, **kwargs)
            rounds = fed.rounds
            initial = ref.state_arrays(ref.new_model(settings.seed))
            # the ClientApp takes local epochs, lr and mu from the same settings, so no train config is sent
            result = fed.start(grid=grid, initial_arrays=_to_record(initial), num_rounds=settings.rounds,
                               timeout=settings.round_timeout_s)
            final = _from_record(result.arrays) if result.arrays is not None else initial
        except Exception as exc:  # whatever ended the run, its failure is logged before it propagates
            reason = exc.message if isinstance(exc, FederationError) else f"{type(exc).__name__}: {exc}"
            _finish(ws, setup, [rounds[r] for r in sorted(rounds)], None, time.perf_counter() - started,
                    failure=reason)
            raise
        return _finish(ws, setup, [rounds[r] for r in sorted(rounds)], final, time.perf_counter() - started)


def server_app(setup: ServerSetup, sink: dict[str, Any], on_round: Callable[[RoundRecord], None] | None = None):
    """The simulation's ServerApp: serves the run and leaves the result (or the failure) in `sink`."""
    _, _, serverapp, _ = flower_modules()
    server = serverapp.ServerApp()

    @server.main()
    def main(grid, context) -> None:
        try:
            sink["result"] = serve(grid, setup, on_round)
        except FederationError as exc:
            sink["error"] = exc.message

    return server


@dataclass
class FederationResult:
    settings: FederationSettings
    rounds: list[RoundRecord]
    checkpoint_asset: str | None
    summary_path: Path
    log_index: int
    seconds: float
    status: str = "completed"
    failure: str | None = None
    flower_run_id: int | None = None

    def final_evaluation(self) -> dict[str, dict[str, float]]:
        return self.rounds[-1].evaluation if self.rounds else {}

    def to_dict(self) -> dict[str, Any]:
        return {"format": SUMMARY_FORMAT, "run_id": self.settings.run_id, "status": self.status,
                "failure": self.failure, "flower_run_id": self.flower_run_id, "settings": self.settings.to_dict(),
                "rounds": [asdict(r) for r in self.rounds], "final_evaluation": self.final_evaluation(),
                "checkpoint_asset": self.checkpoint_asset, "log_index": self.log_index,
                "seconds": round(self.seconds, 2), "summary": str(self.summary_path)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FederationResult:
        """A summary written by `to_dict` (what a deployed run leaves in the server region)."""
        settings = FederationSettings.from_dict(data["settings"])
        rounds = [RoundRecord(**r) for r in data["rounds"]]
        return cls(settings, rounds, data["checkpoint_asset"], Path(data["summary"]), data["log_index"],
                   data["seconds"], data.get("status", "completed"), data.get("failure"), data.get("flower_run_id"))


def check_settings(ws: Workspace, settings: FederationSettings, needs_data: bool = True) -> None:
    """One clear error for settings a run cannot use; `needs_data`: check the catalogs for tracks too."""
    if not settings.regions:
        raise UsageError("--regions: name at least one region to train in")
    if settings.rounds < 1 or settings.local_epochs < 1:
        raise UsageError("--rounds and --local-epochs must be at least 1")
    if settings.dp.noise_multiplier > 0 and settings.dp.clip_norm <= 0:
        raise UsageError("--dp-noise needs --dp-clip: the noise is scaled to the clipping norm")
    if settings.on_region_loss not in REGION_LOSS:
        raise UsageError(f"--on-region-loss must be one of {', '.join(REGION_LOSS)}")
    if settings.round_timeout_s <= 0 or settings.rejoin_wait_s < 0:
        raise UsageError("--round-timeout must be positive and --rejoin-wait not negative")
    for name in (*settings.nodes, settings.server_region):
        ws.config.region(name)  # a clear error for an unknown region
    if settings.server_region in settings.nodes:
        raise UsageError(f"the server region {settings.server_region} cannot also be a client region")
    if not needs_data:
        return
    for name in settings.nodes:  # the catalog, not the blobs: the driver reads no region's data
        if not raw_tracks(ws, name):
            raise UsageError(f"region {name} has no GNSS tracks to train or evaluate on; ingest a drop "
                             f"with `fleetgate ingest DROP --region {name}`")


def run_federation(ws: Workspace, settings: FederationSettings, verbose: bool = False,
                   on_round: Callable[[RoundRecord], None] | None = None) -> FederationResult:
    """Run a federated training on this machine with Flower's simulation runtime (Ray)."""
    if not settings.run_id:
        settings = replace(settings, run_id=new_run_id())
    check_settings(ws, settings)
    flower_modules()
    from flwr.simulation import run_simulation

    if not verbose:  # Flower logs every step at INFO and warns that run_simulation is deprecated
        logging.getLogger("flwr").setLevel(logging.ERROR)
    # one trust domain on one machine: the server reads each region's log key from the key store
    setup = ServerSetup(ws.home, settings, log_key=lambda region: ws.keys(region).public_key())
    sink: dict[str, Any] = {}
    cpus = max(os.cpu_count() or 1, 1)
    gpus = 1.0 / len(settings.nodes) if settings.device == "cuda" else 0.0
    run_simulation(
        server_app=server_app(setup, sink, on_round),
        client_app=client_app(str(ws.home), settings),
        num_supernodes=len(settings.nodes),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": gpus},
            "init_args": {"num_cpus": cpus, "num_gpus": 1 if gpus else 0, "include_dashboard": False,
                          "log_to_driver": verbose, "logging_level": "INFO" if verbose else "ERROR"},
        },
        verbose_logging=verbose,
    )
    if "error" in sink:
        raise FederationError(sink["error"])
    if "result" not in sink:
        raise FederationError("the federated run ended without a result; rerun with --verbose to see Flower's log")
    return sink["result"]


def _finish(ws: Workspace, setup: ServerSetup, rounds: list[RoundRecord], final: dict[str, np.ndarray] | None,
            seconds: float, failure: str | None = None) -> FederationResult:
    """Store the global checkpoint (a completed run with updates), log the run, write its summary."""
    settings = setup.settings
    received = [u for r in rounds for u in r.updates if u["received"]]
    contributors = sorted({u["region"] for u in received})
    server = settings.server_region
    checkpoint = None
    if received and final is not None:
        checkpoint = _store_global(ws, settings, rounds, final, contributors)
    status = "failed" if failure else "completed"
    with ws.region(server).catalog.transaction() as conn:
        log_index, _ = open_log(ws, server).append(conn, "federated_run", {
            "run_id": settings.run_id, "status": status, "failure": failure,
            "flower_run_id": setup.flower_run_id, "settings": settings.to_dict(), "rounds": len(rounds),
            "updates_received": len(received),
            "updates_refused": sum(1 for r in rounds for u in r.updates if not u["received"]),
            "regions_lost": {str(r.round): r.lost for r in rounds if r.lost},
            "contributors": contributors, "checkpoint_asset": checkpoint,
            "final_evaluation": rounds[-1].evaluation if rounds else {}})
    path = ws.home / "federation" / f"{settings.run_id}.json"
    result = FederationResult(settings, rounds, checkpoint, path, log_index, seconds, status, failure,
                              setup.flower_run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return result


def _store_global(ws: Workspace, settings: FederationSettings, rounds: list[RoundRecord],
                  final: dict[str, np.ndarray], contributors: list[str]) -> str:
    net = ref.new_model(settings.seed)
    ref.load_arrays(net, final)
    card = {
        "model": MODEL_NAME, "region": settings.server_region, "federated": True, "run_id": settings.run_id,
        "data_lineage": {"trained_in": contributors,
                         "updates": [{"round": r.round, "region": u["region"], "update_sha256": u["update_sha256"],
                                      "log_index": u["log_index"], "samples": u["samples"],
                                      "source_checkpoint": u.get("source_checkpoint")}
                                     for r in rounds for u in r.updates if u["received"]]},
        "metrics": {"validation_by_region": rounds[-1].evaluation},
        "settings": settings.to_dict(),
        "packs": {region: {p.id: p.hash_ref for p in packs_for(ws, region)} for region in contributors},
        "residency": "built only from model updates each region's gate released and signed; "
                     "no raw data left any region",
    }
    asset, _ = store_checkpoint(ws, settings.server_region, ref.state_bytes(net), card)
    return asset
