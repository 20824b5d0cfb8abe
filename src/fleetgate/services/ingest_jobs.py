"""Uploaded drops as jobs: the API spools an upload durably and answers at once; a worker process ingests it.

    <home>/uploads/incoming/<job>/   an upload being received: never acknowledged, removed when the server starts
    <home>/uploads/queue/<job>/      accepted: `job.json` and the drop, both fsynced, then renamed in (one step)
    <home>/uploads/done/<job>.json   the outcome: the ingest report, or why it failed (kept 30 days)
    <home>/uploads/kept/<job>/       a job that failed for a reason that was not the drop's, kept for an operator

The job id is the ingest run's id, so each accepted drop is ingested once however often the worker
stops: a job whose run committed but whose outcome was never written (the worker died in between)
is answered from the run's row, not ingested again; a run interrupted half-way goes on under its id
(assets already catalogued are skipped by their ids). The `web_request` log entry of the upload
names the job, and the run's `ingest` entries name it as their run: the log links who uploaded
to what landed. Only one worker drains a spool at a time (an exclusive lock on `worker.lock`).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from fleetgate.errors import FleetgateError, InvalidInputError, UsageError
from fleetgate.formats.drop_layout import SAFE_SEGMENT
from fleetgate.ingest.pipeline import IngestReport
from fleetgate.services.base import Service
from fleetgate.services.ingest import Ingest
from fleetgate.services.models import IngestResult, Model
from fleetgate.store import Catalog
from fleetgate.store.blobs import fsync_dir, write_durably

log = logging.getLogger("fleetgate.ingest")

JOB_ID = re.compile(r"^job_[0-9a-f]{20}\Z")
UPLOAD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MAX_ATTEMPTS = 3  # a job that stopped its worker this often (not the drop's fault) is kept, not retried forever
KEEP_OUTCOMES_DAYS = 30
REPORT_FIELDS = ("run_id", "drop_id", "region", "files_seen", "landed", "already_present", "quarantined",
                 "bytes_landed", "problems")


class JobRecord(Model):
    """`job.json`: what the server knew when it accepted the upload."""

    job_id: str
    name: str
    region: str
    principal: str
    credential: str
    request_log_index: int | None
    accepted_at: dt.datetime
    bytes: int


class IngestJob(Model):
    """An upload's job as `GET /api/v1/jobs/{id}` shows it."""

    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    name: str
    region: str
    principal: str
    accepted_at: dt.datetime
    finished_at: dt.datetime | None = None
    attempts: int = 0
    report: IngestResult | None = None
    error: str | None = None
    request_log_index: int | None = None


def new_job_id() -> str:
    """Time-ordered (the worker takes jobs oldest first) and unguessable."""
    return f"job_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


class IngestJobs(Service):
    """The spool of uploaded drops: accepting, looking up, and (in the worker) ingesting them."""

    @property
    def root(self) -> Path:
        return self.ws.home / "uploads"

    @functools.cached_property
    def ingest(self) -> Ingest:
        return Ingest(self.ws, self.clock)

    def _folder(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- the server's side ----------------------------------------------------------------------------
    def receive(self, job_id: str, name: str) -> Path:
        """Where to write the upload called `name` (a .tar) while it arrives."""
        if not SAFE_SEGMENT.match(name) or not name.endswith(UPLOAD_SUFFIXES):
            raise InvalidInputError(f"drop name {ascii(name)[1:-1]!r}: letters, digits, '.', '_' or '-', "
                                    "ending in .tar, .tar.gz or .tgz")
        folder = self._folder("incoming") / job_id
        folder.mkdir()
        return folder / name

    def accept(self, record: JobRecord) -> IngestJob:
        """Check a received upload from its headers and queue it; once this returns, a crash loses nothing."""
        folder = self.root / "incoming" / record.job_id
        try:
            self.ingest.check_upload(folder / record.name, record.name, self.ws.config.web.max_upload_mb << 20)
            # written in place: the folder is nobody's until the rename below makes it a job, all at once
            with open(folder / "job.json", "wb") as out:
                out.write(record.model_dump_json().encode())
                out.flush()
                os.fsync(out.fileno())
            fsync_dir(folder)
            queue = self._folder("queue")
            os.rename(folder, queue / record.job_id)
            fsync_dir(queue)
        except BaseException:
            self.discard(record.job_id)
            raise
        return _view(record, "queued")

    def discard(self, job_id: str) -> None:
        """Remove an upload that was not accepted (too large, refused, the client went away)."""
        shutil.rmtree(self.root / "incoming" / job_id, ignore_errors=True)

    def clear_incoming(self) -> None:
        """Uploads a stopped server was still receiving: never acknowledged, so nobody waits for them."""
        shutil.rmtree(self.root / "incoming", ignore_errors=True)

    def queued(self) -> int:
        """How many accepted jobs wait for the worker."""
        try:
            return sum(1 for e in os.scandir(self.root / "queue") if JOB_ID.match(e.name))
        except FileNotFoundError:
            return 0

    def status(self, job_id: str) -> IngestJob | None:
        if not JOB_ID.match(job_id):
            return None
        done = self.root / "done" / f"{job_id}.json"
        try:
            return IngestJob.model_validate_json(done.read_bytes())
        except FileNotFoundError:
            pass
        folder = self.root / "queue" / job_id
        try:
            record = JobRecord.model_validate_json((folder / "job.json").read_bytes())
        except FileNotFoundError:  # finished between the two looks, or no such job
            return IngestJob.model_validate_json(done.read_bytes()) if done.exists() else None
        attempts = _attempts(folder)
        return _view(record, "running" if attempts else "queued", attempts=attempts)

    # -- the worker's side ----------------------------------------------------------------------------
    def pending(self) -> list[Path]:
        """Queued jobs, oldest first."""
        try:
            return sorted(Path(e.path) for e in os.scandir(self.root / "queue") if JOB_ID.match(e.name))
        except FileNotFoundError:
            return []

    @contextmanager
    def worker_lock(self, wait: bool = True) -> Iterator[bool]:
        """The spool's one worker: yields True while this process holds the lock (False if `wait` is off and
        another worker has it)."""
        with open(self._folder(".") / "worker.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def drain(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Ingest every queued job (the worker holds the lock); returns how many finished."""
        finished = 0
        for folder in self.pending():
            if stop():
                break
            finished += self.work(folder)
        return finished

    def work(self, folder: Path) -> bool:
        """One job: ingest it (or find it ingested), write its outcome, remove it from the queue. False when it
        failed for a reason that may pass (the store unavailable): it stays queued for the next round."""
        record = JobRecord.model_validate_json((folder / "job.json").read_bytes())
        attempt = _attempts(folder) + 1
        # not synced: a count lost with the machine only gives a job that keeps failing one try more
        (folder / "attempts").write_text(str(attempt))
        try:
            outcome = self._ingest(folder, record, attempt)
        except (InvalidInputError, UsageError) as exc:  # the drop's own fault: final, as a 400 would be
            outcome = self._failed(record, attempt, exc.message)
        except (FleetgateError, OSError) as exc:
            log.warning("job %s: attempt %d failed: %s", record.job_id, attempt, exc)
            if attempt < MAX_ATTEMPTS:
                return False
            outcome = self._kept(folder, record, attempt, str(exc).splitlines()[0])
        self._settle(folder, record, outcome)
        return True

    def _ingest(self, folder: Path, record: JobRecord, attempt: int) -> IngestJob:
        catalog = self.region(record.region).catalog
        run = catalog.get_run(record.job_id)
        if run is not None and run["finished_at"] is not None and run["status"] in ("ok", "partial"):
            report = _recovered(run, catalog)  # committed before the outcome was written: not again
        else:
            report = _resumed(self.ingest.uploaded(folder / record.name, record.region, run_id=record.job_id),
                              catalog, attempt)
        return _view(record, "done", attempts=attempt, finished_at=self.clock.now(),
                     report=report.model_copy(update={"request_log_index": record.request_log_index}))

    def _failed(self, record: JobRecord, attempt: int, why: str) -> IngestJob:
        return _view(record, "failed", attempts=attempt, finished_at=self.clock.now(), error=why)

    def _kept(self, folder: Path, record: JobRecord, attempt: int, why: str) -> IngestJob:
        """Move a job that keeps failing aside with its drop: never dropped, and no longer in the worker's way."""
        kept = self._folder("kept")
        os.rename(folder, kept / record.job_id)
        fsync_dir(kept)
        log.error("job %s: failed %d times, kept in %s: %s", record.job_id, attempt, kept / record.job_id, why)
        return self._failed(record, attempt, f"{why} (kept for an operator as uploads/kept/{record.job_id})")

    def _settle(self, folder: Path, record: JobRecord, outcome: IngestJob) -> None:
        """The outcome first (durably), then the queue entry: a crash in between leaves a job whose run is
        finished, which the next round answers from the catalog."""
        write_durably(self._folder("done") / f"{record.job_id}.json", outcome.model_dump_json().encode())
        shutil.rmtree(folder, ignore_errors=True)

    def prune(self, days: int = KEEP_OUTCOMES_DAYS) -> int:
        """Forget outcomes older than `days` (a client polls its job within minutes, not months)."""
        horizon, removed = time.time() - days * 86400, 0
        for entry in os.scandir(self._folder("done")):
            if entry.name.endswith(".json") and entry.stat().st_mtime < horizon:
                os.unlink(entry.path)
                removed += 1
        return removed

    def watch(self, stop: Callable[[], bool], idle_s: float = 0.05, retry_s: float = 2.0) -> None:
        """The worker's loop: drain, then look again every `idle_s` until `stop()`; a job that failed for a
        passing reason is tried again after `retry_s`."""
        self.prune()
        while not stop():
            before = len(self.pending())
            finished = self.drain(stop)
            if before and finished < before:
                time.sleep(retry_s)
            elif not finished:
                time.sleep(idle_s)


def _attempts(folder: Path) -> int:
    try:
        return int((folder / "attempts").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _as_result(report: IngestReport) -> IngestResult:
    return IngestResult(**{k: getattr(report, k) for k in REPORT_FIELDS})


def _view(record: JobRecord, status: str, **fields: object) -> IngestJob:
    return IngestJob(job_id=record.job_id, status=status, name=record.name, region=record.region,
                     principal=record.principal, accepted_at=record.accepted_at,
                     request_log_index=record.request_log_index, **fields)


def _resumed(report: IngestReport, catalog: Catalog, attempt: int) -> IngestResult:
    """The report of the attempt that finished; after an interrupted one, what the run landed over all its
    attempts (the assets an earlier attempt catalogued were not `already_present` before the upload)."""
    result = _as_result(report)
    if attempt == 1:
        return result
    landed, size = catalog.run_landed(report.run_id)
    good = report.landed + report.already_present
    return result.model_copy(update={"landed": landed, "bytes_landed": size, "already_present": max(0, good - landed)})


def _recovered(run: dict, catalog: Catalog) -> IngestResult:
    """The report of a run that finished before its outcome could be written, from the catalog."""
    landed, size = catalog.run_landed(run["id"])
    return IngestResult(run_id=run["id"], drop_id=run["source_drop"], region=run["region"],
                        files_seen=run["files_seen"], landed=landed,
                        already_present=max(0, run["landed"] + run["already_present"] - landed),
                        quarantined=run["quarantined"], bytes_landed=size,
                        problems=[{"path": q["source_path"], "field": q["field"], "reason": q["reason"]}
                                  for q in catalog.run_quarantine(run["id"])])
