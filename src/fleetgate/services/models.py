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
