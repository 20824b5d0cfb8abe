"""Legal holds: assets a compliance officer must keep (a court order, an investigation) survive erasure
and retention, and every erasure reports what a hold kept. Placing and releasing a hold are signed
statements, logged; the `legal_holds` table is rebuilt from them and checked by `audit verify`."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from fleetgate.audit.log import region_log
from fleetgate.domain import HoldStatement, Role
from fleetgate.domain.clock import Clock
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.people import current_state, require
from fleetgate.store.subjects_repo import SubjectRecords
from fleetgate.subjects.footprint import SubjectError
from fleetgate.workspace import Workspace


def place_hold(ws: Workspace, asset_ids: list[str], ref: str, reason: str, actor: Actor,
               region: str | None = None, clock: Clock | None = None) -> dict[str, Any]:
    reg = ws.region(ws.config.region(region).name)
    principal = require(current_state(reg), actor, {Role.compliance}, "placing a legal hold")
    ids = []
    for aid in asset_ids:
        asset = reg.catalog.get_asset(aid)
        if asset is None:
            raise SubjectError(f"no asset with id {aid!r}")
        ids.append(asset["id"])
    now = (clock or Clock()).now()
    hold_id = "hold-" + hashlib.sha256(os.urandom(16)).hexdigest()[:16]
    statement = HoldStatement(action="place", region=reg.name, hold_id=hold_id, asset_ids=sorted(set(ids)), ref=ref,
                              reason=reason, by=principal.name, at=now)
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.LEGAL_HOLD, actor.signer)
    with reg.catalog.transaction() as conn:
        index, _ = region_log(reg).append(conn, "legal_hold", {"hold_id": hold_id, "statement": envelope}, at=now)
        SubjectRecords(reg.catalog).add_holds(conn, [
            {"id": hold_id, "asset_id": a, "ref": ref, "reason": reason, "placed_by": principal.name,
             "placed_index": index, "released_by": None, "released_index": None} for a in statement.asset_ids])
    return {"hold_id": hold_id, "assets": statement.asset_ids, "log_index": index}


def release_hold(ws: Workspace, hold_id: str, actor: Actor, region: str | None = None,
                 clock: Clock | None = None) -> dict[str, Any]:
    reg = ws.region(ws.config.region(region).name)
    state = current_state(reg)
    principal = require(state, actor, {Role.compliance}, "releasing a legal hold")
    held = state.holds.get(hold_id)
    if held is None or held.released_index is not None:
        raise SubjectError(f"no legal hold {hold_id!r} in force")
    now = (clock or Clock()).now()
    statement = HoldStatement(action="release", region=reg.name, hold_id=hold_id, asset_ids=held.statement.asset_ids,
                              ref=held.statement.ref, by=principal.name, at=now)
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.LEGAL_HOLD, actor.signer)
    with reg.catalog.transaction() as conn:
        index, _ = region_log(reg).append(conn, "legal_hold", {"hold_id": hold_id, "statement": envelope}, at=now)
        SubjectRecords(reg.catalog).release_hold(conn, hold_id, principal.name, index)
    return {"hold_id": hold_id, "released_index": index}


def list_holds(ws: Workspace, region: str | None = None, include_released: bool = False) -> list[dict[str, Any]]:
    reg = ws.region(ws.config.region(region).name)
    return SubjectRecords(reg.catalog).holds(active_only=not include_released)
