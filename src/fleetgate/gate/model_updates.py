"""The gate for model updates: a federated-learning update leaves a region only if the packs allow it.

Each update a region's trainer wants to send is one export request with one item of kind
`model_update`, carrying how many training samples it aggregates and the differential-privacy
noise added to it. The region's packs decide it (fleetgate-model-updates: fewer than 1,000 samples
stay; the rest as for any data without personal information) and the decision is appended to the
region's transparency log with the update's SHA-256, whether it was released or not. Only
EXPORT_FREE and EXPORT_FTZ_LIST release an update: there is no approval route for model updates,
so anything needing a filing stays in the region (fail closed). A region whose packs do not include
`fleetgate-model-updates` (a workspace made before it existed) releases no update at all
(GATE-MODEL-UPDATE-RULES): without MU-1 an update over a handful of samples would pass as data
without personal information.

A released update travels with its evidence (`UpdateEvidence`): the exact bytes of its log entry,
the region's Ed25519 signature over them, and an RFC 6962 inclusion proof of the entry under a
checkpoint of the region's log signed with the same key. The receiver checks all three against the
region's public key (`verify_update_evidence`), so it trusts the signed entry, not a digest the
sender claims.

The decision, the log entry and its evidence cost one policy evaluation, one SQLite transaction, a
signed checkpoint and a proof per update; `bench/federate_bench.py` measures that against the round.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from fleetgate.audit import Checkpoint, LogError, open_log
from fleetgate.audit.merkle import leaf_hash, verify_inclusion
from fleetgate.errors import FleetgateError
from fleetgate.keys import verify_signature
from fleetgate.policy.request import DecisionRequest, Item
from fleetgate.policy.service import decide_in_workspace, exporter_of
from fleetgate.policy.vocabulary import Outcome
from fleetgate.workspace import Workspace

RELEASING = (Outcome.EXPORT_FREE, Outcome.EXPORT_FTZ_LIST)
MODEL_UPDATE_PACK = "fleetgate-model-updates"
GATE_MODEL_UPDATE_RULES = "GATE-MODEL-UPDATE-RULES"
# Domain separation: the region key also signs checkpoints (signed notes) and export packages.
ENTRY_SIGNATURE_CONTEXT = b"fleetgate/model-update-entry/v1\n"


class EvidenceError(FleetgateError):
    """A model update's evidence does not prove that its source region logged and released it."""


@dataclass(frozen=True)
class DpSettings:
    """Gaussian mechanism on the update: clip its L2 norm to `clip_norm`, add N(0, (noise·clip)²)."""

    clip_norm: float = 0.0  # 0: no clipping
    noise_multiplier: float = 0.0  # 0: no noise

    def to_dict(self) -> dict[str, float]:
        return {"clip_norm": self.clip_norm, "noise_multiplier": self.noise_multiplier}


@dataclass
class UpdateRelease:
    """The gate's answer for one model update."""

    released: bool
    outcome: str
    rules: list[str]
    reasons: list[str]
    obligations: list[str]
    log_index: int
    entry: dict[str, Any] = field(default_factory=dict)
    evidence: UpdateEvidence | None = None  # only for a released update: what travels with it


@dataclass(frozen=True)
class UpdateEvidence:
    """What proves a model update was decided, released and logged by its source region."""

    region: str
    entry: str  # canonical JSON of the log entry, exactly the bytes the log hashed
    signature: bytes  # Ed25519 over ENTRY_SIGNATURE_CONTEXT + entry, by the region's signing key
    checkpoint: str  # C2SP signed note of the region's log, covering the entry
    proof: tuple[str, ...]  # RFC 6962 inclusion proof (hex) of the entry under the checkpoint

    def to_record(self) -> dict[str, Any]:
        """Plain values (str, bytes, list of str) for a Flower ConfigRecord."""
        return {"region": self.region, "entry": self.entry, "signature": self.signature,
                "checkpoint": self.checkpoint, "proof": list(self.proof)}

    @classmethod
    def from_record(cls, record: Any) -> UpdateEvidence:
        try:
            return cls(str(record["region"]), str(record["entry"]), bytes(record["signature"]),
                       str(record["checkpoint"]), tuple(str(p) for p in record.get("proof", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise EvidenceError(f"the update's evidence is incomplete: {exc}") from None


def update_evidence(ws: Workspace, region: str, index: int) -> UpdateEvidence:
    """Sign log entry `index` of `region`, checkpoint the log and prove the entry under it."""
    log = open_log(ws, region)
    entry = log.repo.entry_text(index)
    if entry is None:
        raise EvidenceError(f"region {region}'s log holds no entry {index}")
    signature = ws.keys(region).sign(ENTRY_SIGNATURE_CONTEXT + entry.encode("utf-8"))
    checkpoint = log.checkpoint()
    proof = log.prove(index, checkpoint.size)
    return UpdateEvidence(region, entry, signature, checkpoint.text(), tuple(proof["proof"]))


def verify_update_evidence(evidence: UpdateEvidence, public_key: bytes, *, update_sha256: str, to_region: str,
                           run_id: str, round_number: int) -> tuple[dict[str, Any], Checkpoint]:
    """The verified entry and checkpoint, or EvidenceError naming the first check that failed."""
    data = evidence.entry.encode("utf-8")
    if not verify_signature(public_key, evidence.signature, ENTRY_SIGNATURE_CONTEXT + data):
        raise EvidenceError(f"the entry's signature does not verify with region {evidence.region}'s key")
    try:
        checkpoint = Checkpoint.parse(evidence.checkpoint)
    except LogError as exc:
        raise EvidenceError(f"the checkpoint does not parse: {exc}") from None
    origin = f"fleetgate/{evidence.region}"
    if checkpoint.origin != origin or not checkpoint.verify_signature(origin, public_key):
        raise EvidenceError(f"the checkpoint is not signed by region {evidence.region}'s log")
    try:
        entry = json.loads(data)
        proof = [bytes.fromhex(p) for p in evidence.proof]
    except ValueError:
        raise EvidenceError("the entry or its proof is malformed") from None
    index = entry.get("index") if isinstance(entry, dict) else None
    if not isinstance(index, int) or not verify_inclusion(leaf_hash(data), index, checkpoint.size, proof,
                                                          checkpoint.root):
        raise EvidenceError(f"the entry is not included in region {evidence.region}'s signed checkpoint")
    expected = {"type": "model_update", "from_region": evidence.region, "to_region": to_region,
                "run_id": run_id, "round": round_number, "update_sha256": update_sha256, "released": True}
    for key, value in expected.items():
        if entry.get(key) != value:
            raise EvidenceError(f"the signed entry's {key} is {entry.get(key)!r}, not {value!r}")
    return entry, checkpoint


def release_model_update(ws: Workspace, region: str, destination_region: str, *, update_sha256: str,
                         aggregated_samples: int, dp: DpSettings, run_id: str, round_number: int,
                         as_of: dt.date | None = None, extra: dict[str, Any] | None = None) -> UpdateRelease:
    """Decide one model update from `region` to `destination_region` and log it; never raises on refusal."""
    source = ws.config.region(region)
    destination = ws.config.region(destination_region)
    request = DecisionRequest(
        destination=destination.country,
        items=(Item(id=f"{run_id}/r{round_number}/{source.name}", kind="model_update", subjects=0,
                    aggregated_samples=aggregated_samples, dp_noise_multiplier=dp.noise_multiplier),),
        exporter=exporter_of(source),
        as_of=as_of or dt.date.today(),
    )
    decision = decide_in_workspace(ws, request, source.name)
    item = decision.items[0]
    outcome, rules, reasons = item.outcome, list(item.rules), list(item.reasons)
    if MODEL_UPDATE_PACK not in decision.packs:
        outcome, rules = Outcome.LOCAL_ONLY, [*rules, GATE_MODEL_UPDATE_RULES]
        reasons.append(f"gate: region {source.name} does not apply pack {MODEL_UPDATE_PACK}; add it to its packs "
                       "in fleetgate.toml before model updates may leave")
    released = outcome in RELEASING
    entry = {
        "run_id": run_id,
        "round": round_number,
        "from_region": source.name,
        "to_region": destination.name,
        "destination_country": destination.country,
        "update_sha256": update_sha256,
        "aggregated_samples": aggregated_samples,
        "dp": dp.to_dict(),
        "outcome": outcome.value,
        "rules": rules,
        "released": released,
        "packs": decision.packs,
        **(extra or {}),
    }
    catalog = ws.region(source.name).catalog
    with catalog.transaction() as conn:
        index, _ = open_log(ws, source.name).append(conn, "model_update", entry)
    evidence = update_evidence(ws, source.name, index) if released else None
    return UpdateRelease(released, outcome.value, rules, reasons, decision.obligations, index, entry, evidence)
