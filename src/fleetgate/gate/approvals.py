"""`fleetgate export approve`: record a filing that lets approval-bound items of a plan leave.

An approval is locked to the plan's destination country, purpose, policy kinds, outcomes and
volume (subjects). It lasts no longer than the instrument allows (3 years for an assessment or a
certificate). LOCAL_ONLY items are never covered.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from fleetgate.audit import digest, open_log
from fleetgate.errors import UsageError
from fleetgate.gate.records import GATE_TABLES, export_approvals, exports
from fleetgate.policy.packs import load_packs
from fleetgate.policy.service import pack_ids_for
from fleetgate.policy.vocabulary import Outcome
from fleetgate.store.catalog import metadata, new_id, utcnow
from fleetgate.workspace import Workspace

APPROVER_ROLES = {"compliance"}


def ensure_tables(ws: Workspace, region: str) -> None:
    metadata.create_all(ws.region(region).catalog.engine, tables=GATE_TABLES)


def max_validity_years(ws: Workspace, region: str, outcomes: list[str]) -> int:
    """The shortest validity any pack gives the outcomes (default 3 years)."""
    years = [term.valid_years for p in load_packs(pack_ids_for(ws, region))
             for o, term in p.approvals.items() if o.value in outcomes]
    return min(years) if years else 3


def approve_plan(ws: Workspace, plan: dict[str, Any], ref: str, by: str, role: str, valid_until: dt.date,
                 today: dt.date | None = None) -> dict[str, Any]:
    region = plan["region"]
    ensure_tables(ws, region)
    today = today or dt.date.today()
    scope = plan["approval_scope"]
    if role not in APPROVER_ROLES:
        raise UsageError(f"--role: only {', '.join(sorted(APPROVER_ROLES))} may approve exports, not '{role}'")
    if not ref.strip() or not by.strip():
        raise UsageError("--ref and --by are required")
    if not scope["kinds"]:
        raise UsageError("the plan has no items that need an approval (LOCAL_ONLY items can never be approved)")
    years = max_validity_years(ws, region, scope["outcomes"])
    limit = today.replace(year=today.year + years) if not (today.month == 2 and today.day == 29) \
        else today.replace(year=today.year + years, day=28)
    if valid_until <= today:
        raise UsageError(f"--valid-until: {valid_until} is not after today ({today})")
    if valid_until > limit:
        raise UsageError(f"--valid-until: {valid_until} is beyond the {years}-year validity of "
                         f"{' / '.join(scope['outcomes'])} (at most {limit})")
    row = {"id": new_id("appr"), "plan_id": plan["plan_id"], "ref": ref, "approved_by": by, "role": role,
           "destination_country": plan["destination"]["country"], "purpose": plan["purpose"],
           "kinds": scope["kinds"], "outcomes": scope["outcomes"], "max_subjects": int(scope["subjects"]),
           "valid_from": today, "valid_until": valid_until, "created_at": utcnow()}
    log = open_log(ws, region)
    with ws.region(region).catalog.transaction() as conn:
        index, _ = log.append(conn, "approval", {
            "approval_id": row["id"], "plan_id": plan["plan_id"], "ref_digest": digest(ref),
            "approver_digest": digest(by), "role": role, "destination_country": row["destination_country"],
            "kinds": row["kinds"], "outcomes": row["outcomes"], "max_subjects": row["max_subjects"],
            "valid_from": today.isoformat(), "valid_until": valid_until.isoformat()})
        conn.execute(sa.insert(export_approvals).values(**row, log_index=index))
    return row


def approvals_in_force(ws: Workspace, region: str, country: str, purpose: str, on: dt.date) -> list[dict[str, Any]]:
    ensure_tables(ws, region)
    with ws.region(region).catalog.engine.connect() as conn:
        rows = conn.execute(sa.select(export_approvals).where(
            export_approvals.c.destination_country == country, export_approvals.c.purpose == purpose,
            export_approvals.c.valid_from <= on, export_approvals.c.valid_until >= on)).all()
        used: dict[str, int] = {}
        for (subjects,) in conn.execute(sa.select(exports.c.approval_subjects)):
            for approval_id, n in (subjects or {}).items():
                used[approval_id] = used.get(approval_id, 0) + int(n)
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["remaining_subjects"] = d["max_subjects"] - used.get(d["id"], 0)
        out.append(d)
    return out


def cover(approvals: list[dict[str, Any]], kind: str, outcome: Outcome, subjects: int) -> dict[str, Any] | None:
    """The first approval in force that covers this kind, outcome and volume (and reserve the volume)."""
    for a in approvals:
        if kind in a["kinds"] and outcome.value in a["outcomes"] and a["remaining_subjects"] >= subjects:
            a["remaining_subjects"] -= subjects
            return a
    return None
