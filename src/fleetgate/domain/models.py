"""Pydantic models of principals, signed statements and export plans.

Statements are what people sign (in DSSE envelopes, `fleetgate.keys.envelope`) and what the log
keeps whole: they hold names, roles, digests and counts, never a data subject's personal
information. A plan holds more (source paths name vehicles), so only its digest is signed and
logged; the plan file carries the signed statement with it.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# pydantic runs these with Rust's regex engine, where `$` matches only at the very end of the text
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9 ._'-]{0,62}[A-Za-z0-9.]$"
PersonName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]


class Role(StrEnum):
    """What a principal may do: plan and run exports, approve them, read and verify, manage people,
    upload drops (an upload agent: a machine with its own key, registered like a person)."""

    engineer = "engineer"
    compliance = "compliance"
    auditor = "auditor"
    admin = "admin"
    ingest = "ingest"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Principal(Strict):
    """A person registered in a region, as the log records them."""

    name: PersonName
    role: Role
    keyid: KeyId
    public_key: str  # PEM
    added_index: int
    added_by: str
    removed_index: int | None = None
    removed_by: str | None = None

    def active_at(self, index: int) -> bool:
        """Registered before log entry `index` and not removed before it."""
        return self.added_index < index and (self.removed_index is None or index < self.removed_index)


class PrincipalStatement(Strict):
    """An admin's signed decision to add or remove a person (the first admin signs their own)."""

    type: Literal["fleetgate/principal/v1"] = "fleetgate/principal/v1"
    action: Literal["add", "remove"]
    region: str
    name: PersonName
    role: Role | None = None  # add only
    public_key: str | None = None  # add only, PEM
    keyid: KeyId
    by: PersonName
    at: dt.datetime


class Destination(Strict):
    name: str
    country: Country


class OutcomeSummary(Strict):
    assets: int = 0
    bytes: int = 0
    subjects: int = 0


class ApprovalScope(Strict):
    kinds: list[str]
    outcomes: list[str]
    subjects: int


class Ytd(Strict):
    pi_subjects: int = 0
    spi_subjects: int = 0


class Blocked(Strict):
    """A blocking obligation on an item: it may not leave until the request field `requires` is recorded."""

    rule: str
    requires: str  # legal_basis | pipia_ref
    text: str
    cite: str


class PlanItem(Strict):
    """One asset of a plan: what it is, what the packs decided, and why."""

    asset_id: str
    kind: str
    policy_kind: str | None
    source_path: str
    sha256: str
    bytes: int
    features: list[str]
    subjects: int
    anonymized: bool
    counted_as: str | None
    outcome: str
    rules: list[str]
    reasons: list[str]
    obligations: list[str]
    blocking: list[Blocked] = Field(default_factory=list)


class Plan(Strict):
    """What would leave and why: the body a plan's author signs (through its digest)."""

    format: Literal["fleetgate-export-plan/2"] = "fleetgate-export-plan/2"
    region: str
    exporter: str
    destination: Destination
    purpose: str
    select: str
    as_of: dt.date
    packs: dict[str, str]
    ytd_before: Ytd
    ytd_after: Ytd
    summary: dict[str, OutcomeSummary]
    obligations: list[str]
    approval_scope: ApprovalScope
    items: list[PlanItem]
    author: PersonName
    created_at: dt.datetime


class PlanStatement(Strict):
    """The plan's author vouches for this plan digest; logged whole in the `decision` entry."""

    type: Literal["fleetgate/plan/v1"] = "fleetgate/plan/v1"
    plan_id: str
    plan_digest: Digest
    region: str
    destination: Destination
    exporter: str
    purpose: str
    as_of: dt.date
    packs: dict[str, str]
    summary: dict[str, OutcomeSummary]
    approval_scope: ApprovalScope
    items: int
    author: PersonName
    at: dt.datetime


class SignedPlan(Strict):
    """A plan file: the body, its id and the author's signed statement."""

    plan_id: str
    plan: Plan
    statement: dict  # the DSSE envelope of a PlanStatement


class ApprovalStatement(Strict):
    """A compliance officer's signed approval of one plan's approval-bound items under a filing."""

    type: Literal["fleetgate/approval/v1"] = "fleetgate/approval/v1"
    plan_id: str
    plan_digest: Digest
    decision_index: int
    region: str
    destination_country: Country
    exporter: str
    purpose: str
    packs: dict[str, str]
    kinds: list[str] = Field(min_length=1)
    outcomes: list[str] = Field(min_length=1)
    max_subjects: int = Field(ge=0)
    ref: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    valid_from: dt.date
    valid_until: dt.date
    approver: PersonName
    role: Literal["compliance"] = "compliance"
    at: dt.datetime


class LegalBasisRecord(Strict):
    """The PIPL Art 13 basis personal information is exported on, with the reference of its record."""

    type: str
    ref: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class BasisStatement(Strict):
    """A compliance officer records the legal basis and the PI protection impact assessment of one plan's
    personal information (PIPL Arts 13, 39, 55, 56; 2024 Provisions Art 10)."""

    type: Literal["fleetgate/basis/v1"] = "fleetgate/basis/v1"
    plan_id: str
    plan_digest: Digest
    region: str
    legal_basis: LegalBasisRecord
    pipia_ref: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    by: PersonName
    role: Literal["compliance"] = "compliance"
    at: dt.datetime


class ConfigStatement(Strict):
    """An admin's signed statement of the settings that can change a region's decisions."""

    type: Literal["fleetgate/config/v1"] = "fleetgate/config/v1"
    region: str
    settings: dict
    settings_digest: Digest
    by: PersonName
    at: dt.datetime


class RunStatement(Strict):
    """The engineer who runs an export signs which plan and package it is."""

    type: Literal["fleetgate/export-run/v1"] = "fleetgate/export-run/v1"
    plan_id: str
    plan_digest: Digest
    package_id: str
    region: str
    by: PersonName
    at: dt.datetime


IdentifierKind = Literal["vin", "phone", "id_number", "plate"]


class SubjectRequestStatement(Strict):
    """A compliance officer's or auditor's signed request about one data subject (PIPL Arts 44-47).

    The identifier is never in it: only its kind and an HMAC under a salt the region keeps beside the
    request (and wipes once the person is erased), so the log cannot name the person."""

    type: Literal["fleetgate/subject-request/v1"] = "fleetgate/subject-request/v1"
    action: Literal["find", "export", "erase"]
    region: str
    ref_digest: Digest  # sha256 of the request reference (the ticket number)
    identifier_kind: IdentifierKind
    identifier_digest: Annotated[str, StringConstraints(pattern=r"^hmac:[0-9a-f]{32}$")]
    dry_run: bool = False
    by: PersonName
    at: dt.datetime


class RetentionStatement(Strict):
    """A compliance officer's signed order to delete what the retention settings say has expired."""

    type: Literal["fleetgate/retention/v1"] = "fleetgate/retention/v1"
    region: str
    policy: dict  # {"raw": {kind: days}, "derived": {kind: days}}
    policy_digest: Digest
    as_of: dt.datetime
    dry_run: bool = False
    by: PersonName
    at: dt.datetime


class HoldStatement(Strict):
    """A compliance officer places or releases a legal hold: held assets survive erasure and retention."""

    type: Literal["fleetgate/legal-hold/v1"] = "fleetgate/legal-hold/v1"
    action: Literal["place", "release"]
    region: str
    hold_id: str
    asset_ids: list[str] = Field(min_length=1)
    ref: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    reason: Annotated[str, StringConstraints(max_length=256)] = ""
    by: PersonName
    at: dt.datetime


class CredentialStatement(Strict):
    """An admin (or the principal themselves) vouches for a login credential of a principal.

    The credential's secret never appears: only its id and a digest of its argon2 hash, which the
    catalog check compares with the stored row. Logged whole in a `credential` entry."""

    type: Literal["fleetgate/credential/v1"] = "fleetgate/credential/v1"
    action: Literal["issue", "revoke"]
    region: str
    credential_id: Annotated[str, StringConstraints(pattern=r"^(tok|pwd)-[0-9a-f]{16}$")]
    kind: Literal["token", "password"]
    name: PersonName
    keyid: KeyId
    hash_digest: Digest | None = None  # issue only
    by: PersonName
    at: dt.datetime
