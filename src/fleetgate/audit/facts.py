"""Facts: what the log records about each catalog row the export gate reads, and how a row becomes one.

A fact is a row projected field by field: plain metadata stays as it is (ids, kinds, hashes, sizes,
times, outcomes), values that may name a person become keyed digests (HMAC with the region's
pseudonymization key: vehicle, clip id, source path, a quarantine reason), and free-form JSON becomes
a SHA-256 digest. `audit verify` projects every row again and compares field by field, so an edit
names its table, row and field. Facts are appended in the same transaction as their rows, batched
(one entry per ingest batch, classify batch or derivation), so a fact and its row never part.

    entry type   payload                                     tables it vouches for
    ingest       {run, drop, facts: {assets, quarantine}}    assets, quarantine
    derive       {facts: {assets}, removed, models, ...}     assets (de-identified children)
    train_run    {facts: {assets}, lineage, metrics, ...}    assets (model checkpoints)
    classify     {facts: {classifications}}                  classifications, asset_subjects
    principal    {statement}                                 principals
    config       {statement}                                 the settings that decide (fleetgate.toml, packs)
    decision     {plan_id, statement}                        (plans: digest and author)
    approval     {approval_id, statement}                    export_approvals
    credential   {statement}                                 credentials (API tokens, dashboard passwords)
    export       {package_id, ..., ledger}                   exports, ledger_subjects
    publish      {package_id, published_at}                  exports (status)
    web_request  {principal, route, body digest, ...}        (who asked for a change over HTTP; no table)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from fleetgate.audit.log import canonical, digest
from fleetgate.keys import keyed_digest

# Which column identifies a row of each fact table, and which tables are written once: a second,
# different fact for the same id is itself a finding.
FACT_KEYS = {"assets": "id", "quarantine": "id", "classifications": "asset_id"}
WRITE_ONCE = {"assets", "quarantine"}
FACT_ENTRY_TYPES = ("ingest", "derive", "train_run", "classify")


def iso(value: Any) -> Any:
    """Datetimes as ISO 8601 in UTC, dates as ISO dates; other values unchanged."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def json_digest(value: Any) -> str:
    return digest(canonical({"v": value}))


class Facts:
    """Projections of catalog rows into log facts, keyed with one region's pseudonymization key."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _keyed(self, domain: str, value: str | None) -> str | None:
        return None if value is None else keyed_digest(self.key, domain, value)

    def asset(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"], "kind": row["kind"], "region": row["region"], "sha256": row["sha256"],
            "bytes": int(row["bytes"]), "file_format": row["file_format"],
            "vehicle": self._keyed("vin", row["vehicle"]), "clip_id": self._keyed("clip", row["clip_id"]),
            "t_start": iso(row["t_start"]), "t_end": iso(row["t_end"]), "source_drop": row["source_drop"],
            "source_path": self._keyed("path", row["source_path"]), "parent_id": row["parent_id"],
            "ingest_run": row["ingest_run"], "tags": json_digest(row["tags"] or {}),
            "created_at": iso(row["created_at"]),
        }

    def quarantine(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"], "region": row["region"], "ingest_run": row["ingest_run"],
            "source_drop": row["source_drop"], "source_path": self._keyed("path", row["source_path"]),
            "field": row["field"], "reason": self._keyed("reason", row["reason"]), "error_type": row["error_type"],
            "sha256": row["sha256"], "bytes": None if row["bytes"] is None else int(row["bytes"]),
            "created_at": iso(row["created_at"]),
        }

    def classification(self, row: Mapping[str, Any], subjects: Iterable[tuple[str, str]]) -> dict[str, Any]:
        return {
            "asset_id": row["asset_id"], "policy_kind": row["policy_kind"], "features": list(row["features"]),
            "subjects": int(row["subjects"]), "evidence": json_digest(row["evidence"]),
            "anonymized": bool(row["anonymized"]), "pseudonymized": bool(row["pseudonymized"]),
            "packs": dict(row["packs"]), "outcome": row["outcome"], "decision": json_digest(row["decision"]),
            "classified_at": iso(row["classified_at"]), "subject_keys": subject_set(subjects),
        }


def subject_set(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Count and digest of an asset's (subject key, category) pairs."""
    ordered = sorted({(k, c) for k, c in pairs})
    return {"count": len(ordered), "digest": json_digest([list(p) for p in ordered])}


def ledger_set(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per category, the count and digest of the ledger rows one export added."""
    by_category: dict[str, list] = {"pi": [], "spi": []}
    for r in rows:
        by_category.setdefault(r["category"], []).append(
            [r["exporter"], int(r["year"]), r["subject_key"], iso(r["recorded_at"])])
    return {c: {"count": len(v), "digest": json_digest(sorted(v))} for c, v in sorted(by_category.items())}


def differing_fields(actual: Mapping[str, Any], logged: Mapping[str, Any]) -> list[str]:
    """The fields whose values differ between a row's projection and its logged fact."""
    return sorted(k for k in set(actual) | set(logged) if actual.get(k) != logged.get(k))
