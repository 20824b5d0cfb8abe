"""`fleetgate export run`: re-decide a plan, copy what may leave into a signed package, publish atomically.

    1. Re-decide every item now (packs or the ledger may have changed since planning). Items
       needing a filing leave only under an approval in force that covers them.
    2. Stage: copy each permitted asset's bytes to <dest>/.staging/<package>/data, hashing as it
       goes; a mismatch with the catalog's sha256 stops the export.
    3. Commit, in one catalog transaction: the ledger subjects, the `export` log entry and the
       export record. A rerun after this point never counts again.
    4. Checkpoint the log, write manifest.json (signed), the export entry and its inclusion proof,
       then the PUBLISHED marker, fsync, and rename the staging folder into place. Readers only see
       <dest>/<package> once the rename happened, so a crash leaves no visible partial package;
       a rerun of the same plan finishes the same package exactly once.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from fleetgate.audit import digest, open_log
from fleetgate.errors import FleetgateError, StoreError, UsageError
from fleetgate.formats.drop_layout import SAFE_SEGMENT
from fleetgate.gate.approvals import approvals_in_force, cover, ensure_tables
from fleetgate.gate.plan import RAW_CAMERA_KINDS, decide_assets, select_assets
from fleetgate.gate.records import exports
from fleetgate.policy.vocabulary import Outcome
from fleetgate.store import Ledger
from fleetgate.store.blobs import fsync_dir
from fleetgate.store.catalog import utcnow
from fleetgate.workspace import Workspace

PUBLISHED = "PUBLISHED"
MANIFEST_FORMAT = "fleetgate-export-package/1"
CHUNK = 4 << 20


class ExportRefused(FleetgateError):
    """The gate refused to write something (a key, raw media, a hash mismatch)."""


@dataclass
class ExportResult:
    package_id: str
    path: Path | None
    status: str  # published | already published | nothing to export
    exported: list[dict[str, Any]] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    ledger_delta: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    log_index: int | None = None


def destination_root(ws: Workspace, name: str) -> Path:
    dest = ws.config.destinations[name]
    if "://" in dest.url:
        raise UsageError(f"destination '{name}': only local folders are supported by `export run` for now "
                         f"({dest.url})")
    root = Path(ws.config.resolve(dest.url))
    keys = ws.keys_root.resolve()
    if root.resolve() == keys or keys in root.resolve().parents or root.resolve() in keys.parents:
        raise ExportRefused(f"destination '{name}' overlaps the keys folder {keys}; refusing")
    return root


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _copy_verified(ws: Workspace, region: str, item: dict[str, Any], target: Path) -> None:
    """Copy an asset's blob to `target`, hashing on the way; the hash must match the catalog's."""
    h = hashlib.sha256()
    with ws.region(region).blobs.open(item["sha256"]) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if h.hexdigest() != item["sha256"]:
        target.unlink(missing_ok=True)
        raise ExportRefused(f"{item['source_path']}: stored bytes do not match the catalog sha256; not exported")


def _data_name(item: dict[str, Any]) -> str:
    base = item["source_path"].rsplit("/", 1)[-1]
    name = f"{item['asset_id']}__{base}"
    if not SAFE_SEGMENT.match(name):
        name = item["asset_id"]
    return name


def _key_digests(ws: Workspace) -> set[str]:
    out = set()
    for path in ws.keys_root.rglob("*.key") if ws.keys_root.exists() else []:
        out.add(hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def run_export(ws: Workspace, plan: dict[str, Any], as_of: dt.date | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> ExportResult:
    """Run an export plan; idempotent per plan."""
    region, dest_name = plan["region"], plan["destination"]["name"]
    if dest_name not in ws.config.destinations:
        raise UsageError(f"the plan's destination '{dest_name}' is not configured")
    ensure_tables(ws, region)
    root = destination_root(ws, dest_name)
    package_id = "pkg-" + plan["plan_id"].removeprefix("plan-")
    (root / ".staging").mkdir(parents=True, exist_ok=True)
    # One run per package at a time, across processes; the OS drops the lock if the holder dies.
    with open(root / ".staging" / f"{package_id}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_locked(ws, plan, root, package_id, as_of, on_progress)


def _run_locked(ws: Workspace, plan: dict[str, Any], root: Path, package_id: str, as_of: dt.date | None,
                on_progress: Callable[[int, int], None] | None) -> ExportResult:
    region = plan["region"]
    final = root / package_id
    if (final / PUBLISHED).exists():
        return ExportResult(package_id, final, "already published")
    catalog = ws.region(region).catalog
    with catalog.engine.connect() as conn:
        committed = conn.execute(sa.select(exports).where(exports.c.package_id == package_id)).first()
    staging = root / ".staging" / package_id

    if committed is None:
        exported, held, approval_use = _permitted(ws, plan, as_of or dt.date.today())
        if not exported:
            return ExportResult(package_id, None, "nothing to export", [], held)
        forbidden = _key_digests(ws)
        shutil.rmtree(staging, ignore_errors=True)  # an earlier attempt that never committed
        (staging / "data").mkdir(parents=True)
        for n, item in enumerate(exported, 1):
            if item["sha256"] in forbidden:
                raise ExportRefused(f"{item['source_path']}: has the bytes of a key file; refusing")
            if item["kind"] in RAW_CAMERA_KINDS and not item["anonymized"]:  # decide_assets holds these already
                raise ExportRefused(f"{item['source_path']}: raw camera media; refusing")
            _copy_verified(ws, region, item, staging / "data" / _data_name(item))
            if on_progress:
                on_progress(n, len(exported))
        fsync_dir(staging / "data")
        committed = _commit(ws, plan, package_id, exported, approval_use, (as_of or dt.date.today()).year)
    else:
        if not (staging / "data").exists():
            raise StoreError(f"export {package_id} is committed but its staged data at {staging} is gone; "
                             "restore the destination folder or contact the operator")

    row = dict(committed._mapping) if hasattr(committed, "_mapping") else committed
    _finish_package(ws, plan, row, staging, final)
    with catalog.transaction() as conn:
        conn.execute(sa.update(exports).where(exports.c.package_id == package_id)
                     .values(status="published", published_at=utcnow()))
    return ExportResult(package_id, final, "published", row["assets"], [], row["ledger_delta"], row["bytes"],
                        row["log_index"])


def _permitted(ws: Workspace, plan: dict[str, Any], as_of: dt.date) -> tuple[list, list, dict[str, int]]:
    """Re-decide the plan's assets now; split them into what leaves and what is held, and why."""
    region = plan["region"]
    wanted = {i["asset_id"] for i in plan["items"]}
    assets = [a for a in select_assets(ws, region, None) if a["id"] in wanted]
    missing = wanted - {a["id"] for a in assets}
    _, rows = decide_assets(ws, region, plan["destination"]["country"], assets, as_of)
    approvals = approvals_in_force(ws, region, plan["destination"]["country"], plan["purpose"], as_of)
    exported, held, use = [], [], {}
    for row in rows:
        outcome = Outcome(row["outcome"])
        if outcome in (Outcome.EXPORT_FREE, Outcome.EXPORT_FTZ_LIST):
            exported.append(row)
        elif outcome.needs_approval:
            approval = cover(approvals, row["policy_kind"], outcome, row["subjects"])
            if approval is None:
                held.append(row | {"held": "needs an approval in force covering its kind, outcome and volume"})
            else:
                use[approval["id"]] = use.get(approval["id"], 0) + row["subjects"]
                exported.append(row | {"approval": approval["id"], "approval_ref": approval["ref"]})
        else:
            held.append(row | {"held": "LOCAL_ONLY"})
    held += [{"asset_id": a, "held": "no longer in the catalog"} for a in sorted(missing)]
    return exported, held, use


def _commit(ws: Workspace, plan: dict[str, Any], package_id: str, exported: list[dict[str, Any]],
            approval_use: dict[str, int], year: int) -> dict[str, Any]:
    """Ledger, log entry and export record in one transaction (retried if another export raced us)."""
    region = plan["region"]
    catalog = ws.region(region).catalog
    ledger = Ledger(catalog)
    log = open_log(ws, region)
    counted = {r["asset_id"]: r["counted_as"] for r in exported if r.get("counted_as")}
    subjects_by_asset = {aid: ledger.subjects_of([aid]) for aid in counted}
    subjects = [(key, counted[aid]) for aid, pairs in subjects_by_asset.items() for key, _ in pairs]
    assets = [{"asset_id": r["asset_id"], "sha256": r["sha256"], "bytes": r["bytes"], "kind": r["kind"],
               "policy_kind": r["policy_kind"], "outcome": r["outcome"], "rules": r["rules"],
               "approval": r.get("approval"), "file": _data_name(r)} for r in exported]
    for attempt in range(5):
        try:
            with catalog.transaction() as conn:
                again = conn.execute(sa.select(exports).where(exports.c.package_id == package_id)).first()
                if again is not None:
                    return dict(again._mapping)
                delta = ledger.record(conn, plan["exporter"], year, package_id, subjects)
                payload = {"package_id": package_id, "plan_id": plan["plan_id"],
                           "destination_country": plan["destination"]["country"],
                           "assets": [{"asset_id": a["asset_id"], "sha256": a["sha256"]} for a in assets],
                           "packs": plan["packs"], "approvals": sorted(approval_use),
                           "ledger_delta": delta, "year": year}
                index, _ = log.append(conn, "export", payload)
                entry = log.entry_text(index, conn)
                row = {"package_id": package_id, "plan_id": plan["plan_id"], "region": region,
                       "destination": plan["destination"]["name"], "status": "committed", "log_index": index,
                       "entry": entry, "assets": assets, "approvals": sorted(approval_use),
                       "approval_subjects": approval_use, "ledger_delta": delta,
                       "bytes": sum(a["bytes"] for a in assets), "created_at": utcnow(), "published_at": None}
                conn.execute(sa.insert(exports).values(**row))
                return row
        except IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _finish_package(ws: Workspace, plan: dict[str, Any], row: dict[str, Any], staging: Path, final: Path) -> None:
    region = plan["region"]
    log = open_log(ws, region)
    checkpoint = log.checkpoint()
    proof = log.prove(row["log_index"], checkpoint.size)
    keys = ws.keys(region)
    manifest = {
        "format": MANIFEST_FORMAT,
        "package_id": row["package_id"],
        "plan_id": plan["plan_id"],
        "region": region,
        "exporter": plan["exporter"],
        "destination": plan["destination"],
        "purpose": plan["purpose"],
        "assets": row["assets"],
        "decisions": {"as_of": plan["as_of"], "obligations": plan["obligations"]},
        "packs": plan["packs"],
        "approvals": [{"id": a, "subjects": n} for a, n in sorted(row["approval_subjects"].items())],
        "ledger_delta": row["ledger_delta"],
        "log": {"origin": log.origin, "index": row["log_index"], "checkpoint": checkpoint.text()},
        "signing_key": {"name": log.key_name, "ed25519": keys.public_key().hex()},
    }
    data = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
    _write(staging / "manifest.json", data)
    _write(staging / "manifest.sig", keys.sign(data).hex().encode())
    _write(staging / "log_entry.json", row["entry"].encode("utf-8"))
    _write(staging / "inclusion.json", json.dumps(proof, indent=2).encode())
    _write(staging / "checkpoint.txt", checkpoint.text().encode())
    _write(staging / PUBLISHED, (digest(data) + "\n").encode())
    fsync_dir(staging)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)  # the publication: one atomic rename
    fsync_dir(final.parent)


def list_exports(ws: Workspace, region: str | None = None) -> list[dict[str, Any]]:
    name = ws.config.region(region).name
    ensure_tables(ws, name)
    with ws.region(name).catalog.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(exports).order_by(exports.c.created_at))]


