"""The rights of PIPL Arts 44-47 for one person: find their data, copy it for them, erase it.

Each is a request signed by a registered person (find and copy: compliance or auditor; erase:
compliance), logged before anything is read or removed. The region's log and catalog are verified
first, as the export gate does: a region whose catalog differs from its log is not a place to
decide what belongs to whom.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fleetgate.audit import digest
from fleetgate.audit.log import region_log
from fleetgate.audit.state import LogState, request_id
from fleetgate.domain import Role
from fleetgate.domain.clock import Clock, FixedClock
from fleetgate.gate.trust import CatalogMismatch, verify_region
from fleetgate.keys.personal import Actor
from fleetgate.people import current_state, require
from fleetgate.store import Ledger, Region
from fleetgate.store.subjects_repo import SubjectRecords
from fleetgate.subjects.footprint import DOMAINS, Footprint, SubjectError, find_footprint, seed_pseudonym
from fleetgate.subjects.removal import Removal, keep_held, resume_removal, run_removal
from fleetgate.subjects.requests import (
    Request,
    check_ref,
    earlier_request,
    log_request,
    ref_digest,
    same_person,
    sign_request,
)
from fleetgate.workspace import Workspace

COPY_FORMAT = "fleetgate-subject-copy/1"
RAW_CAMERA = {"exterior_video", "exterior_image"}


def checked_state(ws: Workspace, region: str) -> LogState:
    """The replayed log, if the catalog matches it (an unfinished erasure does not block its own rerun)."""
    verified = verify_region(ws, region, content=False)
    blocking = [f for f in verified.findings if f.table not in ("log", "erasures")]
    if blocking:
        raise CatalogMismatch(region, blocking)
    return verified.state


def erasure_id_of(request: str) -> str:
    return "er-" + request.removeprefix("dsr-")


# ---- find ------------------------------------------------------------------------------------------------
def find_subject(ws: Workspace, kind: str, value: str, ref: str, actor: Actor, region: str | None = None,
                 clock: Clock | None = None, salt: bytes | None = None) -> dict[str, Any]:
    """`fleetgate subject find`: counts and ids of everything of the person, logged as a signed request."""
    name = ws.config.region(region).name
    reg = ws.region(name)
    state = checked_state(ws, name)
    request = sign_request(reg, actor, "find", kind, value, ref, clock=clock, salt=salt)
    fp = find_footprint(reg, request.seed, request.domain, state.held_assets())
    summary = _with_recipients(ws, fp.summary())
    _close(reg, request, _counts(summary), clock)
    return {"request_id": request.request_id, "ref": request.ref, "log_index": request.index, **summary}


def _with_recipients(ws: Workspace, summary: dict[str, Any]) -> dict[str, Any]:
    for p in summary["packages"]:
        dest = ws.config.destinations.get(p["destination"])
        p["country"] = dest.country if dest else None
    return summary


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    return {"identifiers": summary["identifiers"], "assets": summary["assets"]["count"],
            "tables": len(summary["table_rows"]), "documents": len(summary["documents"]),
            "quarantine": summary["quarantine"]["count"], "packages": len(summary["packages"]),
            "ledger_rows": summary["ledger_rows"], "held": len(summary["held"])}


def _close(region: Region, request: Request, result: dict[str, Any], clock: Clock | None) -> None:
    with region.catalog.transaction() as conn:
        SubjectRecords(region.catalog).finish_request(conn, request.request_id, result, (clock or Clock()).now())


# ---- copy ------------------------------------------------------------------------------------------------
def export_subject(ws: Workspace, kind: str, value: str, ref: str, out: Path, actor: Actor,
                   region: str | None = None, clock: Clock | None = None, salt: bytes | None = None) -> dict[str, Any]:
    """`fleetgate subject export`: the person's own data as a package for them, logged."""
    name = ws.config.region(region).name
    reg = ws.region(name)
    out = Path(out)
    _check_out(ws, out)
    state = checked_state(ws, name)
    request = sign_request(reg, actor, "export", kind, value, ref, clock=clock, salt=salt)
    fp = find_footprint(reg, request.seed, request.domain, state.held_assets())
    now = (clock or Clock()).now()
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files, withheld = _copy_files(reg, fp, staging)
    decisions = _decisions(ws, reg, fp)
    (staging / "decisions.json").write_text(json.dumps(decisions, indent=2, ensure_ascii=False, default=str) + "\n",
                                            encoding="utf-8")
    manifest = {"format": COPY_FORMAT, "ref": request.ref, "request_id": request.request_id, "region": name,
                "created_at": now.isoformat(), "files": files, "withheld": withheld,
                "counts": {"files": len(files), "bytes": sum(f["bytes"] for f in files),
                           "table_rows": sum(f.get("rows", 0) for f in files)}}
    data = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
    (staging / "manifest.json").write_bytes(data)
    os.replace(staging, out)
    with reg.catalog.transaction() as conn:
        index, _ = region_log(reg).append(conn, "subject_copy", {
            "request_id": request.request_id, "files": len(files), "bytes": manifest["counts"]["bytes"],
            "withheld": len(withheld), "manifest": digest(data)}, at=now)
        SubjectRecords(reg.catalog).finish_request(conn, request.request_id, manifest["counts"], now)
    return {"request_id": request.request_id, "path": str(out), "log_index": index, **manifest["counts"],
            "withheld": withheld}


def _check_out(ws: Workspace, out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SubjectError(f"{out}: exists and is not an empty folder; choose a new folder")
    resolved = out.resolve()
    for inside in (ws.keys_root.resolve(), (ws.home / "regions").resolve()):
        if resolved == inside or inside in resolved.parents:
            raise SubjectError(f"{out}: inside the workspace's {inside.name} folder; write the copy elsewhere")
    if out.exists():
        out.rmdir()


def _file(staging: Path, rel: str, data: bytes, **meta: Any) -> dict[str, Any]:
    path = staging / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), **meta}


def _copy_files(region: Region, fp: Footprint, staging: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    files, withheld = [], []
    anonymized = {a["parent_id"]: a for a in fp.assets.values() if (a["tags"] or {}).get("anonymized")}
    tables = {aid: fp.tables[aid].keep for aid in fp.tables}
    tables |= {aid: None for aid, a in fp.assets.items() if a["file_format"] == "parquet" and not a["vehicle"]}
    for aid, keep in sorted(tables.items()):
        a = fp.catalog[aid]
        if (a["tags"] or {}).get("derived"):
            continue  # a pseudonymized copy of the same rows
        table = region.blobs.read_table(a["sha256"])
        if keep is not None:
            table = table.filter(pa.array([not k for k in keep]))
        buf = io.BytesIO()
        pq.write_table(table, buf)
        files.append(_file(staging, f"tables/{a['kind']}-{aid}.parquet", buf.getvalue(), asset_id=aid,
                           kind=a["kind"], rows=table.num_rows))
    for aid, a in sorted(fp.assets.items()):
        if not a["vehicle"] or a["parent_id"]:
            continue
        base = a["source_path"].rsplit("/", 1)[-1]
        rel = f"vehicle/{a['clip_id'] or 'vehicle'}/{base}"
        if a["kind"] in RAW_CAMERA:
            # the cameras film other people too: the copy is the de-identified one, when there is one
            anon = anonymized.get(aid)
            if anon is None:
                withheld.append({"asset_id": aid, "kind": a["kind"], "why": "shows other people; no de-identified "
                                 "copy yet (`fleetgate deid run`)"})
                continue
            files.append(_file(staging, rel, region.blobs.read_bytes(anon["sha256"]), asset_id=anon["id"],
                               kind=a["kind"], de_identified=True))
            continue
        files.append(_file(staging, rel, region.blobs.read_bytes(a["sha256"]), asset_id=aid, kind=a["kind"]))
    return files, withheld


def _decisions(ws: Workspace, region: Region, fp: Footprint) -> dict[str, Any]:
    ledger = Ledger(region.catalog)
    out = []
    for aid in sorted(fp.touched()):
        c = ledger.classification(aid)
        if c is not None:
            out.append({"asset_id": aid, "kind": fp.catalog[aid]["kind"], "policy_kind": c["policy_kind"],
                        "features": c["features"], "outcome": c["outcome"],
                        "rules": (c["decision"] or {}).get("rules"), "classified_at": c["classified_at"]})
    return {"classifications": out, "exports": _with_recipients(ws, {"packages": fp.packages})["packages"],
            "held": [{"asset_id": a, "hold": h} for a, h in sorted(fp.held.items())]}


# ---- erase -----------------------------------------------------------------------------------------------
def erase_subject(ws: Workspace, kind: str, value: str, ref: str, actor: Actor, region: str | None = None,
                  dry_run: bool = False, clock: Clock | None = None, salt: bytes | None = None) -> dict[str, Any]:
    """`fleetgate subject erase`: a preview with counts (dry run), or the erasure; a rerun resumes or is a no-op."""
    clock = FixedClock.frozen(clock)
    name = ws.config.region(region).name
    reg = ws.region(name)
    ref = check_ref(ref)
    require(current_state(reg), actor, {Role.compliance}, "erasing a person's data")
    seed = seed_pseudonym(reg.keys.pseudonym_key(), kind, value)
    records = SubjectRecords(reg.catalog)
    earlier = None if dry_run else earlier_request(reg, ref, kind, seed, "erase")
    if earlier is not None:
        erasure = records.erasure(erasure_id_of(earlier["id"]))
        if erasure is not None and erasure["status"] == "done":
            return {"status": "already erased", "erasure_id": erasure["id"], "request_id": earlier["id"],
                    "log_index": erasure["log_index"], "done_index": erasure["done_index"],
                    "finished_at": erasure["finished_at"].isoformat(), **erasure["summary"]}
        if erasure is not None:
            result = resume_removal(ws, reg, erasure, clock.now(), _on_done(reg, ref, kind, {seed: DOMAINS[kind]},
                                                                              clock.now()))
            return {"status": result.status, "erasure_id": result.erasure_id, "request_id": earlier["id"],
                    "log_index": result.log_index, "done_index": result.done_index, "receipt": result.receipt,
                    **erasure["summary"]}
    state = checked_state(ws, name)
    if earlier is not None:  # logged, then a crash before anything was removed: go on with that request
        request = Request(earlier["id"], earlier["log_index"], "erase", kind, seed, DOMAINS[kind], ref,
                          earlier["received_at"], False)
    else:
        request = log_request(reg, actor, actor.name, "erase", kind, seed, ref, dry_run, clock, salt)
    fp = find_footprint(reg, seed, DOMAINS[kind], state.held_assets())
    cause = {"type": "subject", "request_id": request.request_id, "ref_digest": ref_digest(ref)}
    removal = Removal(erasure_id_of(request.request_id), cause,
                      fp.catalog, assets=dict(fp.assets), tables=dict(fp.tables), documents=dict(fp.documents),
                      quarantine=dict(fp.quarantine), ledger_keys={r["subject_key"] for r in fp.ledger},
                      subjects=set(fp.identifiers), packages=fp.packages, models=fp.models,
                      export_plans=list(fp.export_plans))
    keep_held(removal, state.held_assets())
    preview = _with_recipients(ws, fp.summary()) | {"erase": removal.counts(),
                                                    "kept": [{"asset_id": a, "why": w}
                                                             for a, w in sorted(removal.held.items())]}
    if dry_run:
        return {"status": "preview", "request_id": request.request_id, "ref": ref, "log_index": request.index,
                **preview}
    result = run_removal(ws, reg, removal, clock.now(), _on_done(reg, ref, kind, fp.identifiers, clock.now()))
    return {"status": result.status, "erasure_id": result.erasure_id, "request_id": request.request_id,
            "ref": ref, "log_index": result.log_index, "done_index": result.done_index, "receipt": result.receipt,
            **preview}


def _on_done(region: Region, ref: str, kind: str, identifiers: dict[str, str], now: dt.datetime):
    """In the finishing transaction: close every open erase request under this ref, and wipe the salt of
    every request about this person, so no request names them any more."""
    records = SubjectRecords(region.catalog)
    kinds = {d: k for k, d in DOMAINS.items()}

    def done(conn: Any) -> None:
        for row in records.requests(conn=conn):
            if row["action"] == "erase" and row["ref"] == ref and row["status"] == "open":
                records.finish_request(conn, row["id"], {"erased": True}, now, wipe_salt=True)
            elif row["identifier_salt"] is not None and any(
                    kinds.get(domain) == row["identifier_kind"] and same_person(row, row["identifier_kind"], p)
                    for p, domain in identifiers.items()):
                records.wipe_salts(conn, [row["id"]])

    return done


__all__ = ["checked_state", "erase_subject", "erasure_id_of", "export_subject", "find_subject", "request_id"]
