"""`fleetgate export plan`: select assets, decide them together, and sign what would leave and why.

Assets are selected with a CEL expression over `asset` (kind, vehicle, clip_id, t_start, t_end,
features, source_path, bytes). Every selected asset is decided in one request, so the subject
counts sum across them (conservative), with the region's ledger as the year-to-date. Gate rules
hold whatever the packs say: camera media that is not anonymized never leaves, an asset that was
never classified stays local, and so does an asset whose bytes are not what its kind promises.

The plan is signed by the engineer who made it; the signed statement (plan digest, destination,
exporter, purpose, summary) is logged whole in the region's `decision` entry. Approvals and the run
take the destination, exporter and purpose from that logged statement, never from the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from fleetgate.audit.log import region_log
from fleetgate.audit.state import LoggedDecision, LogState
from fleetgate.domain import (
    ApprovalScope,
    BasisStatement,
    Blocked,
    Destination,
    OutcomeSummary,
    Plan,
    PlanItem,
    PlanStatement,
    Role,
    SignedPlan,
    Ytd,
)
from fleetgate.domain.clock import Clock
from fleetgate.errors import InvalidInputError, UsageError
from fleetgate.formats.content import content_problem
from fleetgate.gate.trust import trusted_state
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.people import require
from fleetgate.policy.decide import Decision
from fleetgate.policy.engine import compile_condition, new_context
from fleetgate.policy.request import DecisionRequest, Item, LegalBasis
from fleetgate.policy.service import decide_in_workspace, exporter_of
from fleetgate.policy.vocabulary import Outcome
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

RAW_CAMERA_KINDS = {"exterior_video", "exterior_image", "cabin_video"}
GATE_RAW_MEDIA = "GATE-RAW-MEDIA"
GATE_UNCLASSIFIED = "GATE-UNCLASSIFIED"
GATE_CONTENT = "GATE-CONTENT"


class PlanRefused(UsageError):
    """A plan file that is not the one its author signed and the region logged."""


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
    classes = {c["asset_id"]: c for c in ledger.classification_summaries()}
    chosen = []
    context = new_context({})
    for asset in ws.region(region).catalog.list_assets(region=region):
        if condition is not None:
            context.set("asset", _asset_view(asset, classes.get(asset["id"])))
            if not condition.evaluate(context):
                continue
        asset["classification"] = classes.pop(asset["id"], None)  # in place: a plan may hold a million
        chosen.append(asset)
    return chosen


def _gate_hold(ws: Workspace, region: str, asset: dict[str, Any]) -> tuple[str, str] | None:
    """A rule of the gate itself that keeps the asset local, whatever the packs say."""
    cls = asset["classification"]
    if cls is None or cls["policy_kind"] is None:
        return GATE_UNCLASSIFIED, "gate: the asset has no policy classification; it stays local"
    if asset["kind"] in RAW_CAMERA_KINDS and not cls["anonymized"]:
        return GATE_RAW_MEDIA, "gate: camera media that is not anonymized never leaves"
    problem = content_problem(asset["kind"], lambda: ws.region(region).blobs.open(asset["sha256"]))
    if problem:
        return GATE_CONTENT, f"gate: content does not match the kind {asset['kind']}: {problem}"
    return None


def decide_assets(ws: Workspace, region: str, destination_country: str, assets: list[dict[str, Any]],
                  as_of: dt.date, basis: BasisStatement | None = None) -> tuple[Decision, list[PlanItem]]:
    """Decide the assets together, with the plan's recorded legal basis and PIPIA if any; returns the
    decision and one plan item per asset."""
    cfg = ws.config.region(region)
    if not assets:
        raise UsageError("the selection matches no assets")
    holds = {a["id"]: hold for a in assets if (hold := _gate_hold(ws, region, a))}
    legal = LegalBasis(type=basis.legal_basis.type, ref=basis.legal_basis.ref) if basis else None
    items = []
    for asset in assets:
        cls = asset["classification"] or {}
        items.append(Item(id=asset["id"], kind=cls.get("policy_kind") or f"unmapped:{asset['kind']}",
                          features=tuple(cls.get("features") or ()), anonymized=bool(cls.get("anonymized")),
                          pseudonymized=bool(cls.get("pseudonymized")), subjects=int(cls.get("subjects") or 0),
                          legal_basis=legal, pipia_ref=basis.pipia_ref if basis else None))
    request = DecisionRequest(destination=destination_country, items=tuple(items), exporter=exporter_of(cfg),
                              as_of=as_of)
    decision = decide_in_workspace(ws, request, region)
    rows = []
    for asset, item in zip(assets, decision.items, strict=True):
        outcome, rules, reasons = item.outcome, list(item.rules), list(item.reasons)
        if asset["id"] in holds:
            rule, reason = holds[asset["id"]]
            outcome, rules, reasons = Outcome.LOCAL_ONLY, rules + [rule], reasons + [reason]
        cls = asset["classification"] or {}
        leaves = outcome is not Outcome.LOCAL_ONLY
        rows.append(PlanItem(
            asset_id=asset["id"], kind=asset["kind"], policy_kind=cls.get("policy_kind"),
            source_path=asset["source_path"], sha256=asset["sha256"], bytes=int(asset["bytes"]),
            features=list(cls.get("features") or []), subjects=int(cls.get("subjects") or 0),
            anonymized=bool(cls.get("anonymized")), counted_as=item.counted_as if leaves else None,
            outcome=outcome.value, rules=rules, reasons=reasons, obligations=item.obligations if leaves else [],
            blocking=[Blocked(**b.to_dict()) for b in item.blocking] if leaves else []))
    return decision, rows


def plan_digest(plan: Plan) -> str:
    """sha256 of the plan body's canonical JSON: what the author signs and the log records.

    The bytes are hashed as they are made, item by item, so a plan of a million assets is never held
    as one JSON document beside its items: the same bytes as `canonical_json(plan.model_dump())`."""
    fields = plan.model_dump(mode="json", exclude={"items"}) | {"items": None}
    sha = hashlib.sha256(b"{")
    for position, name in enumerate(sorted(fields)):
        sha.update(b"," if position else b"")
        sha.update(env.canonical_json(name) + b":")
        if name != "items":
            sha.update(env.canonical_json(fields[name]))
            continue
        sha.update(b"[")
        for number, item in enumerate(plan.items):
            sha.update((b"," if number else b"") + env.canonical_json(item.model_dump(mode="json")))
        sha.update(b"]")
    sha.update(b"}")
    return "sha256:" + sha.hexdigest()


def plan_id_of(digest: str) -> str:
    return "plan-" + digest.removeprefix("sha256:")[:20]


def _summary(rows: list[PlanItem]) -> dict[str, OutcomeSummary]:
    acc: dict[str, dict[str, int]] = {}
    for row in rows:
        s = acc.setdefault(row.outcome, {"assets": 0, "bytes": 0, "subjects": 0})
        s["assets"] += 1
        s["bytes"] += row.bytes
        s["subjects"] += row.subjects
    return {k: OutcomeSummary(**v) for k, v in sorted(acc.items())}


def draft_plan(ws: Workspace, destination: str, author: Actor, select: str | None = None, purpose: str = "",
               region: str | None = None, as_of: dt.date | None = None,
               clock: Clock | None = None) -> tuple[Plan, PlanStatement]:
    """Decide the selected assets for a destination: the plan and the statement its author signs.

    Nothing is signed or logged: `make_plan` signs and logs exactly this; the HTTP API shows the
    statement to the author, who signs it with their own key elsewhere and sends the signature back."""
    plan, statement, _ = _draft(ws, destination, author, select, purpose, region, as_of, clock)
    return plan, statement


def _draft(ws: Workspace, destination: str, author: Actor, select: str | None, purpose: str, region: str | None,
           as_of: dt.date | None, clock: Clock | None) -> tuple[Plan, PlanStatement, LogState]:
    cfg = ws.config.region(region)
    if destination not in ws.config.destinations:
        known = ", ".join(sorted(ws.config.destinations)) or "none"
        raise UsageError(f"unknown destination '{destination}' (configured: {known})")
    state = trusted_state(ws, cfg.name)
    require(state, author, {Role.engineer}, "planning an export")
    dest = ws.config.destinations[destination]
    now = (clock or Clock()).now()
    as_of = as_of or now.date()
    decision, rows = decide_assets(ws, cfg.name, dest.country, select_assets(ws, cfg.name, select), as_of)
    needing = [r for r in rows if Outcome(r.outcome).needs_approval]
    plan = Plan(
        region=cfg.name, exporter=cfg.exporter_id, destination=Destination(name=dest.name, country=dest.country),
        purpose=purpose, select=select or "", as_of=as_of, packs=decision.packs,
        ytd_before=Ytd(pi_subjects=decision.ytd_before.pi_subjects, spi_subjects=decision.ytd_before.spi_subjects),
        ytd_after=Ytd(pi_subjects=decision.ytd_after.pi_subjects, spi_subjects=decision.ytd_after.spi_subjects),
        summary=_summary(rows), obligations=decision.obligations,
        approval_scope=ApprovalScope(kinds=sorted({r.policy_kind for r in needing if r.policy_kind}),
                                     outcomes=sorted({r.outcome for r in needing}),
                                     subjects=sum(r.subjects for r in needing)),
        items=rows, author=author.name, created_at=now)
    digest = plan_digest(plan)
    statement = PlanStatement(plan_id=plan_id_of(digest), plan_digest=digest, region=plan.region,
                              destination=plan.destination, exporter=plan.exporter, purpose=plan.purpose,
                              as_of=plan.as_of, packs=plan.packs, summary=plan.summary,
                              approval_scope=plan.approval_scope, items=len(rows), author=author.name, at=now)
    return plan, statement, state


def make_plan(ws: Workspace, destination: str, author: Actor, select: str | None = None, purpose: str = "",
              region: str | None = None, as_of: dt.date | None = None, clock: Clock | None = None,
              also: Callable[[Connection, int, SignedPlan], None] | None = None) -> SignedPlan:
    """Decide the selected assets for a destination, sign the plan as `author` and log the decision.

    `also(conn, index, signed)` writes the caller's own rows (the service's `plans` table) in the same
    transaction as the decision entry, so the two never part."""
    plan, statement, state = _draft(ws, destination, author, select, purpose, region, as_of, clock)
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.PLAN, author.signer)
    signed = SignedPlan(plan_id=statement.plan_id, plan=plan, statement=envelope)
    known = state.decisions.get(statement.plan_id)
    if known is not None and known.envelope == envelope:  # the very same plan, made again, is logged once
        return signed
    reg = ws.region(plan.region)
    with reg.catalog.transaction() as conn:
        index, _ = region_log(reg).append(conn, "decision", {"plan_id": statement.plan_id, "statement": envelope},
                                          at=statement.at)
        if also is not None:
            also(conn, index, signed)
    return signed


def logged_decision(state: LogState, signed: SignedPlan) -> LoggedDecision:
    """The region's logged, signed decision for this plan file, or a clear refusal."""
    digest = plan_digest(signed.plan)
    if signed.plan_id != plan_id_of(digest):
        raise PlanRefused(f"plan {signed.plan_id}: the plan was changed after it was made (its digest is "
                          f"{digest[:19]}…); plan again")
    decision = state.decisions.get(signed.plan_id)
    if decision is None:
        raise PlanRefused(f"plan {signed.plan_id}: no signed decision for it in region {signed.plan.region}'s log "
                          "(or its author's signature did not verify); plan again")
    if decision.statement.plan_digest != digest or decision.envelope != signed.statement:
        raise PlanRefused(f"plan {signed.plan_id}: the plan or its signature differs from the decision logged in "
                          f"entry {decision.index}; plan again")
    return decision


def write_plan(signed: SignedPlan, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(signed.model_dump_json(indent=2), encoding="utf-8")
    tmp.replace(path)


def read_plan(path: Path) -> SignedPlan:
    """Read a plan file; its signature and logged digest are checked by approve and run."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"{path}: not a readable plan: {exc}") from exc
    try:
        return SignedPlan.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInputError(f"{path}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']} "
                                "(not a fleetgate-export-plan/2 file)") from None
