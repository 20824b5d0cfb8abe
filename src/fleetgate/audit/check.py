"""The catalog against the log: every row the export gate reads must be exactly what the log says.

For each fact table the rows are projected (`facts.Facts`) and compared field by field with the
replayed state (`state.LogState`). A row that differs, a row with no logged fact and a logged row
that is gone are each a `Finding` naming the table, the row and the field. Rows that follow from
signed statements (principals, approvals) or from export entries (exports, the ledger) are
rebuilt from the log and compared whole. The region's public key, the content of each blob against
its kind, and the signed settings are checked too.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from fleetgate.audit.facts import Facts, LoggedFact, differing_fields, fact_digest, iso
from fleetgate.audit.log import digest
from fleetgate.audit.state import LogState
from fleetgate.domain import SignedPlan
from fleetgate.errors import FleetgateError
from fleetgate.formats.content import content_problem
from fleetgate.formats.drop_layout import asset_id, classify_drop_path
from fleetgate.keys.envelope import canonical_json
from fleetgate.store import Region
from fleetgate.store.keyring import Keyring

CLEAR_FIELDS = {"id", "kind", "region", "sha256", "bytes", "file_format", "t_start", "t_end", "source_drop",
                "parent_id", "ingest_run", "created_at", "asset_id", "policy_kind", "features", "subjects",
                "anonymized", "pseudonymized", "packs", "outcome", "classified_at", "field", "error_type", "status",
                "published_at", "name", "role", "added_index", "added_by", "removed_index", "removed_by", "plan_id",
                "approver", "valid_from", "valid_until", "max_subjects", "kinds", "outcomes", "destination",
                "log_index", "publish_index", "keyid", "count", "ref", "placed_by", "placed_index",
                "released_by", "released_index", "issued_by", "issued_index", "revoked_index", "revoked_by"}


@dataclass(frozen=True)
class Finding:
    """One way the catalog (or the log itself) differs from what the log vouches for."""

    table: str
    row: str
    field: str
    problem: str

    def line(self) -> str:
        return f"{self.table} {self.row}: {self.field}: {self.problem}"


def _value(field: str, value: Any) -> str:
    # keyed digests and digests say nothing to a reader; clear metadata is shown as it is
    if field in CLEAR_FIELDS:
        return json.dumps(value, ensure_ascii=False, default=str)[:80]
    return "a different value"


def _compare(table: str, row_id: str, actual: Mapping[str, Any], logged: Mapping[str, Any],
             index: int) -> Iterator[Finding]:
    for name in differing_fields(actual, logged):
        if name in CLEAR_FIELDS:
            problem = (f"{_value(name, actual.get(name))} in the catalog, {_value(name, logged.get(name))} "
                       f"in log entry {index}")
        else:
            problem = f"differs from the fact in log entry {index}"
        yield Finding(table, row_id, name, problem)


def _keyed_rows(rows: Iterable[Mapping[str, Any]], key: str) -> dict[str, Mapping[str, Any]]:
    return {str(r[key]): r for r in rows}


class UnreadableTable(Exception):
    """A row that does not read as its column types: only an edit outside fleetgate writes one."""

    def __init__(self, table: str, exc: Exception) -> None:
        super().__init__(table)
        self.finding = Finding(table, "*", "*", f"a row does not read as its column types ({type(exc).__name__}: "
                                               f"{str(exc)[:60]}); the table was edited outside fleetgate")


class CatalogCheck:
    """Compare one region's catalog with its replayed log state."""

    def __init__(self, region: Region, state: LogState, content: bool = True, conn: Connection | None = None) -> None:
        self.region = region
        self.state = state
        self.conn = conn  # the snapshot the log was read in
        self.facts = Facts.of(region, create=False)  # never makes a key: a destroyed one stays destroyed
        self.content = content

    def run(self, settings: Mapping[str, Any] | None = None) -> list[Finding]:
        findings = [Finding("log", f"entry {p.index}", "statement", p.what) for p in self.state.problems]
        findings += self.keys()
        for check in (self.assets, self.quarantine, self.classifications, self.principals, self.approvals,
                      self.exports, self.ledger, self.holds, self.erasures, self.credentials, self.plans):
            try:
                findings += check()
            except UnreadableTable as exc:
                findings.append(exc.finding)
        if settings is not None:
            findings += self.config(settings)
        return findings

    def _rows(self, table: str) -> Iterator[dict[str, Any]]:
        try:
            yield from self.region.catalog.rows(table, self.conn)
        except (ValueError, TypeError, OverflowError) as exc:
            raise UnreadableTable(table, exc) from exc

    # -- keys -------------------------------------------------------------------------------------
    def keys(self) -> list[Finding]:
        genesis = self.state.genesis
        if genesis is None:
            return []
        pinned = genesis.get("public_key")
        out = []
        current = self.region.keys.public_key().hex()
        if current != pinned:
            out.append(Finding("keys", f"{self.region.name}/signing.key", "public_key",
                               "the region key differs from the key pinned in log entry 0"))
        published = self.region.keys.published_public_key()
        if published is None or published.hex() != pinned:
            out.append(Finding("keys", f"{self.region.name}/signing.pub", "public_key",
                               "missing, unreadable or not the key pinned in log entry 0"))
        return out

    # -- rows with facts ----------------------------------------------------------------------------
    def _fact_table(self, table: str, key: str, project) -> Iterator[tuple[Mapping[str, Any], Finding | None]]:
        logged = self.state.facts[table]
        seen: set[str] = set()
        for row in self._rows(table):
            row_id = str(row[key])
            seen.add(row_id)
            fact = logged.get(row_id)
            if fact is None:
                erased = self.state.erased.get(table, {}).get(row_id)
                yield row, Finding(table, row_id, "*", "no logged fact for this row" if erased is None else
                                   f"erased in log entry {erased} but present in the catalog")
                continue
            projected = project(row, fact.keying)
            if fact_digest(projected) != fact.digest:
                for finding in self._differences(table, row_id, projected, fact):
                    yield row, finding
            yield row, None
        for row_id in sorted(set(logged) - seen):
            yield {}, Finding(table, row_id, "*",
                              f"logged in entry {logged[row_id].index} but missing from the catalog")

    def _differences(self, table: str, row_id: str, projected: Mapping[str, Any],
                     logged: LoggedFact) -> Iterator[Finding]:
        """A row whose projection's digest is not its fact's: the fields that differ, from the fact read
        back out of its entry (the same values written differently, an integer as 1.0, differ in none)."""
        fact = self.state.read_fact(table, row_id, logged)
        if fact is None:
            yield Finding(table, row_id, "*", f"differs from the fact in log entry {logged.index}, which no longer "
                                              "reads as it did when the log was verified")
            return
        yield from _compare(table, row_id, projected, fact, logged.index)

    def assets(self) -> list[Finding]:
        out = []
        for row, finding in self._fact_table("assets", "id", self.facts.asset):
            if finding is not None:
                out.append(finding)
            elif row:
                out += self._asset_consistency(row)
        return out

    def _asset_consistency(self, row: Mapping[str, Any]) -> list[Finding]:
        out = []
        tags = row["tags"] or {}
        if row["ingest_run"] and not tags.get("derived"):
            # an ingested file's id and kind follow from its path and bytes: a fact cannot restate them
            role = classify_drop_path(row["source_path"])
            if asset_id(row["region"], row["source_path"], row["sha256"]) != row["id"]:
                out.append(Finding("assets", row["id"], "id", "not the id its path and sha256 give"))
            if role is None or role.kind != row["kind"]:
                out.append(Finding("assets", row["id"], "kind",
                                   f"the drop layout makes its path a {role.kind if role else 'misplaced file'}"))
        if self.content:
            try:
                problem = content_problem(row["kind"], lambda: self.region.blobs.open(row["sha256"]), deep=False)
            except FleetgateError as exc:  # missing, unreadable (its key destroyed) or failing its seal
                problem = exc.message
            except OSError:
                problem = "no blob with this sha256 in the region's store"
            if problem:
                out.append(Finding("assets", row["id"], "content", problem))
        return out

    def quarantine(self) -> list[Finding]:
        return [f for _, f in self._fact_table("quarantine", "id", self.facts.quarantine) if f is not None]

    def classifications(self) -> list[Finding]:
        subjects: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for r in self._rows("asset_subjects"):
            subjects[r["asset_id"]].append((r["subject_key"], r["category"]))
        self.facts.prefetch(key for pairs in subjects.values() for key, _ in pairs)  # one keyring read for all
        out = []
        for _, finding in self._fact_table(
                "classifications", "asset_id",
                lambda row, keying: self.facts.classification(row, subjects.get(row["asset_id"], []), keying)):
            if finding is not None:
                out.append(finding if finding.field != "subject_keys" else
                           Finding("asset_subjects", finding.row, "subject_key", finding.problem))
        for asset in sorted(set(subjects) - set(self.state.facts["classifications"])):
            erased = self.state.erased["classifications"].get(asset)
            out.append(Finding("asset_subjects", asset, "*", "subject rows of an asset with no logged classification"
                               if erased is None else f"subject rows of an asset erased in log entry {erased}"))
        return out

    # -- rows rebuilt from statements and export entries ------------------------------------------
    def _rebuilt(self, table: str, key: str, expected: Mapping[str, tuple[int, dict[str, Any]]]) -> list[Finding]:
        out = []
        rows = _keyed_rows(self._rows(table), key)
        for row_id, row in rows.items():
            want = expected.get(row_id)
            if want is None:
                out.append(Finding(table, row_id, "*", "no logged statement or entry for this row"))
                continue
            actual = {k: iso(v) for k, v in row.items()}
            out += _compare(table, row_id, actual, {k: iso(v) for k, v in want[1].items()}, want[0])
        for row_id in sorted(set(expected) - set(rows)):
            out.append(Finding(table, row_id, "*", f"logged in entry {expected[row_id][0]} but missing from the "
                                                   "catalog"))
        return out

    def principals(self) -> list[Finding]:
        expected = {p.keyid: (p.added_index, p.model_dump(mode="json")) for p in self.state.principals.values()}
        return self._rebuilt("principals", "keyid", expected)

    def approvals(self) -> list[Finding]:
        expected = {a.approval_id: (a.index, approval_row(a)) for a in self.state.approvals.values()}
        return self._rebuilt("export_approvals", "id", expected)

    def exports(self) -> list[Finding]:
        expected = {pid: (e.index, export_row(e.entry, e.text, self.state.published.get(pid)))
                    for pid, e in self.state.exports.items()}
        return self._rebuilt("exports", "package_id", expected)

    def credentials(self) -> list[Finding]:
        """API tokens and passwords: each row as its signed, logged issuance (and revocation) says."""
        expected = {cid: (c.index, credential_row(c)) for cid, c in self.state.credentials.items()}
        rows = [{**{k: v for k, v in r.items() if k != "hash"}, "hash_digest": digest(str(r["hash"]).encode())}
                for r in self._rows("credentials")]
        out = []
        keyed = _keyed_rows(rows, "id")
        for row_id, row in keyed.items():
            want = expected.get(row_id)
            if want is None:
                out.append(Finding("credentials", row_id, "*", "no logged statement for this row"))
            else:
                out += _compare("credentials", row_id, row, want[1], want[0])
        for row_id in sorted(set(expected) - set(keyed)):
            out.append(Finding("credentials", row_id, "*", f"logged in entry {expected[row_id][0]} but missing from "
                                                           "the catalog"))
        return out

    def plans(self) -> list[Finding]:
        """Plans made over HTTP: a signed one is exactly the plan, statement and signature its decision logged."""
        out = []
        for row in self._rows("plans"):
            pid = str(row["plan_id"])
            decision = self.state.decisions.get(pid)
            if row["status"] == "draft":
                if row["log_index"] is not None:
                    out.append(Finding("plans", pid, "log_index", "a draft names a log entry"))
                continue
            if row["status"] != "signed" or decision is None:
                out.append(Finding("plans", pid, "status", f"{row['status']!r}, but no signed decision for this plan "
                                                           "is logged"))
                continue
            out += _plan_problems(pid, row, decision)
        return out

    def ledger(self) -> list[Finding]:
        by_export: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for r in self._rows("ledger_subjects"):
            by_export[r["export_id"]].append(r)
        out = []
        for package, export in self.state.exports.items():
            ledger = export.entry.get("ledger") or {}
            logged, index = ledger.get("rows") or {}, export.index
            if package in self.state.ledger_after_erasure:  # erased people are tombstones since then
                index, logged = self.state.ledger_after_erasure[package]
            actual = self.facts.ledger_set(by_export.pop(package, []), ledger.get("keying"))
            for category in sorted(set(logged) | set(actual)):
                want = logged.get(category, {"count": 0})
                have = actual.get(category, {"count": 0})
                if want.get("count", 0) == have.get("count", 0) == 0:
                    continue
                if want != have:
                    out.append(Finding("ledger_subjects", package, category,
                                       f"{have.get('count', 0)} row(s) in the catalog, {want.get('count', 0)} "
                                       f"logged in entry {index}" + (
                                           "" if have.get("count") != want.get("count") else " (rows differ)")))
        for package in sorted(by_export):
            out.append(Finding("ledger_subjects", package, "*", f"{len(by_export[package])} row(s) of an export the "
                                                                "log does not hold"))
        return out

    def holds(self) -> list[Finding]:
        expected = {hid: (h.index, hold_row(hid, h)) for hid, h in self.state.holds.items()}
        rows = list(self._rows("legal_holds"))
        # one row per held asset: key them by hold and asset
        return self._rebuilt_many("legal_holds", rows, expected)

    def _rebuilt_many(self, table: str, rows: list[Mapping[str, Any]],
                      expected: Mapping[str, tuple[int, list[dict[str, Any]]]]) -> list[Finding]:
        want = {f"{r['id']}/{r['asset_id']}": (index, r) for index, rs in expected.values() for r in rs}
        have = {f"{r['id']}/{r['asset_id']}": {k: iso(v) for k, v in r.items()} for r in rows}
        out = []
        for key, row in have.items():
            if key not in want:
                out.append(Finding(table, key, "*", "no logged statement or entry for this row"))
            else:
                out += _compare(table, key, row, {k: iso(v) for k, v in want[key][1].items()}, want[key][0])
        out += [Finding(table, key, "*", f"logged in entry {want[key][0]} but missing from the catalog")
                for key in sorted(set(want) - set(have))]
        return out

    def erasures(self) -> list[Finding]:
        """An erasure whose blobs and keys are not all destroyed yet, and keys a finished one left behind."""
        out = [Finding("erasures", e.erasure_id, "status", f"started in log entry {e.index} and not finished: blobs "
                       "and keys are still to be destroyed; rerun the same `fleetgate subject erase` (or "
                       "`fleetgate retention run`)") for e in self.state.pending_erasures()]
        keys = [k for e in self.state.erasures.values() for k in e.destroyed_keys]
        if keys:
            left = Keyring.of(self.region.keys).present(keys)
            for e in self.state.erasures.values():
                for kid in sorted(left & set(e.destroyed_keys)):
                    out.append(Finding("keyring", kid, "*", f"logged as destroyed in entry {e.done_index} but still "
                                                            "in the keyring"))
        return out

    def config(self, settings: Mapping[str, Any]) -> list[Finding]:
        if self.state.config is None:
            return []
        index, statement = self.state.config
        return [Finding("config", self.region.name, key, f"differs from the settings an admin signed in entry "
                                                         f"{index}; `fleetgate config sign` after review")
                for key in differing_fields(settings, statement.settings)]


def _plan_problems(pid: str, row: Mapping[str, Any], decision: Any) -> list[Finding]:
    try:
        signed = SignedPlan.model_validate_json(row["body"])
    except ValueError:
        return [Finding("plans", pid, "body", "not a signed plan")]
    # the plan digest as the gate computes it (`fleetgate.gate.plan.plan_digest`): sha256 of the canonical body
    body_digest = digest(canonical_json(signed.plan.model_dump(mode="json")))
    out = []
    if signed.plan_id != pid or body_digest != decision.statement.plan_digest:
        out.append(Finding("plans", pid, "body", f"not the plan whose digest was logged in entry {decision.index}"))
    if signed.statement != decision.envelope:
        out.append(Finding("plans", pid, "body", f"the signature differs from the one logged in entry "
                                                 f"{decision.index}"))
    if row["statement"] != canonical_json(decision.statement.model_dump(mode="json")).decode("utf-8"):
        out.append(Finding("plans", pid, "statement", f"differs from the statement logged in entry {decision.index}"))
    if row["log_index"] != decision.index:
        out.append(Finding("plans", pid, "log_index", f"{row['log_index']} in the catalog, {decision.index} in the "
                                                      "log"))
    return out


def credential_row(c: Any) -> dict[str, Any]:
    """The credentials row (with its hash as a digest) a logged issuance stands for."""
    st = c.statement
    return {"id": st.credential_id, "kind": st.kind, "keyid": st.keyid, "name": st.name,
            "hash_digest": st.hash_digest, "issued_by": st.by, "issued_index": c.index,
            "revoked_index": c.revoked_index, "revoked_by": c.revoked_by}


def _when(text: str) -> dt.datetime | str:
    try:
        return dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return text  # not a time: the comparison reports it


def approval_row(a: Any) -> dict[str, Any]:
    """The export_approvals row a logged approval stands for."""
    st = a.statement
    return {"id": a.approval_id, "plan_id": st.plan_id, "plan_digest": st.plan_digest, "approver": st.approver,
            "keyid": a.keyid, "ref": st.ref, "destination_country": st.destination_country, "kinds": list(st.kinds),
            "outcomes": list(st.outcomes), "max_subjects": st.max_subjects, "valid_from": st.valid_from,
            "valid_until": st.valid_until, "envelope": json.dumps(a.envelope, sort_keys=True),
            "log_index": a.index, "created_at": _when(a.at)}


def hold_row(hold_id: str, hold: Any) -> list[dict[str, Any]]:
    """The legal_holds rows (one per asset) a logged hold stands for."""
    st = hold.statement
    return [{"id": hold_id, "asset_id": a, "ref": st.ref, "reason": st.reason, "placed_by": st.by,
             "placed_index": hold.index, "released_by": hold.released_by, "released_index": hold.released_index}
            for a in st.asset_ids]


def export_row(entry: Mapping[str, Any], text: str, published: tuple[int, Mapping[str, Any]] | None) -> dict[str, Any]:
    """The exports row an export entry (and its publication, if any) stands for."""
    return {"package_id": entry["package_id"], "plan_id": entry["plan_id"], "region": entry["region"],
            "destination": entry["destination"]["name"], "status": "published" if published else "committed",
            "log_index": entry["index"], "entry": text, "assets": entry["assets"], "approvals": entry["approvals"],
            "ledger_delta": entry["ledger_delta"], "bytes": sum(a["bytes"] for a in entry["assets"]),
            "created_at": _when(entry["at"]),
            "published_at": _when(published[1]["published_at"]) if published else None,
            "publish_index": published[0] if published else None}
