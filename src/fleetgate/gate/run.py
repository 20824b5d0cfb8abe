"""`fleetgate export run`: re-decide a signed plan, copy what may leave into a signed package, publish.

    0. Take the package's lock, verify the log and check the catalog against it (nothing is trusted
       that the log does not vouch for), and check the plan file against its logged, signed decision.
       Destination, country, exporter and purpose come from that decision and the workspace config,
       never from the file.
    1. Re-decide every item now (packs or the ledger may have changed since planning; the bytes are
       checked against their kind). Items needing a filing leave only under valid approvals of this
       very plan, in force today, from enough distinct compliance officers.
    2. Stage: copy each permitted asset's bytes to the destination's staging area (a folder's
       .staging/<package>/data, or the bucket's <package>/data/), hashing what was written; a
       mismatch with the catalog's sha256 stops the export.
    3. Commit, in one catalog transaction: the ledger subjects, the `export` log entry (with the
       runner's signed statement and a digest of the ledger rows it added) and the export record.
       A rerun after this point never counts again.
    4. Checkpoint the log, write manifest.json (signed), the export entry and its inclusion proof,
       then the PUBLISHED marker (a folder: fsync and one rename of the staging folder into place;
       a bucket: a conditional put of the marker); then log the publication. Readers only take a
       package with its marker, so a crash leaves no visible partial package; a rerun of the same
       plan finishes the same package exactly once (destination.py).

One clock reading serves the whole run: the decision date and the ledger year are the same day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetgate.audit import digest
from fleetgate.audit.check import export_row
from fleetgate.audit.facts import KEYING, Facts
from fleetgate.audit.log import region_log
from fleetgate.audit.state import LoggedDecision, LogState
from fleetgate.domain import PlanItem, Role, RunStatement, SignedPlan
from fleetgate.domain.clock import Clock, FixedClock
from fleetgate.errors import StoreError, UsageError
from fleetgate.formats.drop_layout import SAFE_SEGMENT
from fleetgate.gate.approvals import ApprovalBook
from fleetgate.gate.destination import PUBLISHED, BucketDestination, Destination, ExportRefused, FolderDestination
from fleetgate.gate.plan import RAW_CAMERA_KINDS, decide_assets, logged_decision, select_assets
from fleetgate.gate.trust import trusted_state
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.people import require
from fleetgate.policy.vocabulary import Outcome
from fleetgate.store import GateRecords, Ledger
from fleetgate.store.catalog import ConflictError
from fleetgate.workspace import Workspace

MANIFEST_FORMAT = "fleetgate-export-package/2"
COPY_THREADS = 2  # files copied and hashed at once: each copy already overlaps its own hashing

__all__ = ["ExportRefused", "ExportResult", "PUBLISHED", "list_exports", "open_destination", "run_export"]


@dataclass
class ExportResult:
    package_id: str
    path: Path | str | None  # a folder, or the package's s3:// URL
    status: str  # published | already published | nothing to export
    exported: list[dict[str, Any]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    ledger_delta: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    log_index: int | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)  # who approved what, for the report


def open_destination(ws: Workspace, name: str) -> Destination:
    """A configured destination: a folder (never overlapping the keys) or an S3-compatible bucket."""
    dest = ws.config.destinations[name]
    if dest.url.startswith("s3://"):
        return BucketDestination(name, dest.url, ws.home / ".locks" / "destinations" / name, dest.object_lock,
                                 dest.s3_endpoint_url)
    if "://" in dest.url:
        raise UsageError(f"destination '{name}': {dest.url}: a folder or an s3:// bucket")
    if dest.object_lock:
        raise UsageError(f"destination '{name}': object_lock needs an s3:// bucket, not the folder {dest.url}")
    root = Path(ws.config.resolve(dest.url))
    keys = ws.keys_root.resolve()
    if root.resolve() == keys or keys in root.resolve().parents or root.resolve() in keys.parents:
        raise ExportRefused(f"destination '{name}' overlaps the keys folder {keys}; refusing")
    return FolderDestination(name, root)


def package_id_of(plan_id: str) -> str:
    return "pkg-" + plan_id.removeprefix("plan-")


def _data_name(item: PlanItem) -> str:
    base = item.source_path.rsplit("/", 1)[-1]
    name = f"{item.asset_id}__{base}"
    return name if SAFE_SEGMENT.match(name) else item.asset_id


def _key_digests(ws: Workspace) -> set[str]:
    out = set()
    for path in ws.keys_root.rglob("*.key") if ws.keys_root.exists() else []:
        out.add(hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@dataclass
class _Run:
    """What one run works from: the logged decision, the destination and one clock reading."""

    ws: Workspace
    signed: SignedPlan
    decision: LoggedDecision
    runner: Actor
    dest: Destination
    package_id: str
    now: dt.datetime

    @property
    def region(self) -> str:
        return self.decision.statement.region

    @property
    def today(self) -> dt.date:
        return self.now.date()


def run_export(ws: Workspace, signed: SignedPlan, runner: Actor, clock: Clock | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Run a signed plan as `runner`; idempotent per plan."""
    clock = FixedClock.frozen(clock)
    dest_name = signed.plan.destination.name
    if dest_name not in ws.config.destinations:
        raise UsageError(f"the plan's destination '{dest_name}' is not configured")
    dest = open_destination(ws, dest_name)
    package_id = package_id_of(signed.plan_id)
    # One run per package at a time, across processes; the OS drops the lock if the holder dies.
    with dest.lock(package_id):
        state = trusted_state(ws, signed.plan.region)
        run = _Run(ws, signed, _check_plan(ws, state, signed, runner, dest_name), runner, dest, package_id,
                   clock.now())
        return _run_locked(run, state, on_progress)


def run_statement(decision: LoggedDecision, package_id: str, by: str, at: dt.datetime) -> RunStatement:
    """What the engineer who runs a plan signs: this plan (its logged digest), this package, now."""
    logged = decision.statement
    return RunStatement(plan_id=logged.plan_id, plan_digest=logged.plan_digest, package_id=package_id,
                        region=logged.region, by=by, at=at)


def prepare_run(ws: Workspace, signed: SignedPlan, runner: Actor, clock: Clock | None = None) -> RunStatement:
    """The run statement `runner` would sign to run `signed` now, after the checks `run_export` makes
    before copying; nothing is copied, signed or logged."""
    dest_name = signed.plan.destination.name
    if dest_name not in ws.config.destinations:
        raise UsageError(f"the plan's destination '{dest_name}' is not configured")
    open_destination(ws, dest_name)  # a bucket without the object lock asked for is refused here too
    state = trusted_state(ws, signed.plan.region)
    decision = _check_plan(ws, state, signed, runner, dest_name)
    return run_statement(decision, package_id_of(signed.plan_id), runner.name, (clock or Clock()).now())


def _check_plan(ws: Workspace, state: LogState, signed: SignedPlan, runner: Actor, dest_name: str) -> LoggedDecision:
    decision = logged_decision(state, signed)
    require(state, runner, {Role.engineer}, "running an export")
    logged = decision.statement
    dest = ws.config.destinations[dest_name]
    cfg = ws.config.region(logged.region)
    if logged.destination.name != dest_name or dest.country != logged.destination.country:
        raise ExportRefused(f"destination '{dest_name}' is country {dest.country} in fleetgate.toml; plan "
                            f"{signed.plan_id} was decided for {logged.destination.name} "
                            f"({logged.destination.country}); plan again")
    if cfg.exporter_id != logged.exporter:
        raise ExportRefused(f"region {cfg.name}'s exporter is '{cfg.exporter_id}'; plan {signed.plan_id} was decided "
                            f"for '{logged.exporter}'; plan again")
    return decision


def _location(run: _Run) -> Path | str:
    where = run.dest.location(run.package_id)
    return Path(where) if isinstance(run.dest, FolderDestination) else where


def _run_locked(run: _Run, state: LogState, on_progress: Callable[[int, int], None] | None) -> ExportResult:
    logged = state.exports.get(run.package_id)
    if run.dest.published(run.package_id):
        if logged is not None and run.package_id not in state.published:
            _record_publish(run)  # the publication happened, its log entry did not
        return ExportResult(run.package_id, _location(run), "already published")
    if logged is None:
        exported, held, approvals = _permitted(run, state)
        if not exported:
            return ExportResult(run.package_id, None, "nothing to export", [], held)
        _stage(run, exported, on_progress)
        row = _commit(run, exported, approvals, held)
    else:
        row = GateRecords(run.ws.region(run.region).catalog).export(run.package_id)
        if not run.dest.staged(run.package_id, [a["file"] for a in row["assets"]]):
            raise StoreError(f"export {run.package_id} is committed but its staged data at destination "
                             f"'{run.dest.name}' is gone; restore the destination or contact the operator")
        held, approvals = [], sorted(row["approvals"])
    _finish_package(run, state, row)
    _record_publish(run)
    return ExportResult(run.package_id, _location(run), "published", row["assets"], held, row["ledger_delta"],
                        row["bytes"], row["log_index"], _who_approved(state, approvals))


def _who_approved(state: LogState, approval_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for aid in approval_ids:
        a = state.approvals.get(aid)
        if a is not None:
            st = a.statement
            out.append({"approval_id": aid, "approver": st.approver, "ref": st.ref, "kinds": st.kinds,
                        "outcomes": st.outcomes, "valid_until": st.valid_until.isoformat(), "log_index": a.index})
    return out


def _permitted(run: _Run, state: LogState) -> tuple[list[tuple[PlanItem, list[str]]], list[dict[str, Any]], list[str]]:
    """Re-decide the plan's assets now; split them into what leaves (with its approvals) and what is held."""
    plan = run.signed.plan
    wanted = {i.asset_id for i in plan.items}
    assets = [a for a in select_assets(run.ws, run.region, None) if a["id"] in wanted]
    missing = wanted - {a["id"] for a in assets}
    if not assets:
        return [], [{"asset_id": a, "held": "no longer in the catalog"} for a in sorted(missing)], []
    basis = state.bases.get(run.signed.plan_id)
    _, rows = decide_assets(run.ws, run.region, run.decision.statement.destination.country, assets, run.today,
                            basis[1] if basis else None)
    book = ApprovalBook(state, plan_id=run.signed.plan_id, on=run.today, approvers=run.ws.config.gate.approvers)
    exported: list[tuple[PlanItem, list[str]]] = []
    held: list[dict[str, Any]] = []
    used: set[str] = set()
    for row in rows:
        outcome = Outcome(row.outcome)
        if row.blocking:
            needs = ", ".join(sorted({f"{b.requires} ({b.rule}, {b.cite})" for b in row.blocking}))
            held.append(row.model_dump() | {"held": f"blocked until recorded with `fleetgate export basis`: {needs}"})
        elif outcome in (Outcome.EXPORT_FREE, Outcome.EXPORT_FTZ_LIST):
            exported.append((row, []))
        elif outcome.needs_approval:
            cover = book.cover(row)
            if cover is None:
                needed = run.ws.config.gate.approvers.get(outcome.value, 1)
                held.append(row.model_dump() | {"held": f"needs {needed} valid approval(s) of this plan by distinct "
                                                        "compliance officers covering its kind, outcome and volume"})
            else:
                used.update(cover.approvals)
                exported.append((row, cover.approvals))
        else:
            held.append(row.model_dump() | {"held": "LOCAL_ONLY"})
    held += [{"asset_id": a, "held": "no longer in the catalog"} for a in sorted(missing)]
    return exported, held, sorted(used)


def _stage(run: _Run, exported: list[tuple[PlanItem, list[str]]],
           on_progress: Callable[[int, int], None] | None) -> None:
    forbidden = _key_digests(run.ws)
    for item, _ in exported:
        if item.sha256 in forbidden:
            raise ExportRefused(f"asset {item.asset_id}: has the bytes of a key file; refusing")
        if item.kind in RAW_CAMERA_KINDS and not item.anonymized:  # decide_assets holds these already
            raise ExportRefused(f"asset {item.asset_id}: raw camera media; refusing")
    run.dest.start(run.package_id)  # drops what an earlier attempt that never committed left
    blobs = run.ws.region(run.region).blobs
    # the largest first, a few at a time: the copies (and their hashing) of several files overlap
    order = sorted(exported, key=lambda e: -e[0].bytes)
    with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="fleetgate-export") as pool:
        futures = [pool.submit(run.dest.put_data, run.package_id, _data_name(item),
                               lambda sha=item.sha256: blobs.open(sha), item.sha256) for item, _ in order]
        for n, future in enumerate(futures, 1):
            future.result()
            if on_progress:
                on_progress(n, len(exported))


def _commit(run: _Run, exported: list[tuple[PlanItem, list[str]]], approvals: list[str],
            held: list[dict[str, Any]]) -> dict[str, Any]:
    """Ledger, log entry and export record in one transaction (retried if another export raced us)."""
    reg = run.ws.region(run.region)
    ledger, records, log = Ledger(reg.catalog), GateRecords(reg.catalog), region_log(reg)
    logged = run.decision.statement
    counted = {item.asset_id: item.counted_as for item, _ in exported if item.counted_as}
    subjects = [(key, counted[aid]) for aid in counted for key, _ in ledger.subjects_of([aid])]
    assets = [{"asset_id": item.asset_id, "sha256": item.sha256, "bytes": item.bytes, "kind": item.kind,
               "policy_kind": item.policy_kind, "outcome": item.outcome, "rules": item.rules,
               "approvals": cover, "file": _data_name(item)} for item, cover in exported]
    statement = run_statement(run.decision, run.package_id, run.runner.name, run.now)
    run_envelope = env.sign_statement(statement.model_dump(mode="json"), env.RUN, run.runner.signer)
    year = run.today.year
    for attempt in range(5):
        try:
            with reg.catalog.transaction() as conn:
                again = records.export(run.package_id, conn)
                if again is not None:
                    return again
                delta = ledger.record(conn, logged.exporter, year, run.package_id, subjects, at=run.now)
                added = ledger.rows_of_export(conn, run.package_id)
                payload = {"package_id": run.package_id, "plan_id": logged.plan_id, "plan_digest": logged.plan_digest,
                           "decision_index": run.decision.index, "region": run.region,
                           "destination": logged.destination.model_dump(), "exporter": logged.exporter,
                           "purpose": logged.purpose, "as_of": run.today.isoformat(), "year": year,
                           "assets": assets, "approvals": approvals, "packs": run.signed.plan.packs,
                           "ledger": {"exporter": logged.exporter, "year": year, "keying": KEYING,
                                      "rows": Facts.of(reg).ledger_set(added)},
                           "ledger_delta": delta, "run": run_envelope,
                           "blocked": [{"asset_id": h["asset_id"], "rules": sorted({b["rule"] for b in h["blocking"]}),
                                        "requires": sorted({b["requires"] for b in h["blocking"]})}
                                       for h in held if h.get("blocking")]}
                index, _ = log.append(conn, "export", payload, at=run.now)
                text = log.entry_text(index, conn)
                row = export_row(json.loads(text), text, None)
                records.add_export(conn, row)
                return row
        except ConflictError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _record_publish(run: _Run) -> None:
    reg = run.ws.region(run.region)
    with reg.catalog.transaction() as conn:
        index, _ = region_log(reg).append(conn, "publish", {"package_id": run.package_id,
                                                            "published_at": run.now.isoformat()}, at=run.now)
        GateRecords(reg.catalog).mark_published(conn, run.package_id, run.now, index)


def _finish_package(run: _Run, state: LogState, row: dict[str, Any]) -> None:
    reg = run.ws.region(run.region)
    log = region_log(reg)
    checkpoint = log.checkpoint()
    proof = log.prove(row["log_index"], checkpoint.size)
    logged = run.decision.statement
    manifest = {
        "format": MANIFEST_FORMAT,
        "package_id": row["package_id"],
        "plan_id": logged.plan_id,
        "plan_digest": logged.plan_digest,
        "region": run.region,
        "exporter": logged.exporter,
        "destination": logged.destination.model_dump(),
        "purpose": logged.purpose,
        "planned_by": logged.author,
        "assets": row["assets"],
        "decisions": {"as_of": run.signed.plan.as_of.isoformat(), "obligations": run.signed.plan.obligations},
        "packs": run.signed.plan.packs,
        "approvals": _who_approved(state, row["approvals"]),
        "ledger_delta": row["ledger_delta"],
        "log": {"origin": log.origin, "index": row["log_index"], "checkpoint": checkpoint.text()},
        "signing_key": {"name": log.key_name, "ed25519": reg.keys.public_key().hex()},
    }
    data = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
    run.dest.publish(run.package_id, {
        "manifest.json": data, "manifest.sig": reg.keys.sign(data).hex().encode(),
        "log_entry.json": row["entry"].encode("utf-8"), "inclusion.json": json.dumps(proof, indent=2).encode(),
        "checkpoint.txt": checkpoint.text().encode(), PUBLISHED: (digest(data) + "\n").encode()})


def list_exports(ws: Workspace, region: str | None = None) -> list[dict[str, Any]]:
    name = ws.config.region(region).name
    return GateRecords(ws.region(name).catalog).exports()
