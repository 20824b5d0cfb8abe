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
    erasure      {erasure_id, assets, quarantine, facts, ...}  rows removed, tables rewritten (assets)

Keying ("keying": "subject"): a value that belongs to one person (a vehicle's VIN, clip id, path,
content digest and tags; a quarantined file under that vehicle) is digested with that person's
own key from the region keyring, and subject sets and ledger rows list each person as a digest
under their key. Erasing a person destroys the key, so the log, which can never change, keeps
entries that no longer link to anyone, even for whoever holds the region key, while every proof
still verifies. Facts without the field (written before keying) are read with the region key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import orjson

from fleetgate.audit.log import canonical, digest
from fleetgate.keys import keyed_digest
from fleetgate.store import Region
from fleetgate.store.keyring import Keyring

# Which column identifies a row of each fact table, and which tables are written once: a second,
# different fact for the same id is itself a finding.
FACT_KEYS = {"assets": "id", "quarantine": "id", "classifications": "asset_id"}
WRITE_ONCE = {"assets", "quarantine"}
FACT_ENTRY_TYPES = ("ingest", "derive", "train_run", "classify")  # an erasure's facts count once it checks out
KEYING = "subject"
KEY_DESTROYED = "hmac:key-destroyed"
TOMBSTONE = "erased:"  # a ledger row whose person was erased: still counted, no longer anyone


def iso(value: Any) -> Any:
    """Datetimes as ISO 8601 in UTC, dates as ISO dates; other values unchanged."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class LoggedFact(NamedTuple):
    """A row's logged fact as the replayed state keeps it: the entry it is in, how it was keyed, and
    the SHA-256 of its canonical JSON. The fact itself is read back from its entry only when a row's
    projection has a different digest, so the state of a million-asset log stays a few hundred MB."""

    index: int
    keying: str | None
    digest: bytes


def fact_digest(fact: Mapping[str, Any]) -> bytes | None:
    """SHA-256 of a fact's JSON with sorted keys; None for a value JSON cannot hold (an edited row's
    projection may carry one), which the caller compares field by field instead."""
    try:
        return hashlib.sha256(orjson.dumps(fact, option=orjson.OPT_SORT_KEYS)).digest()
    except TypeError:
        return None


def json_digest(value: Any) -> str:
    return digest(canonical({"v": value}))


def vehicle_of_path(path: str | None) -> str | None:
    """The VIN a drop path sits under (`vehicles/<vin>/...`), or None."""
    parts = (path or "").split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "vehicles" and parts[1] else None


class Facts:
    """Projections of catalog rows into log facts, keyed with one region's keys (see the module doc).

    `create` makes a person's key on first use (writers); verification passes False, so a row
    that names a person whose key was destroyed differs from its fact instead of getting a new key."""

    def __init__(self, key: bytes, keyring: Keyring | None = None, create: bool = True) -> None:
        self.key = key
        self.keyring = keyring
        self.create = create
        self._fact_keys: dict[str, bytes | None] = {}

    @classmethod
    def of(cls, region: Region, create: bool = True) -> Facts:
        return cls(region.keys.pseudonym_key(), Keyring.of(region.keys), create)

    def _keyed(self, domain: str, value: str | None) -> str | None:
        return None if value is None else keyed_digest(self.key, domain, value)

    def fact_key(self, subject_pseudonym: str) -> bytes | None:
        if subject_pseudonym not in self._fact_keys:
            assert self.keyring is not None
            self._fact_keys[subject_pseudonym] = self.keyring.fact_key(subject_pseudonym, self.create)
        return self._fact_keys[subject_pseudonym]

    def _person(self, vin: str | None) -> tuple[bool, bytes | None]:
        """(whether the values are one person's, the key that digests them)."""
        if not vin or self.keyring is None:
            return False, self.key
        return True, self.fact_key(self.keyring.vehicle_pseudonym(vin))

    @staticmethod
    def _with(key: bytes | None, domain: str, value: str | None) -> str | None:
        if value is None:
            return None
        return KEY_DESTROYED if key is None else keyed_digest(key, domain, value)

    def asset(self, row: Mapping[str, Any], keying: str | None = KEYING) -> dict[str, Any]:
        fact = {
            "id": row["id"], "kind": row["kind"], "region": row["region"], "sha256": row["sha256"],
            "bytes": int(row["bytes"]), "file_format": row["file_format"],
            "vehicle": self._keyed("vin", row["vehicle"]), "clip_id": self._keyed("clip", row["clip_id"]),
            "t_start": iso(row["t_start"]), "t_end": iso(row["t_end"]), "source_drop": row["source_drop"],
            "source_path": self._keyed("path", row["source_path"]), "parent_id": row["parent_id"],
            "ingest_run": row["ingest_run"], "tags": json_digest(row["tags"] or {}),
            "created_at": iso(row["created_at"]),
        }
        if keying != KEYING or self.keyring is None:
            return fact
        personal, key = self._person(row["vehicle"])
        fact |= {"vehicle": self._with(key, "vin", row["vehicle"]), "clip_id": self._with(key, "clip", row["clip_id"]),
                 "source_path": self._with(key, "path", row["source_path"]), "keying": KEYING}
        if personal:
            fact |= {"sha256": self._with(key, "sha256", row["sha256"]),
                     "tags": self._with(key, "tags", canonical({"v": row["tags"] or {}}).decode())}
        return fact

    def quarantine(self, row: Mapping[str, Any], keying: str | None = KEYING) -> dict[str, Any]:
        fact = {
            "id": row["id"], "region": row["region"], "ingest_run": row["ingest_run"],
            "source_drop": row["source_drop"], "source_path": self._keyed("path", row["source_path"]),
            "field": row["field"], "reason": self._keyed("reason", row["reason"]), "error_type": row["error_type"],
            "sha256": row["sha256"], "bytes": None if row["bytes"] is None else int(row["bytes"]),
            "created_at": iso(row["created_at"]),
        }
        if keying != KEYING or self.keyring is None:
            return fact
        personal, key = self._person(vehicle_of_path(row["source_path"]))
        fact |= {"source_path": self._with(key, "path", row["source_path"]),
                 "reason": self._with(key, "reason", row["reason"]), "keying": KEYING}
        if personal:
            fact["sha256"] = self._with(key, "sha256", row["sha256"])
        return fact

    def classification(self, row: Mapping[str, Any], subjects: Iterable[tuple[str, str]],
                       keying: str | None = KEYING) -> dict[str, Any]:
        keyed = keying == KEYING and self.keyring is not None
        fact = {
            "asset_id": row["asset_id"], "policy_kind": row["policy_kind"], "features": list(row["features"]),
            "subjects": int(row["subjects"]), "evidence": json_digest(row["evidence"]),
            "anonymized": bool(row["anonymized"]), "pseudonymized": bool(row["pseudonymized"]),
            "packs": dict(row["packs"]), "outcome": row["outcome"], "decision": json_digest(row["decision"]),
            "classified_at": iso(row["classified_at"]),
            "subject_keys": subject_set(self.tokens(subjects) if keyed else subjects),
        }
        return fact | {"keying": KEYING} if keyed else fact

    def token(self, subject_pseudonym: str) -> str:
        """A person as a log digest under their own key (a tombstone stays what it is)."""
        if subject_pseudonym.startswith(TOMBSTONE):
            return subject_pseudonym
        return self._with(self.fact_key(subject_pseudonym), "subject", subject_pseudonym) or KEY_DESTROYED

    def tokens(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        pairs = list(pairs)
        self.prefetch(k for k, _ in pairs)
        return [(self.token(k), c) for k, c in pairs]

    def prefetch(self, subject_pseudonyms: Iterable[str]) -> None:
        """Read the fact keys of these people in one keyring read (rather than one read per row)."""
        if self.keyring is not None:
            missing = {k for k in subject_pseudonyms if k not in self._fact_keys and not k.startswith(TOMBSTONE)}
            self._fact_keys.update(self.keyring.fact_keys(sorted(missing), self.create))

    def ledger_set(self, rows: Iterable[Mapping[str, Any]], keying: str | None = KEYING) -> dict[str, dict[str, Any]]:
        """`ledger_set` with each person as their token (keying "subject"), or as logged before keying."""
        rows = list(rows)
        if keying != KEYING or self.keyring is None:
            return ledger_set(rows)
        self.tokens((r["subject_key"], r["category"]) for r in rows)  # one keyring read for everyone
        return ledger_set([dict(r) | {"subject_key": self.token(r["subject_key"])} for r in rows])


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
