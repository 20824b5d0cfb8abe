"""Typed results of the services: what the CLI renders and the HTTP API returns (and documents in OpenAPI)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(Model, Generic[T]):
    total: int
    offset: int
    limit: int
    items: list[T]


class AssetSummary(Model):
    id: str
    kind: str
    region: str
    sha256: str
    bytes: int
    file_format: str
    vehicle: str | None = None
    clip_id: str | None = None
    t_start: dt.datetime | None = None
    t_end: dt.datetime | None = None
    source_drop: str | None = None
    source_path: str
    parent_id: str | None = None
    created_at: dt.datetime
    outcome: str | None = None
    policy_kind: str | None = None
    anonymized: bool | None = None


class RuleCitation(Model):
    rule: str
    pack: str | None = None
    title: str | None = None
    citation: str | None = None
    url: str | None = None


class AssetDetail(Model):
    asset: AssetSummary
    tags: dict[str, Any]
    classification: dict[str, Any] | None
    decision: dict[str, Any] | None
    rules: list[RuleCitation]
    lineage: list[AssetSummary] = Field(description="parents, nearest first")
    children: list[AssetSummary]
    media: bool = Field(description="whether a still can be shown (camera media)")


class QuarantineItem(Model):
    id: str
    region: str
    ingest_run: str
    source_drop: str
    source_path: str
    field: str
    reason: str
    error_type: str
    sha256: str | None = None
    bytes: int | None = None
    created_at: dt.datetime


class LedgerLine(Model):
    exporter: str
    year: int
    category: str
    subjects: int
    threshold: int
    threshold_outcome: str


class RegionOverview(Model):
    name: str
    country: str
    assets: int
    bytes: int
    quarantined: int
    inventory: list[dict[str, Any]]
    outcomes: dict[str, int]
    ledger: list[LedgerLine]
    log_size: int
    exports: int


class SigningRequest(Model):
    """A statement for a person to sign with their own key, elsewhere (`fleetgate sign`)."""

    statement: dict[str, Any]
    payload_type: str
    payload: str = Field(description="the canonical statement: the exact bytes the envelope carries")
    pae_base64: str = Field(description="DSSE PAE(payload_type, payload): the exact bytes the signature is over")
    pae_sha256: str
    expires_at: dt.datetime


class PlanView(Model):
    plan_id: str
    status: str  # draft | signed
    author: str
    destination: str
    created_at: dt.datetime
    log_index: int | None = None
    plan: dict[str, Any]
    sign: SigningRequest | None = None
    approvals: list[dict[str, Any]] = []
    export: dict[str, Any] | None = None


class ApprovalResult(Model):
    approval_id: str
    plan_id: str
    approver: str
    ref: str
    kinds: list[str]
    max_subjects: int
    valid_until: dt.date
    log_index: int


class RunResult(Model):
    package_id: str
    status: str
    exported: int
    held: int
    bytes: int
    log_index: int | None
    ledger_delta: dict[str, int]
    approvals: list[dict[str, Any]]


class IngestResult(Model):
    run_id: str
    drop_id: str
    region: str
    files_seen: int
    landed: int
    already_present: int
    quarantined: int
    bytes_landed: int
    problems: list[dict[str, Any]]
    request_log_index: int | None = None


class LogEntryView(Model):
    index: int
    type: str
    at: str
    entry: dict[str, Any]


class CheckpointView(Model):
    origin: str
    size: int
    root: str
    text: str


class ProofView(Model):
    index: int
    size: int
    leaf_hash: str
    proof: list[str]
    root: str
    entry: dict[str, Any]
    checkpoint: str
    verified: bool


# -- data-subject rights ---------------------------------------------------------------------------
class Identifier(Model):
    """One identifier of the person a request is about; pseudonymized on arrival, never stored or logged."""

    kind: str = Field(description="vin | phone | id_number | plate")
    value: str = Field(min_length=1, max_length=64, repr=False)


class AssetCount(Model):
    count: int
    by_kind: dict[str, int]
    ids: list[str]


class TableShare(Model):
    kind: str
    rows: int = Field(description="the person's rows")
    of: int = Field(description="rows of the table")


class DocumentShare(Model):
    kind: str
    entries: int


class IdCount(Model):
    count: int
    ids: list[str]


class PackageLeft(Model):
    """A package that already left the region with some of the person's assets (PIPL Art 23: the recipient
    must delete them)."""

    package_id: str
    destination: str
    country: str | None = None
    status: str
    exported_at: str
    assets: list[str]


class HeldAsset(Model):
    asset_id: str
    hold: str


class Footprint(Model):
    """Counts and asset ids of everything of one person in a region; no identifier in clear."""

    identifiers: dict[str, int] = Field(description="identifiers linked to the person, by kind")
    assets: AssetCount
    table_rows: dict[str, TableShare]
    documents: dict[str, DocumentShare]
    quarantine: IdCount
    packages: list[PackageLeft]
    ledger_rows: int
    held: list[HeldAsset]
    models: list[str] = Field(description="models whose lineage names their assets")
    export_plans: list[str] = Field(default=[], description="plans made over HTTP that list their files; an "
                                    "erasure withdraws them (their decisions stay in the log)")


class FindResult(Footprint):
    request_id: str
    ref: str
    log_index: int


class Withheld(Model):
    asset_id: str
    kind: str
    why: str


class CopyResult(Model):
    request_id: str
    path: str
    log_index: int
    files: int
    bytes: int
    table_rows: int
    withheld: list[Withheld]


class ErasureCounts(Model):
    assets: int
    tables_rewritten: int
    rows_removed: int
    documents_rewritten: int
    quarantine: int
    ledger_rows: int
    packages_left: int
    held: int
    export_plans_withdrawn: int = 0


class KeptAsset(Model):
    asset_id: str
    why: str


class ErasureResult(Model):
    """A preview (dry run), an erasure, a resumed one, or the record of one already finished."""

    status: str = Field(description="preview | erased | resumed | already erased")
    request_id: str | None = None
    erasure_id: str | None = None
    ref: str | None = None
    log_index: int | None = Field(default=None, description="the request (preview) or the erasure record")
    done_index: int | None = Field(default=None, description="the `erasure_done` entry with the receipt")
    finished_at: str | None = None
    footprint: Footprint | None = None
    erase: ErasureCounts | None = None
    kept: list[KeptAsset] = []
    receipt: dict[str, Any] | None = Field(default=None, description="keys destroyed (checked absent), blobs, "
                                           "bytes, access-log lines, staged copies, drop changes")
    summary: dict[str, Any] | None = Field(default=None, description="the erasure record's summary (finished ones)")
    seconds: float | None = None


class SubjectRequestView(Model):
    request_id: str
    ref: str
    action: str
    identifier: str = Field(description="the kind of identifier asked by, never its value")
    by: str
    received: str
    due_by: str = Field(description="10 working days after it arrived (Automobile Data Provisions Art 9)")
    days_left: int | None = None
    dry_run: bool | None = None
    status: str | None = None
    finished: str | None = None
    result: dict[str, Any] | None = None


class SubjectSigningRequest(SigningRequest):
    """A subject request to sign; `salt` goes back with the signed envelope (the server keeps nothing until
    then). The identifier is not in the statement: only an HMAC of its pseudonym under this salt."""

    salt: str = Field(description="hex; send it back with the envelope")
