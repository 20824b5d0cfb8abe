"""What a filing may rest on: a region's log, verified and replayed, and catalog rows checked against it.

Every figure of a filing comes from here. The log is verified first (`verify_region`, as the gate
does); a catalog that differs from its log stops the filing with the gate's own refusal, because a
report built on edited rows would certify them. Each fact a document uses is cited by its log entry
(index, type, time), and the document names the signed checkpoint that includes every cited entry,
so an auditor proves each one with `fleetgate audit prove N`. Nothing here reads a source path, a
vehicle or a clip id: those may hold a VIN. Asset ids, kinds, features and counts are what a
document shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetgate.audit.check import Finding
from fleetgate.audit.log import Checkpoint, region_log
from fleetgate.audit.state import LoggedApproval, LoggedDecision, LoggedExport, LogState
from fleetgate.domain import BasisStatement, SignedPlan
from fleetgate.gate.plan import logged_decision
from fleetgate.gate.trust import CatalogMismatch, verify_region
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace
from fleetgate.workspace.config import RegionConfig

# log entry types a filing reads beyond the replayed state
_READ_TYPES = {"derive", "deid_run"}


@dataclass(frozen=True)
class Cited:
    """A log entry a document rests on."""

    index: int
    type: str
    at: str
    what: str


@dataclass
class ItemFacts:
    """One asset of a plan or an export, as the log and its checked classification say."""

    asset_id: str
    kind: str
    policy_kind: str | None
    outcome: str
    rules: list[str]
    features: list[str]
    subjects: int
    anonymized: bool
    pseudonymized: bool
    category: str | None  # "pi" | "spi" | None: how its people count
    important: bool
    bytes: int
    exported: bool
    approvals: list[str] = field(default_factory=list)


@dataclass
class PlanFacts:
    """A logged decision with what followed it: approvals, the legal basis, the export."""

    decision: LoggedDecision
    items: list[ItemFacts]
    approvals: list[LoggedApproval]
    basis: tuple[int, BasisStatement] | None
    export: LoggedExport | None
    people: dict[str, int]  # distinct people among the items that leave (or left), by category

    @property
    def plan_id(self) -> str:
        return self.decision.statement.plan_id

    def leaving(self) -> list[ItemFacts]:
        """Items that left (exported) or, for a plan not yet run, may leave (not LOCAL_ONLY)."""
        if self.export is not None:
            return [i for i in self.items if i.exported]
        return [i for i in self.items if i.outcome != "LOCAL_ONLY"]


class Evidence:
    """One region's verified log and checked catalog, and the entries a document cites from them."""

    def __init__(self, ws: Workspace, region: str | None = None, allow_findings: bool = False) -> None:
        self.ws = ws
        self.cfg: RegionConfig = ws.config.region(region)
        verified = verify_region(ws, self.cfg.name, content=False)
        self.findings: list[Finding] = verified.findings
        catalog_findings = [f for f in self.findings if f.table != "log"]
        if catalog_findings and not allow_findings:
            raise CatalogMismatch(self.cfg.name, catalog_findings)
        self.state: LogState = verified.state
        self.entries = verified.report.entries
        reg = ws.region(self.cfg.name)
        self.catalog = reg.catalog
        self.log = region_log(reg)
        self.ledger = Ledger(reg.catalog)
        self.classes = {c["asset_id"]: c for c in self.ledger.classifications()}
        self.cited: dict[int, Cited] = {}
        self._read: dict[str, list[dict[str, Any]]] | None = None

    # -- citing -----------------------------------------------------------------------------------
    def cite(self, index: int, type_: str, at: Any, what: str) -> str:
        """Record that the document rests on entry `index`; returns the inline reference."""
        if index not in self.cited:
            when = at.isoformat() if hasattr(at, "isoformat") else str(at)
            self.cited[index] = Cited(index, type_, when[:19], what)
        return f"log entry {index} ({type_})"

    def cite_index(self, index: int, what: str) -> str:
        """Cite an entry known only by its index (a fact's entry): its type and time are read from the log."""
        entry = self.log.entry(index)
        return self.cite(index, entry["type"], entry.get("at", ""), what)

    def checkpoint(self) -> Checkpoint:
        """A signed checkpoint that includes every cited entry: the latest one a witness cosigned, else the
        latest one, else a new one (signed like `fleetgate audit checkpoint`) when all are older than the
        newest cited entry."""
        newest = max(self.cited, default=-1)
        covering = [cp for cp in self.log.checkpoints() if newest < cp.size <= self.entries]
        cosigned = [cp for cp in covering if any(name != self.log.key_name for name, _ in cp.signatures)]
        if cosigned or covering:
            return max(cosigned or covering, key=lambda cp: cp.size)
        return self.log.checkpoint()

    def leaf_hashes(self, indexes: list[int]) -> dict[int, bytes]:
        """The leaf hashes of the cited entries (read by index: a filing never loads the whole log)."""
        return self.log.repo.leaf_hashes(indexes)

    # -- reading ----------------------------------------------------------------------------------
    def logged(self, type_: str) -> list[dict[str, Any]]:
        """Verified entries of a type the replayed state does not keep (de-identification)."""
        if self._read is None:
            self._read = {t: [] for t in _READ_TYPES}
            for entry in self.log.entries():
                if entry["type"] in _READ_TYPES and entry["index"] < self.entries:
                    self._read[entry["type"]].append(entry)
        return self._read[type_]

    def tags(self, asset_id: str) -> list[str]:
        cls = self.classes.get(asset_id)
        return list(((cls or {}).get("decision") or {}).get("tags") or [])

    def people(self, asset_ids: Iterable[str]) -> dict[str, int]:
        """Distinct people (keyed pseudonyms) in the assets, by category, and in all ("all")."""
        pairs = self.ledger.subjects_of(list(asset_ids))
        out = dict(Counter(category for _, category in pairs))
        out["all"] = len({key for key, _ in pairs})
        return {"pi": out.get("pi", 0), "spi": out.get("spi", 0), "all": out["all"]}

    def item(self, asset_id: str, outcome: str, rules: list[str], bytes_: int, exported: bool,
             approvals: list[str] | None = None, kind: str | None = None) -> ItemFacts:
        cls = self.classes.get(asset_id) or {}
        tags = self.tags(asset_id)
        category = "spi" if "spi" in tags else "pi" if "pi" in tags else None
        return ItemFacts(asset_id=asset_id, kind=kind or cls.get("policy_kind") or "unclassified",
                         policy_kind=cls.get("policy_kind"), outcome=outcome, rules=list(rules),
                         features=list(cls.get("features") or []), subjects=int(cls.get("subjects") or 0),
                         anonymized=bool(cls.get("anonymized")), pseudonymized=bool(cls.get("pseudonymized")),
                         category=category, important="important" in tags, bytes=int(bytes_), exported=exported,
                         approvals=list(approvals or []))

    # -- plans and exports --------------------------------------------------------------------------
    def plan_facts(self, decision: LoggedDecision, signed: SignedPlan | None = None) -> PlanFacts:
        plan_id = decision.statement.plan_id
        export = self.state.export_for_plan(plan_id)
        left = {a["asset_id"]: a for a in (export.entry.get("assets") or [])} if export else {}
        if signed is not None:
            items = [self.item(i.asset_id, i.outcome, i.rules, i.bytes, i.asset_id in left,
                               (left.get(i.asset_id) or {}).get("approvals"), i.kind) for i in signed.plan.items]
        else:
            items = [self.item(a["asset_id"], a["outcome"], a.get("rules") or [], a.get("bytes") or 0, True,
                               a.get("approvals"), a.get("kind")) for a in left.values()]
        facts = PlanFacts(decision, items, self.state.approvals_for(plan_id), self.state.bases.get(plan_id), export,
                          {})
        facts.people = self.people(i.asset_id for i in facts.leaving() if i.category)
        return facts

    def plan_from_file(self, signed: SignedPlan) -> PlanFacts:
        """A plan file, checked against its logged, signed decision (an edited plan is refused)."""
        return self.plan_facts(logged_decision(self.state, signed), signed)

    def exports_of_year(self, year: int) -> list[PlanFacts]:
        """The year's exports by this region's exporter, oldest first."""
        out = []
        for export in sorted(self.state.exports.values(), key=lambda e: e.index):
            entry = export.entry
            if entry.get("year") != year or entry.get("exporter") != self.cfg.exporter_id:
                continue
            decision = self.state.decisions.get(entry.get("plan_id"))
            if decision is not None:
                out.append(self.plan_facts(decision))
        return out

    def scope(self, year: int, signed: SignedPlan | None) -> list[PlanFacts]:
        return [self.plan_from_file(signed)] if signed is not None else self.exports_of_year(year)
