"""Removing data for good, the same way for an erased person and for expired data.

    1. prepare   tables and documents that hold others too are rewritten without the removed rows
                 (new blobs, new catalog rows with lineage in their tags); nothing is destroyed yet
    2. record    one catalog transaction: the new rows in, the old rows out (zeroed: secure_delete),
                 ledger rows of erased people turned into tombstones, the `erasure` log entry (asset
                 and quarantine ids, the new rows' facts, the ledger digests after, the packages that
                 already left and their recipients, what a legal hold kept) and the erasure record
                 with the plan of what to destroy
    3. destroy   the data keys of every removed blob and the person's subject keys (every copy of
                 their blobs, anywhere, is unreadable from here on), then the stored bytes, the
                 access-log lines that name the blobs, staged export copies, stale temporary files;
                 the catalog's and keyring's write-ahead logs are checkpointed and truncated
    4. finish    the `erasure_done` log entry with the destruction receipt (keys destroyed and
                 checked absent, blobs, bytes, files), the record marked done

A crash before 2 leaves nothing destroyed (a rerun prepares the same blobs again: they deduplicate);
2 is atomic; a rerun after 2 finds the record and does 3 and 4 from its plan, so an erasure is
logged, destroyed and finished exactly once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fleetgate.audit.facts import Facts, vehicle_of_path
from fleetgate.audit.log import region_log
from fleetgate.formats.drop_layout import asset_id
from fleetgate.store import PlanRepository, Region
from fleetgate.store.blobs import fsync_dir
from fleetgate.store.keyring import Keyring
from fleetgate.store.subjects_repo import SubjectRecords
from fleetgate.subjects.drops import scrub_documents, scrub_drops
from fleetgate.subjects.footprint import TableRows, strip_document
from fleetgate.workspace import Workspace

STALE_TMP_S = 600  # temporary files of a put older than this are leftovers of a crash


@dataclass
class Removal:
    """What one erasure removes; built from a person's footprint or from the retention settings."""

    erasure_id: str
    cause: dict[str, Any]
    catalog: dict[str, dict[str, Any]]
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # removed whole
    tables: dict[str, TableRows] = field(default_factory=dict)  # rewritten without some rows
    documents: dict[str, tuple[int, set[str]]] = field(default_factory=dict)  # rewritten without some entries
    quarantine: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger_keys: set[str] = field(default_factory=set)  # people to turn into tombstones in the ledger
    subjects: set[str] = field(default_factory=set)  # pseudonyms whose subject keys are destroyed
    packages: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # kept: asset id -> hold id (or why)
    models: list[str] = field(default_factory=list)
    export_plans: list[str] = field(default_factory=list)  # plans made over HTTP that list the person's files

    def counts(self) -> dict[str, int]:
        return {"assets": len(self.assets), "tables_rewritten": len(self.tables),
                "rows_removed": sum(t.rows for t in self.tables.values()),
                "documents_rewritten": len(self.documents), "quarantine": len(self.quarantine),
                "ledger_rows": len(self.ledger_keys), "packages_left": len(self.packages), "held": len(self.held),
                "export_plans_withdrawn": len(self.export_plans)}


@dataclass
class RemovalResult:
    erasure_id: str
    status: str  # erased | resumed | already erased
    log_index: int | None
    done_index: int | None
    counts: dict[str, Any]
    receipt: dict[str, Any]


def keep_held(removal: Removal, held: dict[str, str]) -> None:
    """Held assets stay, and so does every asset a held one derives from (its lineage must stand)."""
    keep = {a: h for a, h in held.items() if a in removal.assets or a in removal.tables or a in removal.documents}
    for aid in list(keep):
        parent = removal.catalog.get(aid, {}).get("parent_id")
        while parent:
            keep.setdefault(parent, f"a held asset ({aid}) derives from it")
            parent = removal.catalog.get(parent, {}).get("parent_id")
    for aid, why in keep.items():
        if removal.assets.pop(aid, None) is not None or removal.tables.pop(aid, None) is not None \
                or removal.documents.pop(aid, None) is not None:
            removal.held[aid] = why


# ---- 1. prepare ----------------------------------------------------------------------------------------
def _depth(catalog: dict[str, dict[str, Any]], aid: str) -> int:
    depth, parent = 0, catalog[aid]["parent_id"]
    while parent and parent in catalog:
        depth, parent = depth + 1, catalog[parent]["parent_id"]
    return depth


def _replacement(region: str, old: dict[str, Any], sha: str, size: int, parent: str | None, erasure_id: str,
                 now: dt.datetime, extra: dict[str, Any]) -> dict[str, Any]:
    tags = dict(old["tags"] or {}) | {"erasure": erasure_id, **extra}
    if old["ingest_run"] and not tags.get("derived"):
        new_id = asset_id(region, old["source_path"], sha)  # an ingested file's id follows from path and bytes
    else:
        new_id = "as_" + hashlib.sha256(f"{region}\0rewrite\0{old['id']}\0{sha}".encode()).hexdigest()[:24]
    return old | {"id": new_id, "sha256": sha, "bytes": size, "parent_id": parent, "tags": tags, "created_at": now}


def prepare(region: Region, removal: Removal, now: dt.datetime) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """New rows for rewritten tables and documents and for survivors whose parent goes (parents first)."""
    catalog = removal.catalog
    replaced: dict[str, str] = {}
    new_rows: list[dict[str, Any]] = []
    removed = set(removal.assets)
    changing = set(removal.tables) | set(removal.documents)
    survivors = [a for a in catalog if a not in removed and a not in changing
                 and catalog[a]["parent_id"] in removed | changing]
    for aid in sorted(changing | set(survivors), key=lambda a: _depth(catalog, a)):
        old = catalog[aid]
        parent = old["parent_id"]
        new_parent = replaced.get(parent) if parent else None
        extra: dict[str, Any] = {"rewritten_from": aid}
        if parent and new_parent is None:
            extra["parent_erased"] = parent
        if aid in removal.tables:
            table = region.blobs.read_table(old["sha256"]).filter(pa.array(removal.tables[aid].keep))
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd")
            put = region.blobs.put_bytes(buf.getvalue())  # a table of many people: sealed under its own key
            sha, size = put.sha256, put.size
        elif aid in removal.documents:
            doc = json.loads(region.blobs.read_bytes(old["sha256"]))
            stripped, _ = strip_document(doc, removal.documents[aid][1])
            put = region.blobs.put_bytes((json.dumps(stripped, ensure_ascii=False, indent=2, sort_keys=True)
                                          + "\n").encode("utf-8"))
            sha, size = put.sha256, put.size
        else:  # survives its parent (retention keeps derived data longer): same bytes, re-rooted
            sha, size = old["sha256"], old["bytes"]
            extra = {"rerooted_from": aid} | ({"parent_erased": parent} if new_parent is None else {})
        if "parent_sha256" in (old["tags"] or {}) and new_parent is not None:
            extra["parent_sha256"] = next(r["sha256"] for r in new_rows if r["id"] == new_parent)
        row = _replacement(region.name, old, sha, size, new_parent, removal.erasure_id, now, extra)
        replaced[aid] = row["id"]
        new_rows.append(row)
    return new_rows, replaced


# ---- 2. record -----------------------------------------------------------------------------------------
def _refs(row: dict[str, Any]) -> set[tuple[str, str]]:
    refs = {("blobs", row["sha256"])}
    sidecar = (row["tags"] or {}).get("sidecar_sha256")
    if sidecar:
        refs.add(("blobs", sidecar))
    return refs


def _holder(ring: Keyring, vin: str | None) -> str | None:
    """The subject key a row's blobs are sealed under: its vehicle owner's (see `sealed_for`)."""
    return ring.subject_kid(ring.vehicle_pseudonym(vin)) if vin else None  # None also when it has no key


def destruction_plan(region: Region, removal: Removal, new_rows: list[dict[str, Any]],
                     replaced: dict[str, str]) -> dict[str, Any]:
    """The blobs, keys and files to destroy: every sealed copy only the removed rows used.

    A copy is (plaintext, holder): the same bytes of two vehicles are two copies under two keys, and
    a surviving row keeps only the copy sealed for its own vehicle."""
    blobs = region.blobs
    ring: Keyring = blobs.keyring
    gone = set(removal.assets) | set(replaced)
    doomed: set[tuple[str, str]] = set()
    for aid in gone:
        doomed |= _refs(removal.catalog[aid])
    doomed |= {("quarantine", q["sha256"]) for q in removal.quarantine.values() if q["sha256"]}
    alive: set[tuple[str, str, str | None]] = set()  # (namespace, sha256, holder)
    holders: dict[str | None, str | None] = {None: None}

    def holder(vin: str | None) -> str | None:
        if vin not in holders:
            holders[vin] = _holder(ring, vin)
        return holders[vin]

    for row in [r for aid, r in removal.catalog.items() if aid not in gone] + new_rows:
        alive |= {(ns, sha, holder(row["vehicle"])) for ns, sha in _refs(row)}
    for q in region.catalog.list_quarantine(region=region.name):
        if q["id"] not in removal.quarantine and q["sha256"]:
            alive.add(("quarantine", q["sha256"], holder(vehicle_of_path(q["source_path"]))))
    alive_refs = {(ns, sha) for ns, sha, _ in alive}
    protected = {holder for _, _, holder in alive if holder}
    subject_kids = sorted({kid for kid, _ in ring.subject_keys(sorted(removal.subjects), create=False).values()}
                          - protected)
    plan_blobs, kids = [], set(subject_kids)
    for ns, sha in sorted(doomed):
        copies = [c for c in blobs.copies(sha, ns) if (ns, sha, c.holder) not in alive]
        kids |= {c.kid for c in copies}
        plan_blobs.append({"namespace": ns, "sha256": sha, "stored": sorted({c.stored_as for c in copies
                                                                             if c.stored_as}),
                           "plain": (ns, sha) not in alive_refs})  # a blob stored before sealing, if any
    for kid in subject_kids:  # what else their key seals (copies no row names any more) goes with it
        for key in ring.keys_held_by(kid):
            if key.stored_as:
                plan_blobs.append({"namespace": key.namespace, "sha256": key.sha256, "stored": [key.stored_as],
                                   "plain": False})
    plan = {"blobs": plan_blobs, "keys": sorted(kids), "subject_keys": len(subject_kids),
            "assets": sorted(gone), "quarantine": sorted(removal.quarantine)}
    if removal.subjects:  # a person: the drops ingest read from are scrubbed too (wiped with the plan when done)
        plan["drops"] = {"paths": sorted({r["drop_path"] for r in region.catalog.list_runs(region.name)}),
                         "pseudonyms": sorted(removal.subjects)}
    return plan


def record(ws: Workspace, region: Region, removal: Removal, new_rows: list[dict[str, Any]],
           replaced: dict[str, str], plan: dict[str, Any], now: dt.datetime) -> int:
    """Step 2: the rows, the log entry and the erasure record in one transaction; returns the entry's index."""
    records = SubjectRecords(region.catalog)
    facts = Facts.of(region)
    summary = {"counts": removal.counts(), "packages": _recipients(ws, removal.packages),
               "held": [{"asset_id": a, "why": h} for a, h in sorted(removal.held.items())],
               "models": removal.models, "rewritten": replaced}
    with region.catalog.transaction() as conn:
        records.secure_delete(conn)
        records.remove_assets(conn, plan["assets"])  # first: a re-rooted row keeps its path and bytes
        region.catalog.insert_assets(conn, new_rows)
        records.remove_quarantine(conn, plan["quarantine"])
        PlanRepository(region.catalog).remove(conn, removal.export_plans)  # the decisions stay in the log
        changed = records.tombstone_ledger(conn, removal.ledger_keys)
        ledger = {pkg: facts.ledger_set(records.ledger_rows_of(conn, pkg)) for pkg in changed}
        entry = {"erasure_id": removal.erasure_id, "cause": removal.cause, "counts": summary["counts"],
                 "assets": plan["assets"], "quarantine": plan["quarantine"],
                 "facts": {"assets": [facts.asset(r) for r in new_rows]}, "rewritten": replaced,
                 "ledger": ledger, "packages": summary["packages"], "held": summary["held"],
                 "models": removal.models, "export_plans": removal.export_plans,
                 "keys": {"blob": len(plan["keys"]) - plan["subject_keys"], "subject": plan["subject_keys"]}}
        index, _ = region_log(region).append(conn, "erasure", entry, at=now)
        records.add_erasure(conn, {"id": removal.erasure_id, "cause": removal.cause["type"],
                                   "request_id": removal.cause.get("request_id"), "status": "rows_erased",
                                   "log_index": index, "plan": plan, "summary": summary, "created_at": now})
    records.scrub_wal()
    return index


def _recipients(ws: Workspace, packages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Packages that already left, with who received them (PIPL Art 23: recipients are told to delete)."""
    out = []
    for p in packages:
        dest = ws.config.destinations.get(p["destination"])
        out.append(p | {"recipient": {"destination": p["destination"], "country": dest.country if dest else None,
                                      "url": dest.url if dest else None}})
    return out


# ---- 3. destroy ----------------------------------------------------------------------------------------
def destroy(ws: Workspace, region: Region, plan: dict[str, Any]) -> dict[str, Any]:
    """Step 3, from the recorded plan; every step may run again."""
    blobs = region.blobs
    ring: Keyring = blobs.keyring
    ring.destroy(plan["keys"])
    left = ring.present(plan["keys"])
    if left:
        raise RuntimeError(f"keyring {ring.path}: {len(left)} key(s) still present after destruction")
    files = removed_bytes = 0
    for b in plan["blobs"]:
        for key in [*b["stored"], *([b["sha256"]] if b.get("plain") else [])]:
            size = blobs.stored_size(key, b["namespace"])
            if blobs.remove_stored(key, b["namespace"]):
                files += 1
                removed_bytes += size
    shas = {b["sha256"] for b in plan["blobs"]}
    lines = _scrub_access_log(ws.access_log(region.name), shas)
    staged = _scrub_staging(ws, set(plan["assets"]))
    drops = plan.get("drops")
    uploads = None
    if drops:
        key = region.keys.pseudonym_key()
        uploads = scrub_drops(ws.home, drops["paths"], set(drops["pseudonyms"]), key)
        uploads["documents"] = scrub_documents(ws.home, set(drops["pseudonyms"]), key)
    stale = _scrub_tmp(blobs.temporary_folder())
    ring.checkpoint()
    SubjectRecords(region.catalog).scrub_wal()
    return {"keys_destroyed": plan["keys"], "keys_absent": True, "blobs": len(plan["blobs"]), "files": files,
            "bytes": removed_bytes, "access_log_lines": lines, "staging_files": staged, "stale_tmp_files": stale,
            **({"drops": uploads} if uploads is not None else {})}


def _scrub_access_log(path: Path, shas: set[str]) -> int:
    """Drop the access-log lines that name a destroyed blob.

    Readers in other processes append to the log without a lock, so lines that arrive while it is
    rewritten are read again just before the rename (the window left is one rename long)."""
    if not path.is_file() or not shas:
        return 0
    kept: list[str] = []
    dropped = 0
    done = 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    while True:
        with open(path, "rb") as fh:
            fh.seek(done)
            tail = fh.read()
        complete = tail[: tail.rfind(b"\n") + 1]  # a line still being written waits for the next pass
        if not complete:  # nothing new, or a last line without its newline (a reader that died): keep it
            kept.append(tail.decode("utf-8", errors="replace"))
            break
        done += len(complete)
        for line in complete.decode("utf-8").splitlines(keepends=True):
            try:
                named = json.loads(line).get("blob")
            except ValueError:
                named = None
            if named in shas:
                dropped += 1
            else:
                kept.append(line)
        if len(complete) == len(tail):
            with open(path, "rb") as fh:
                if fh.seek(0, os.SEEK_END) == done:
                    break
    if dropped:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(kept)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    return dropped


def _scrub_staging(ws: Workspace, asset_ids: set[str]) -> int:
    """Staged export copies of removed assets (an export that never committed)."""
    removed = 0
    for dest in ws.config.destinations.values():
        if "://" in dest.url:
            continue
        staging = Path(ws.config.resolve(dest.url)) / ".staging"
        for data in staging.glob("*/data") if staging.is_dir() else []:
            for f in data.iterdir():
                if f.name.split("__", 1)[0] in asset_ids:
                    f.unlink(missing_ok=True)
                    removed += 1
    return removed


def _scrub_tmp(tmp: Path | None) -> int:
    """Leftovers of puts that crashed (they may hold anyone's bytes)."""
    if tmp is None or not tmp.is_dir():
        return 0
    removed = 0
    cutoff = time.time() - STALE_TMP_S
    for f in tmp.iterdir():
        try:
            if f.is_file() and f.stat().st_mtime < cutoff:
                f.unlink()
                removed += 1
        except OSError:
            continue
    return removed


# ---- 4. finish -----------------------------------------------------------------------------------------
def finish(region: Region, erasure_id: str, receipt: dict[str, Any], now: dt.datetime,
           on_done: Any = None) -> int:
    records = SubjectRecords(region.catalog)
    with region.catalog.transaction() as conn:
        index, _ = region_log(region).append(conn, "erasure_done", {"erasure_id": erasure_id, **receipt}, at=now)
        records.finish_erasure(conn, erasure_id, index, now)
        if on_done is not None:
            on_done(conn)
    records.scrub_wal()
    return index


def run_removal(ws: Workspace, region: Region, removal: Removal, now: dt.datetime,
                on_done: Any = None) -> RemovalResult:
    """Steps 1 to 4 for a new erasure."""
    new_rows, replaced = prepare(region, removal, now)
    plan = destruction_plan(region, removal, new_rows, replaced)
    index = record(ws, region, removal, new_rows, replaced, plan, now)
    receipt = destroy(ws, region, plan)
    done = finish(region, removal.erasure_id, receipt, now, on_done)
    return RemovalResult(removal.erasure_id, "erased", index, done, removal.counts(), receipt)


def resume_removal(ws: Workspace, region: Region, row: dict[str, Any], now: dt.datetime,
                   on_done: Any = None) -> RemovalResult:
    """Steps 3 and 4 of an erasure whose record exists (a crash came after step 2)."""
    receipt = destroy(ws, region, row["plan"])
    done = finish(region, row["id"], receipt, now, on_done)
    return RemovalResult(row["id"], "resumed", row["log_index"], done, row["summary"]["counts"], receipt)
