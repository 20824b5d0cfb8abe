"""Retention: delete what the settings say has been kept long enough, the way an erasure does.

PIPL Art 47 obliges the handler to delete personal information once the retention period ends.
`[retention.raw]` and `[retention.derived]` in fleetgate.toml give days per kind (raw exterior
video 90, cabin audio 30, anonymized derivatives longer). An asset's age counts from the end of its
recording (`t_end`), or from when it landed. A run is a compliance officer's signed order, logged
with the settings it applied; what it deletes goes through `removal` (record first, then destroy,
resumable). Derived data kept longer than its raw parent stays, re-rooted: its lineage names the
deleted parent. Legal holds keep what they hold.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from fleetgate.audit.log import region_log
from fleetgate.domain import RetentionStatement, Role
from fleetgate.domain.clock import Clock, FixedClock
from fleetgate.keys import envelope as env
from fleetgate.keys.envelope import canonical_json
from fleetgate.keys.personal import Actor
from fleetgate.people import current_state, require
from fleetgate.store.subjects_repo import SubjectRecords
from fleetgate.subjects.removal import Removal, keep_held, resume_removal, run_removal
from fleetgate.subjects.rights import checked_state
from fleetgate.workspace import Workspace


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def expired(assets: list[dict[str, Any]], policy: dict[str, dict[str, int]], now: dt.datetime) -> dict[str, str]:
    """Asset id -> why, for every asset older than its kind's retention."""
    out = {}
    for a in assets:
        derived = bool(a["parent_id"]) or bool((a["tags"] or {}).get("derived"))
        part = "derived" if derived else "raw"
        days = policy[part].get(a["kind"])
        when = _aware(a["t_end"]) or _aware(a["created_at"])
        if days is not None and when is not None and now - when > dt.timedelta(days=days):
            out[a["id"]] = f"{part} {a['kind']}: kept {days} days, recorded {when.date().isoformat()}"
    return out


def run_retention(ws: Workspace, actor: Actor, region: str | None = None, dry_run: bool = False,
                  clock: Clock | None = None) -> dict[str, Any]:
    """`fleetgate retention run`: delete (or, with dry_run, list) what expired; logged either way."""
    clock = FixedClock.frozen(clock)
    now = clock.now()
    name = ws.config.region(region).name
    reg = ws.region(name)
    principal = require(current_state(reg), actor, {Role.compliance}, "running retention")
    records = SubjectRecords(reg.catalog)
    resumed = [resume_removal(ws, reg, row, now).erasure_id for row in records.erasures(status="rows_erased")
               if row["cause"] == "retention"]
    state = checked_state(ws, name)
    policy = ws.config.retention.as_dict()
    statement = RetentionStatement(region=name, policy=policy,
                                   policy_digest="sha256:" + hashlib.sha256(canonical_json(policy)).hexdigest(),
                                   as_of=now, dry_run=dry_run, by=principal.name, at=now)
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.RETENTION, actor.signer)
    catalog = {a["id"]: a for a in reg.catalog.list_assets(region=name)}
    due = expired(list(catalog.values()), policy, now)
    removal = Removal("er-ret-" + hashlib.sha256(canonical_json(envelope)).hexdigest()[:20],
                      {"type": "retention", "statement": envelope}, catalog,
                      assets={a: catalog[a] for a in due})
    keep_held(removal, state.held_assets())
    out: dict[str, Any] = {"policy": policy, "as_of": now.isoformat(), "expired": len(due),
                           "kept": [{"asset_id": a, "why": w} for a, w in sorted(removal.held.items())],
                           "assets": [{"asset_id": a, "why": due[a], "kind": catalog[a]["kind"]}
                                      for a in sorted(removal.assets)], "resumed": resumed}
    if dry_run or not removal.assets:
        with reg.catalog.transaction() as conn:
            index, _ = region_log(reg).append(conn, "retention_check", {
                "statement": envelope, "expired": sorted(removal.assets), "kept": len(removal.held)}, at=now)
        return out | {"status": "preview" if dry_run else "nothing expired", "log_index": index}
    result = run_removal(ws, reg, removal, now)
    return out | {"status": result.status, "erasure_id": result.erasure_id, "log_index": result.log_index,
                  "done_index": result.done_index, "receipt": result.receipt}
