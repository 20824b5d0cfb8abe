"""`fleetgate export plan`: select assets, decide them together, and write what would leave and why.

Assets are selected with a CEL expression over `asset` (kind, vehicle, clip_id, t_start, t_end,
features, source_path, bytes). Every selected asset is decided in one request, so the subject
counts sum across them (conservative), with the region's ledger as the year-to-date. Two gate
rules hold whatever the packs say: camera media that is not anonymized never leaves, and an
asset that was never classified stays local.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from fleetgate.audit import canonical, digest, open_log
from fleetgate.errors import InvalidInputError, UsageError
from fleetgate.policy.engine import compile_condition, new_context
from fleetgate.policy.request import DecisionRequest, Item
from fleetgate.policy.service import decide_in_workspace, exporter_of
from fleetgate.policy.vocabulary import Outcome
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace

PLAN_FORMAT = "fleetgate-export-plan/1"
RAW_CAMERA_KINDS = {"exterior_video", "exterior_image", "cabin_video"}
GATE_RAW_MEDIA = "GATE-RAW-MEDIA"
GATE_UNCLASSIFIED = "GATE-UNCLASSIFIED"


def _asset_view(asset: dict[str, Any], cls: dict[str, Any] | None) -> dict[str, Any]:
    def iso(value: Any) -> str:
        return value.isoformat() if value else ""

    return {"kind": asset["kind"], "vehicle": asset["vehicle"] or "", "clip_id": asset["clip_id"] or "",
            "t_start": iso(asset["t_start"]), "t_end": iso(asset["t_end"]), "source_path": asset["source_path"],
            "bytes": int(asset["bytes"]), "features": list(cls["features"]) if cls else [],
            "anonymized": bool(cls and cls["anonymized"])}


def select_assets(ws: Workspace, region: str, select: str | None) -> list[dict[str, Any]]:
    """Assets of the region matching the CEL selection (all of them when None)."""
    condition = compile_condition(select) if select else None
    ledger = Ledger(ws.region(region).catalog)
    classes = {c["asset_id"]: c for c in ledger.classifications()}
    chosen = []
    context = new_context({})
    for asset in ws.region(region).catalog.list_assets(region=region):
        if condition is not None:
            context.set("asset", _asset_view(asset, classes.get(asset["id"])))
            if not condition.evaluate(context):
                continue
        chosen.append(asset | {"classification": classes.get(asset["id"])})
    return chosen


def decide_assets(ws: Workspace, region: str, destination_country: str, assets: list[dict[str, Any]],
                  as_of: dt.date) -> tuple[Any, list[dict[str, Any]]]:
    """Decide the assets together; returns the decision and one plan item per asset."""
    cfg = ws.config.region(region)
    items, gate_holds = [], {}
    for asset in assets:
        cls = asset["classification"]
        if cls is None or cls["policy_kind"] is None:
            gate_holds[asset["id"]] = (GATE_UNCLASSIFIED,
                                       "gate: the asset has no policy classification; it stays local")
        elif asset["kind"] in RAW_CAMERA_KINDS and not cls["anonymized"]:
            gate_holds[asset["id"]] = (GATE_RAW_MEDIA, "gate: camera media that is not anonymized never leaves")
        kind = (cls or {}).get("policy_kind") or f"unmapped:{asset['kind']}"
        items.append(Item(id=asset["id"], kind=kind, features=tuple((cls or {}).get("features") or ()),
                          anonymized=bool(cls and cls["anonymized"]),
                          pseudonymized=bool(cls and cls["pseudonymized"]),
                          subjects=int((cls or {}).get("subjects") or 0)))
    if not items:
        raise UsageError("the selection matches no assets")
    request = DecisionRequest(destination=destination_country, items=tuple(items), exporter=exporter_of(cfg),
                              as_of=as_of)
    decision = decide_in_workspace(ws, request, region)
    rows = []
    for asset, item in zip(assets, decision.items, strict=True):
        outcome, rules, reasons = item.outcome, list(item.rules), list(item.reasons)
        if asset["id"] in gate_holds:
            rule, reason = gate_holds[asset["id"]]
            outcome, rules, reasons = Outcome.LOCAL_ONLY, rules + [rule], reasons + [reason]
        cls = asset["classification"] or {}
        rows.append({"asset_id": asset["id"], "kind": asset["kind"], "policy_kind": cls.get("policy_kind"),
                     "source_path": asset["source_path"], "sha256": asset["sha256"], "bytes": int(asset["bytes"]),
                     "features": list(cls.get("features") or []), "subjects": int(cls.get("subjects") or 0),
                     "anonymized": bool(cls.get("anonymized")),
                     "counted_as": item.counted_as if outcome is not Outcome.LOCAL_ONLY else None,
                     "outcome": outcome.value, "rules": rules, "reasons": reasons,
                     "obligations": item.obligations if outcome is not Outcome.LOCAL_ONLY else []})
    return decision, rows


def plan_digest(plan: dict[str, Any]) -> str:
    body = {k: v for k, v in plan.items() if k not in ("plan_id", "created_at")}
    return hashlib.sha256(canonical(body)).hexdigest()


def make_plan(ws: Workspace, destination: str, select: str | None = None, purpose: str = "",
              region: str | None = None, as_of: dt.date | None = None) -> dict[str, Any]:
    """Decide the selected assets for a destination and log the decision; returns the plan."""
    cfg = ws.config.region(region)
    if destination not in ws.config.destinations:
        known = ", ".join(sorted(ws.config.destinations)) or "none"
        raise UsageError(f"unknown destination '{destination}' (configured: {known})")
    dest = ws.config.destinations[destination]
    as_of = as_of or dt.date.today()
    assets = select_assets(ws, cfg.name, select)
    decision, rows = decide_assets(ws, cfg.name, dest.country, assets, as_of)
    summary: dict[str, dict[str, int]] = {}
    for row in rows:
        s = summary.setdefault(row["outcome"], {"assets": 0, "bytes": 0, "subjects": 0})
        s["assets"] += 1
        s["bytes"] += row["bytes"]
        s["subjects"] += row["subjects"]
    needing = [r for r in rows if Outcome(r["outcome"]).needs_approval]
    plan: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "region": cfg.name,
        "exporter": cfg.exporter_id,
        "destination": {"name": dest.name, "country": dest.country},
        "purpose": purpose,
        "select": select or "",
        "as_of": as_of.isoformat(),
        "packs": decision.packs,
        "ytd_before": {"pi_subjects": decision.ytd_before.pi_subjects,
                       "spi_subjects": decision.ytd_before.spi_subjects},
        "ytd_after": {"pi_subjects": decision.ytd_after.pi_subjects, "spi_subjects": decision.ytd_after.spi_subjects},
        "summary": summary,
        "obligations": decision.obligations,
        "approval_scope": {"kinds": sorted({r["policy_kind"] for r in needing}),
                           "outcomes": sorted({r["outcome"] for r in needing}),
                           "subjects": sum(r["subjects"] for r in needing)},
        "items": rows,
    }
    plan["plan_id"] = "plan-" + plan_digest(plan)[:20]
    plan["created_at"] = dt.datetime.now(dt.UTC).isoformat()
    log = open_log(ws, cfg.name)
    with ws.region(cfg.name).catalog.transaction() as conn:
        log.append(conn, "decision", {"plan_id": plan["plan_id"], "plan_digest": digest(plan_digest(plan)),
                                      "destination_country": dest.country, "packs": decision.packs,
                                      "summary": summary, "purpose_digest": digest(purpose)})
    return plan


def write_plan(plan: dict[str, Any], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(plan, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def read_plan(path: Path) -> dict[str, Any]:
    """Read a plan and check it was not edited since it was made."""
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: not a readable plan: {exc}") from exc
    if plan.get("format") != PLAN_FORMAT:
        raise InvalidInputError(f"{path}: format: expected {PLAN_FORMAT}")
    if plan.get("plan_id") != "plan-" + plan_digest(plan)[:20]:
        raise InvalidInputError(f"{path}: plan_id: the plan was changed after it was made; plan again")
    return plan
