"""The ingest pipeline: discover → validate → store → catalog, as stages over batches of rows.

Each stage is a plain function from a list of row dicts to a list of row dicts. The work stages
(validate, clip times, store) run wherever the workspace's engine puts them (`fleetgate.engine`:
in this process, or as a Ray Data stage on actors); the catalog stage commits each batch here, in
drop order, with its facts. A bad file never stops the batch: its row carries the error, its
bytes go to the quarantine, and a quarantine row says why. A rerun of a drop seen before skips,
by asset id, the files already catalogued (resume after a crash).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetgate.audit.facts import Facts, vehicle_of_path
from fleetgate.audit.log import region_log
from fleetgate.domain.clock import Clock, FixedClock
from fleetgate.engine import LocalRunner, Runner, Work
from fleetgate.errors import ExitCode, InvalidInputError, ItemError
from fleetgate.formats.drop_layout import asset_id, classify_drop_path
from fleetgate.ingest.drop import DropEntry, open_drop
from fleetgate.ingest.validate import validate_file
from fleetgate.store import Region
from fleetgate.store.blobs import CHUNK
from fleetgate.store.sealed import sealed_for

Row = dict[str, Any]
Stage = Callable[[list[Row]], list[Row]]
ProgressCallback = Callable[[int, str], None]

BATCH_SIZE = 64
STORE_WORKERS = 3


@dataclass
class IngestReport:
    """What one ingest run did."""

    run_id: str
    drop_id: str
    region: str
    files_seen: int = 0
    landed: int = 0
    already_present: int = 0
    quarantined: int = 0
    bytes_landed: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        """0 when every file landed, 3 when some were quarantined."""
        return ExitCode.PARTIAL if self.quarantined else ExitCode.OK


def _error_fields(exc: ItemError) -> dict[str, str]:
    return {"path": exc.path, "field": exc.field, "reason": exc.problem, "type": type(exc).__name__}


def rows_from_entries(entries: list[DropEntry]) -> list[Row]:
    """Turn drop entries into rows with their layout role; checks that span files happen here."""
    rows: list[Row] = []
    for entry in entries:
        row: Row = {"relpath": entry.relpath, "local_path": str(entry.local_path) if entry.local_path else None,
                    "error": _error_fields(entry.problem) if entry.problem else None, "meta": {}}
        role = classify_drop_path(entry.relpath) if entry.problem is None else None
        if entry.problem is None and role is None:
            row["error"] = {"path": entry.relpath, "field": "layout",
                            "reason": "no place for this file in drop format v1 (see docs/formats.md)",
                            "type": "ItemError"}
        row.update(kind=role.kind if role else "unknown", file_format=role.file_format if role else "unknown",
                   vehicle=role.vin if role else None, clip_id=role.clip_id if role else None, role=role)
        rows.append(row)
    _mark_duplicate_clips(rows)
    return rows


def _mark_duplicate_clips(rows: list[Row]) -> None:
    # A clip id names one recording; the same id under two vehicles means one of them is wrong and
    # we cannot tell which, so both are quarantined rather than guessed at.
    vehicles_by_clip: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["clip_id"] and row["error"] is None:
            vehicles_by_clip[row["clip_id"]].add(row["vehicle"])
    for row in rows:
        owners = vehicles_by_clip.get(row["clip_id"] or "", set())
        if len(owners) > 1 and row["error"] is None:
            others = sorted(v for v in owners if v != row["vehicle"])
            row["error"] = {"path": row["relpath"], "field": "clip_id",
                            "reason": f"duplicate clip id {row['clip_id']!r} also under vehicles/{', '.join(others)}",
                            "type": "ItemError"}


def validate_stage(rows: list[Row]) -> list[Row]:
    """Validate each row's file; a failure becomes the row's error, never an exception."""
    for row in rows:
        if row["error"] is not None or row.get("validated") or row.get("present"):
            continue
        try:
            row["meta"] = validate_file(row["relpath"], row["role"], Path(row["local_path"]))
        except ItemError as exc:
            row["error"] = _error_fields(exc)
        row["validated"] = True
    return rows


def clip_time_ranges(rows: list[Row]) -> dict[tuple[str, str], tuple[Any, Any]]:
    """Validate the clip manifests first and return each clip's time range.

    Video and audio carry no wall-clock time of their own; they take their clip's range from
    clip.json, which may sit in any batch, so manifests are checked before the batches run.
    """
    manifests = validate_stage([r for r in rows if r["kind"] == "clip_manifest"])
    return {(r["vehicle"], r["clip_id"]): (r["meta"]["t_start"], r["meta"]["t_end"])
            for r in manifests if r["error"] is None}


def make_clip_time_stage(ranges: dict[tuple[str, str], tuple[Any, Any]]) -> Stage:
    """Stage that gives files without their own time range the range of their clip."""

    def clip_time_stage(rows: list[Row]) -> list[Row]:
        for row in rows:
            span = ranges.get((row["vehicle"], row["clip_id"]))
            if row["error"] is None and span and "t_start" not in row["meta"]:
                row["meta"]["t_start"], row["meta"]["t_end"] = span
        return rows

    return clip_time_stage


def make_store_stage(region: Region, workers: int = STORE_WORKERS) -> Stage:
    """Stage that puts each row's bytes in the region: good files as blobs, bad ones in quarantine.

    Puts run on a few threads: hashing, writing and fsync all release the GIL, so one file's fsync
    overlaps the next file's copy instead of the disk and the CPU taking turns.
    """

    def put(row: Row) -> None:
        if row.get("present"):
            return  # catalogued by an earlier run: its blob is stored
        if row["local_path"] is None:
            row.update(sha256=None, bytes=None)
            return
        namespace = "quarantine" if row["error"] else "blobs"
        # a vehicle's files (and quarantined ones under its folder) are its owner's: sealed under their key
        with sealed_for(row["vehicle"] or vehicle_of_path(row["relpath"])):
            result = region.blobs.put_file(Path(row["local_path"]), namespace)
        row.update(sha256=result.sha256, bytes=result.size)

    def store_stage(rows: list[Row]) -> list[Row]:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetgate-put") as pool:
            for future in [pool.submit(put, row) for row in rows]:
                future.result()
        return rows

    return store_stage


def _utc(value: datetime | None) -> datetime | None:
    # the catalog stores UTC; a clip manifest may give local time with an offset
    return value.astimezone(UTC) if value is not None else None


def mark_present(region: Region, rows: list[Row]) -> list[Row]:
    """Resume: hash each good file and mark the rows whose asset the catalog already has, so their
    validation and storing are skipped (an asset id follows from region, path and sha256)."""
    todo = [r for r in rows if r["error"] is None and r["local_path"] is not None]
    for row in todo:
        digest, size = hashlib.sha256(), 0
        with open(row["local_path"], "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        row["candidate"] = asset_id(region.name, row["relpath"], digest.hexdigest()), digest.hexdigest(), size
    present = region.catalog.existing_asset_ids(r["candidate"][0] for r in todo)
    for row in todo:
        aid, sha, size = row.pop("candidate")
        if aid in present:
            row.update(present=True, sha256=sha, bytes=size)
    return rows


class IngestWork:
    """The work of ingest on one batch: (resume check,) validate, clip times, store. Built once where
    the rows are processed: in this process, or in a Ray actor that opens the workspace itself."""

    def __init__(self, home: str, region: str, ranges: dict, resume: bool, opened: Region | None = None) -> None:
        if opened is None:
            from fleetgate.workspace import Workspace

            opened = Workspace.open(Path(home)).region(region)
        self.region, self.resume = opened, resume
        self.stages = [validate_stage, make_clip_time_stage(ranges), make_store_stage(opened)]

    def __call__(self, rows: list[Row]) -> list[Row]:
        if self.resume:
            rows = mark_present(self.region, rows)
        for stage in self.stages:
            rows = stage(rows)
        return rows


def make_catalog_stage(region: Region, run_id: str, drop_id: str, report: IngestReport,
                       clock: Clock | None = None) -> Stage:
    """Stage that catalogs good rows (skipping assets already there) and records bad ones.

    The rows and their facts (one `ingest` log entry per batch) commit in one transaction; which
    assets are new is read inside it, under the write lock, so two ingests of one drop at once
    never insert the same asset twice."""
    log = region_log(region)
    facts = Facts.of(region)
    clock = clock or Clock()

    def catalog_stage(rows: list[Row]) -> list[Row]:
        good = [r for r in rows if r["error"] is None]
        for row in good:
            row["asset_id"] = asset_id(region.name, row["relpath"], row["sha256"])
        now = clock.now()
        bad = [
            {"region": region.name, "ingest_run": run_id, "source_drop": drop_id, "source_path": r["relpath"],
             "field": r["error"]["field"], "reason": r["error"]["reason"], "error_type": r["error"]["type"],
             "sha256": r["sha256"], "bytes": r["bytes"]}
            for r in rows if r["error"] is not None
        ]
        with region.catalog.transaction() as conn:
            present = region.catalog.existing_asset_ids((r["asset_id"] for r in good), conn)
            new_assets = [
                {"id": r["asset_id"], "kind": r["kind"], "region": region.name, "sha256": r["sha256"],
                 "bytes": r["bytes"], "file_format": r["file_format"], "vehicle": r["vehicle"],
                 "clip_id": r["clip_id"], "t_start": _utc(r["meta"].get("t_start")),
                 "t_end": _utc(r["meta"].get("t_end")), "source_drop": drop_id, "source_path": r["relpath"],
                 "parent_id": None, "ingest_run": run_id, "tags": r["meta"].get("tags", {}), "created_at": now}
                for r in good if r["asset_id"] not in present
            ]
            region.catalog.insert_assets(conn, new_assets)
            kept = region.catalog.add_quarantine(conn, bad, at=now)
            if new_assets or kept:
                log.append(conn, "ingest", {"run": run_id, "drop": drop_id, "facts": {
                    "assets": [facts.asset(a) for a in new_assets],
                    "quarantine": [facts.quarantine(q) for q in kept]}}, at=now)
        report.landed += len(new_assets)
        report.already_present += len(good) - len(new_assets)
        report.bytes_landed += sum(a["bytes"] for a in new_assets)
        report.quarantined += len(bad)
        report.problems.extend(
            {"path": r["error"]["path"], "field": r["error"]["field"], "reason": r["error"]["reason"]}
            for r in rows if r["error"] is not None
        )
        return rows

    return catalog_stage


def ingest_drop(region: Region, drop: Path, on_start: Callable[[int], None] | None = None,
                on_progress: ProgressCallback | None = None, batch_size: int = BATCH_SIZE,
                runner: Runner | None = None, home: Path | None = None, clock: Clock | None = None,
                run_id: str | None = None) -> IngestReport:
    """Ingest a drop folder or tar into a region; idempotent, and never loses a file.

    `runner` places the work (default: this process; a Ray runner needs the workspace `home` its
    actors open); one clock reading dates the whole run. `run_id` names the run; a run of that id
    started before (and interrupted) is resumed under it rather than started again."""
    clock = FixedClock.frozen(clock)
    runner = runner or LocalRunner()
    with open_drop(Path(drop)) as (drop_id, entries):
        if not entries:
            raise InvalidInputError(f"{drop}: the drop holds no files")
        resume = region.catalog.has_run_of(region.name, drop_id)
        if run_id is None or region.catalog.get_run(run_id) is None:
            run_id = region.catalog.start_run(region.name, drop_id, str(Path(drop).resolve()), clock.now(), run_id)
        # else: a run given by id that was started before (an upload's job after a crash) goes on under its id
        report = IngestReport(run_id=run_id, drop_id=drop_id, region=region.name, files_seen=len(entries))
        rows = rows_from_entries(entries)
        if on_start:
            on_start(len(rows))
        ranges = clip_time_ranges(rows)
        if runner.name != "local" and home is None:
            raise InvalidInputError("ingest on a cluster engine needs the workspace folder its workers open")
        work = Work(IngestWork, str(Path(home).resolve()) if home else "", region.name,
                    {"ranges": ranges, "resume": resume},
                    local=lambda: IngestWork("", region.name, ranges, resume, opened=region))
        commit = make_catalog_stage(region, run_id, drop_id, report, clock)
        try:
            for batch in runner.map(work, rows, batch_size):
                commit(batch)
                if on_progress:
                    on_progress(len(batch), batch[-1]["relpath"])
        except BaseException:
            _finish(region, report, "failed", clock)
            raise
        _finish(region, report, "partial" if report.quarantined else "ok", clock)
    return report


def _finish(region: Region, report: IngestReport, status: str, clock: Clock) -> None:
    with region.catalog.transaction() as conn:
        region.catalog.finish_run(conn, report.run_id, at=clock.now(), status=status, files_seen=report.files_seen,
                                  landed=report.landed, already_present=report.already_present,
                                  quarantined=report.quarantined, bytes_landed=report.bytes_landed)
