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

The decision and the log entry cost one policy evaluation and one SQLite transaction per update;
`bench/federate_bench.py` measures that against the round time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from fleetgate.audit import open_log
from fleetgate.policy.request import DecisionRequest, Item
from fleetgate.policy.service import decide_in_workspace, exporter_of
from fleetgate.policy.vocabulary import Outcome
from fleetgate.workspace import Workspace

RELEASING = (Outcome.EXPORT_FREE, Outcome.EXPORT_FTZ_LIST)
MODEL_UPDATE_PACK = "fleetgate-model-updates"
GATE_MODEL_UPDATE_RULES = "GATE-MODEL-UPDATE-RULES"


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
    return UpdateRelease(released, outcome.value, rules, reasons, decision.obligations, index, entry)
