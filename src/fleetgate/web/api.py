"""The JSON API under /api/v1: each route is a role, one service call and a typed response."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from collections.abc import Callable
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from fleetgate.errors import InvalidInputError, NotFoundError
from fleetgate.services.audit import checkpoint_view
from fleetgate.services.ingest_jobs import IngestJob, IngestJobs, JobRecord
from fleetgate.services.models import (
    ApprovalResult,
    AssetDetail,
    AssetSummary,
    CheckpointView,
    ErasureResult,
    FindResult,
    Identifier,
    LogEntryView,
    Page,
    PlanView,
    ProofView,
    QuarantineItem,
    RegionOverview,
    RunResult,
    SigningRequest,
    SubjectRequestView,
    SubjectSigningRequest,
)
from fleetgate.web.auth import AUDITORS, READERS, GuardedRoute, polling, principal_of, services_of, spooling
from fleetgate.web.errors import ApiError
from fleetgate.web.views import ON_ANY_ENTRY, ON_CATALOG, ON_CHECKPOINT, ON_ONE_ASSET, Depends, ViewCache

router = APIRouter(route_class=GuardedRoute)
# Routes that query the catalog are plain `def` (worker threads): SQLite releases the GIL while a query
# runs, so reads proceed in parallel and a writer holding the lock never stalls the event loop. The kept
# views (web/views.py) and the routes that only look at the token or the spool run on the event loop and
# go to a thread only to compute a view that changed.
FULL_ASSET_ID = re.compile(r"^as_[0-9a-f]{24}\Z")


def fast(model: BaseModel, status_code: int = 200) -> Response:
    """The model as JSON, serialized once by pydantic's core (FastAPI would validate it again against
    `response_model`, which still documents the shape in OpenAPI)."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


def views_of(request: Request) -> ViewCache:
    return request.app.state.views


async def kept(request: Request, compute: Callable[[], BaseModel], depends: Depends) -> Response:
    """The view as of this request (see web/views.py), computed on a worker thread only when it changed."""
    roles = frozenset(request.scope["route"].openapi_extra["x-roles"])
    return await views_of(request).respond(request, principal_of(request).region, compute, depends, roles)


def roles(*names: str) -> dict[str, Any]:
    """The roles a route needs, as OpenAPI documents them and `GuardedRoute` enforces them."""
    return {"x-roles": list(names)}


Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanRequest(Body):
    destination: str = Field(description="a destination of fleetgate.toml")
    purpose: str = ""
    select: str | None = Field(default=None, description="CEL over `asset`, as `export plan --select`")
    as_of: dt.date | None = None


class Signed(Body):
    envelope: dict[str, Any] = Field(description="the DSSE envelope `fleetgate sign` printed")


class Health(Body):
    status: str
    regions: list[str]


class Me(Body):
    name: str
    role: str
    region: str
    credential: str


class LogPage(Body):
    size: int
    entries: list[LogEntryView]


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    return Health(status="ok", regions=sorted(services_of(request).ws.config.regions))


@router.get("/me", response_model=Me, openapi_extra=roles(*READERS, "ingest"))
async def me(request: Request) -> Me:
    who = principal_of(request)
    return Me(name=who.name, role=who.role.value, region=who.region, credential=who.credential_id)


# -- the catalog -----------------------------------------------------------------------------------
@router.get("/overview", response_model=RegionOverview, openapi_extra=roles(*READERS))
async def overview(request: Request) -> Response:
    # it shows the log's size: every entry changes it
    return await kept(request, lambda: services_of(request).inventory.overview(principal_of(request).region),
                      ON_ANY_ENTRY)


@router.get("/assets", response_model=Page[AssetSummary], openapi_extra=roles(*READERS))
async def assets(request: Request, kind: str | None = None, outcome: str | None = None, vehicle: str | None = None,
                 drop: str | None = None, region: str | None = None, limit: Limit = 50,
                 offset: Offset = 0) -> Response:
    return await kept(request, lambda: services_of(request).inventory.assets(
        region=principal_of(request).region, kind=kind, outcome=outcome, vehicle=vehicle, drop=drop, limit=limit,
        offset=offset), ON_CATALOG)


@router.get("/assets/{asset_id}", response_model=AssetDetail, openapi_extra=roles(*READERS))
async def asset(request: Request, asset_id: str) -> Response:
    # a full id names one row; a prefix may come to name another (or none) when assets are added
    depends = ON_ONE_ASSET if FULL_ASSET_ID.match(asset_id) else ON_CATALOG
    return await kept(request, lambda: services_of(request).inventory.asset(asset_id, principal_of(request).region),
                      depends)


@router.get("/quarantine", response_model=Page[QuarantineItem], openapi_extra=roles(*READERS))
async def quarantine(request: Request, limit: Limit = 50, offset: Offset = 0) -> Response:
    return await kept(request, lambda: services_of(request).inventory.quarantine(
        region=principal_of(request).region, limit=limit, offset=offset), ON_CATALOG)


# -- ingest ----------------------------------------------------------------------------------------
@router.post("/drops", response_model=IngestJob, status_code=202,
             openapi_extra={**roles("ingest"), "x-streamed-body": True, "x-job": True,
                            "requestBody": {"required": True, "content": {"application/x-tar": {
                                "schema": {"type": "string", "format": "binary"}}}}})
async def upload_drop(request: Request, name: Annotated[str, Query(description="the drop's file name, *.tar")]
                      ) -> Response:
    """A drop as a tar stream, spooled to disk (fsynced) and queued: 202 with the job to poll at `Location`.
    The ingest worker validates, quarantines and catalogues it as `fleetgate ingest drop.tar` does. A name,
    size or archive refused from its headers is a 400 here; a full queue is a 503 with `Retry-After`."""
    services = services_of(request)
    jobs, web = services.ingest_jobs, services.ws.config.web
    job_id, who = request.state.job_id, principal_of(request)
    # Every file operation of an upload runs on the spool's threads, never on the event loop (on a disk busy
    # with other writes, even opening or writing a file can block for seconds: the kernel throttles writers),
    # in as few hops as the stream allows: each waits for Python's lock while the loop serves readers.
    out = await spooling(_open_spool, jobs, job_id, name, web.max_queued_uploads)
    written, pending = 0, bytearray()
    try:
        async for chunk in request.stream():
            written += len(chunk)
            if written > web.max_upload_mb << 20:
                raise InvalidInputError(f"{name}: larger than the upload limit (web.max_upload_mb)")
            pending += chunk
            if len(pending) >= SPOOL_WRITE:
                await spooling(out.write, bytes(pending))
                pending.clear()
        record = JobRecord(job_id=job_id, name=name, region=who.region, principal=who.name,
                           credential=who.credential_id, bytes=written, accepted_at=services.clock.now(),
                           request_log_index=getattr(request.state, "request_log_index", None))
        job = await spooling(_queue, out, bytes(pending), jobs, record)
    except BaseException:
        await spooling(_abandon, out, jobs, job_id)
        raise
    return Response(job.model_dump_json(), status_code=202, media_type="application/json",
                    headers={"Location": f"/api/v1/jobs/{job_id}"})


SPOOL_WRITE = 1 << 20  # the body goes to disk a MiB at a time


def _open_spool(jobs: IngestJobs, job_id: str, name: str, max_queued: int) -> BinaryIO:
    if jobs.queued() >= max_queued:
        raise ApiError(503, "busy", "the ingest queue is full (web.max_queued_uploads); retry later",
                       {"Retry-After": "5"})
    return open(jobs.receive(job_id, name), "wb")  # noqa: SIM115 - closed by _queue or _abandon


def _queue(out: BinaryIO, rest: bytes, jobs: IngestJobs, record: JobRecord) -> IngestJob:
    """The rest of the body written and fsynced, the file closed, the upload checked and queued."""
    out.write(rest)
    out.flush()
    os.fsync(out.fileno())
    out.close()
    return jobs.accept(record)


def _abandon(out: BinaryIO, jobs: IngestJobs, job_id: str) -> None:
    out.close()
    jobs.discard(job_id)


@router.get("/jobs/{job_id}", response_model=IngestJob, openapi_extra=roles("ingest", "admin"))
async def job(request: Request, job_id: str,
              wait: Annotated[float, Query(ge=0, le=30, description="seconds to wait for the job to finish")] = 0
              ) -> Response:
    """An upload's job: queued, running, done (with the ingest report) or failed (with why). Its uploader and
    admins see it; `wait` holds the answer until the job finishes or the time is up."""
    who, jobs = principal_of(request), services_of(request).ingest_jobs
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        view = await polling(jobs.status, job_id)  # files: off the event loop, like the upload's
        if view is None or view.region != who.region or (view.principal != who.name and who.role.value != "admin"):
            raise NotFoundError("no such job")
        if view.status in ("done", "failed") or asyncio.get_running_loop().time() >= deadline:
            return Response(view.model_dump_json(), media_type="application/json")
        await asyncio.sleep(0.05)


# -- the export gate -------------------------------------------------------------------------------
@router.get("/plans", openapi_extra=roles(*READERS))
def plans(request: Request, limit: Limit = 50, offset: Offset = 0) -> list[dict[str, Any]]:
    return services_of(request).gate.plans(principal_of(request).region, limit, offset)


@router.post("/plans", response_model=PlanView, status_code=201, openapi_extra=roles("engineer"))
def new_plan(request: Request, body: PlanRequest) -> PlanView:
    """Decide a plan; it is a draft until its author signs the statement in `sign` (`POST …/signature`)."""
    who = principal_of(request)
    return services_of(request).gate.draft(body.destination, who.name, body.select, body.purpose, who.region,
                                           body.as_of)


@router.get("/plans/{plan_id}", response_model=PlanView, openapi_extra=roles(*READERS))
def get_plan(request: Request, plan_id: str) -> PlanView:
    return services_of(request).gate.view(plan_id, principal_of(request).region)


@router.post("/plans/{plan_id}/signature", response_model=PlanView, openapi_extra=roles("engineer"))
def sign_plan(request: Request, plan_id: str, body: Signed) -> PlanView:
    """The author's envelope over the draft's statement; the plan is decided again and logged if it is the same."""
    who = principal_of(request)
    return services_of(request).gate.sign_plan(plan_id, body.envelope, who.name, who.region)


@router.get("/plans/{plan_id}/approvals/statement", response_model=SigningRequest,
            openapi_extra=roles("compliance"))
def approval_statement(request: Request, plan_id: str, ref: str, valid_until: dt.date,
                       kind: Annotated[list[str] | None, Query()] = None,
                       max_subjects: Annotated[int | None, Query(ge=0)] = None) -> SigningRequest:
    """The approval statement the caller may sign for this plan now."""
    who = principal_of(request)
    return services_of(request).gate.approval_request(plan_id, who.name, ref, valid_until, kind, max_subjects,
                                                      who.region)


@router.post("/plans/{plan_id}/approvals", response_model=ApprovalResult, status_code=201,
             openapi_extra=roles("compliance"))
def approve(request: Request, plan_id: str, body: Signed) -> ApprovalResult:
    """An approval signed by the approver's own key (the server never holds it)."""
    who = principal_of(request)
    return services_of(request).gate.submit_approval(plan_id, body.envelope, who.name, who.region)


@router.get("/plans/{plan_id}/basis/statement", response_model=SigningRequest, openapi_extra=roles("compliance"))
def basis_statement(request: Request, plan_id: str,
                    legal_basis: Annotated[str, Query(pattern=r"^[a-z_]{1,32}:.{1,128}$")],
                    pipia: Annotated[str, Query(min_length=1, max_length=128)]) -> SigningRequest:
    """The statement recording the legal basis (TYPE:REF) and PIPIA of the plan's personal information."""
    who = principal_of(request)
    basis_type, _, basis_ref = legal_basis.partition(":")
    return services_of(request).gate.basis_request(plan_id, who.name, basis_type, basis_ref, pipia, who.region)


@router.post("/plans/{plan_id}/basis", status_code=201, openapi_extra=roles("compliance"))
def record_basis(request: Request, plan_id: str, body: Signed) -> dict[str, Any]:
    """The legal basis and PIPIA, signed by a compliance officer's own key; `run` decides with them."""
    who = principal_of(request)
    return services_of(request).gate.submit_basis(plan_id, body.envelope, who.name, who.region)


@router.get("/plans/{plan_id}/run/statement", response_model=SigningRequest, openapi_extra=roles("engineer"))
def run_statement(request: Request, plan_id: str) -> SigningRequest:
    who = principal_of(request)
    return services_of(request).gate.run_request(plan_id, who.name, who.region)


@router.post("/plans/{plan_id}/run", response_model=RunResult, openapi_extra=roles("engineer"))
def run(request: Request, plan_id: str, body: Signed) -> RunResult:
    """Run a signed plan: the package id, what left and what was held."""
    who = principal_of(request)
    return services_of(request).gate.submit_run(plan_id, body.envelope, who.name, who.region)


@router.get("/exports", openapi_extra=roles(*READERS))
def exports(request: Request) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "entry"}
            for r in services_of(request).gate.exports(principal_of(request).region)]


# -- the transparency log --------------------------------------------------------------------------
@router.get("/log/checkpoint", response_model=CheckpointView, openapi_extra=roles(*AUDITORS))
async def checkpoint(request: Request) -> Response:
    # the latest signed checkpoint is a row of its own (no log entry says when one is stored or cosigned): kept
    # while that row's size and note length stay (store/changes.py reads them at every commit)
    return await kept(request, lambda: checkpoint_view(services_of(request).audit.latest_checkpoint(
        principal_of(request).region)), ON_CHECKPOINT)


@router.get("/log/entries", response_model=LogPage, openapi_extra=roles(*AUDITORS))
def entries(request: Request, start: Annotated[int | None, Query(ge=0)] = None,
            limit: Annotated[int, Query(ge=1, le=200)] = 50,
            type: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None) -> Response:
    size, page = services_of(request).audit.entries(principal_of(request).region, start=start, limit=limit,
                                                    kind=type)
    return fast(LogPage(size=size, entries=page))


@router.get("/log/proof/{index}", response_model=ProofView, openapi_extra=roles(*AUDITORS))
def proof(request: Request, index: int) -> ProofView:
    return services_of(request).audit.prove(index, principal_of(request).region)


# -- data-subject rights (PIPL Arts 44-47) ------------------------------------------------------------
# Each request is two calls: `…/statement` returns the statement to sign (the identifier HMACed under a
# fresh salt, nothing logged), the officer signs it with their own key (`fleetgate sign`) and posts the
# envelope with the identifier and the salt. The bodies name a person: their `web_request` entries keep
# the body's size, not its digest (`x-personal-body`), and the signed request is logged whole.
SEE = ("compliance", "auditor")  # find and copy (PIPL Art 45)
ERASE = ("compliance",)  # erasure (PIPL Art 47)


def personal(*names: str) -> dict[str, Any]:
    return {**roles(*names), "x-personal-body": True}


class SubjectAsk(Body):
    identifier: Identifier
    ref: str = Field(min_length=1, max_length=128, description="the request's reference (the ticket number)")


class EraseAsk(SubjectAsk):
    dry_run: bool = Field(default=False, description="a preview with counts; nothing is changed")


class SignedSubjectRequest(SubjectAsk):
    envelope: dict[str, Any] = Field(description="the DSSE envelope `fleetgate sign` printed")
    salt: str = Field(pattern=r"^[0-9a-f]{32}$", description="as the statement call returned it")


@router.post("/subjects/find/statement", response_model=SubjectSigningRequest, openapi_extra=personal(*SEE))
def find_statement(request: Request, body: SubjectAsk) -> SubjectSigningRequest:
    """The request to find everything of one person that the caller may sign now."""
    who = principal_of(request)
    return services_of(request).subjects.request_statement("find", body.identifier, body.ref, who.name,
                                                           region=who.region)


@router.post("/subjects/find", response_model=FindResult, openapi_extra=personal(*SEE))
def find(request: Request, body: SignedSubjectRequest) -> FindResult:
    """Counts and asset ids of the person's assets, table rows, quarantine, packages and ledger rows."""
    who = principal_of(request)
    return services_of(request).subjects.submit_find(body.envelope, body.identifier, body.salt, body.ref, who.name,
                                                     who.region)


@router.post("/subjects/export/statement", response_model=SubjectSigningRequest, openapi_extra=personal(*SEE))
def copy_statement(request: Request, body: SubjectAsk) -> SubjectSigningRequest:
    who = principal_of(request)
    return services_of(request).subjects.request_statement("export", body.identifier, body.ref, who.name,
                                                           region=who.region)


@router.post("/subjects/export", openapi_extra={**personal(*SEE), "responses": {"200": {"content": {
    "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}})
def copy(request: Request, body: SignedSubjectRequest) -> FileResponse:
    """The person's own data as a tar of the copy `fleetgate subject export` writes (manifest.json, their
    table rows, their vehicle's files, decisions.json); the server keeps no copy once it is sent."""
    who = principal_of(request)
    subjects = services_of(request).subjects
    result, archive = subjects.copy_archive(body.envelope, body.identifier, body.salt, body.ref, who.name,
                                            who.region)
    headers = {"X-Fleetgate-Request-Id": result.request_id, "X-Fleetgate-Log-Index": str(result.log_index),
               "X-Fleetgate-Copy": result.model_dump_json(exclude={"path"})}
    return FileResponse(archive, media_type="application/x-tar", filename=archive.name, headers=headers,
                        background=BackgroundTask(subjects.discard_copy, archive))


@router.post("/subjects/erase/statement", response_model=SubjectSigningRequest, openapi_extra=personal(*ERASE))
def erase_statement(request: Request, body: EraseAsk) -> SubjectSigningRequest:
    """The erasure request (or, with `dry_run`, its preview) the compliance officer may sign now."""
    who = principal_of(request)
    return services_of(request).subjects.request_statement("erase", body.identifier, body.ref, who.name,
                                                           body.dry_run, who.region)


@router.post("/subjects/erase", response_model=ErasureResult, openapi_extra=personal(*ERASE))
def erase(request: Request, body: SignedSubjectRequest) -> ErasureResult:
    """The preview, or the erasure; a rerun with the same ref resumes an unfinished one or reports it done."""
    who = principal_of(request)
    return services_of(request).subjects.submit_erase(body.envelope, body.identifier, body.salt, body.ref, who.name,
                                                      who.region)


@router.get("/subjects/requests", response_model=list[SubjectRequestView], openapi_extra=roles(*SEE))
def subject_requests(request: Request, all: bool = False) -> list[SubjectRequestView]:  # noqa: A002 - ?all=
    """Open requests with the day they are due (10 working days); `all=true`: every request and its counts."""
    return services_of(request).subjects.requests(principal_of(request).region, include_done=all)
