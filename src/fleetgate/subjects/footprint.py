"""Find one person's data everywhere in a region, through keyed pseudonyms only.

The identifier asked for is pseudonymized on arrival (HMAC with the region key, the same pseudonyms
classification and the ledger use) and dropped. Every table is scanned for identifiers (the PII
scan's patterns and check digits), each found value is pseudonymized, and a row belongs to the person
when one of its pseudonyms is theirs; the other identifiers of such a row (the phone next to a VIN,
the plate on a service ticket) are theirs too, until nothing new turns up. De-identified tables
match through their pseudonym columns. Then:

    whole assets     their vehicle's files (clips, tracks, CAN, cabin media, clip.json) and everything
                     derived from them, sidecars included
    rows             tables that hold them among others: which rows are theirs
    documents        JSON files that mention them among others (labels.json keys name VIN/clip)
    quarantine       quarantined copies under their vehicle, or whose bytes or reason name them
    packages         exports that already left with any of the above, and their recipients
    ledger           the ledger rows that count them
    held             what a legal hold keeps
"""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fleetgate.audit.facts import vehicle_of_path
from fleetgate.classify.pii_scan import identifier_values
from fleetgate.errors import FleetgateError, UsageError
from fleetgate.keys.region_keys import normalize_identifier, pseudonym
from fleetgate.store import PlanRepository, Region
from fleetgate.store.subjects_repo import SubjectRecords

# The identifiers a person may be asked for by, and the pseudonym domain of each (classify's).
DOMAINS = {"vin": "vin", "phone": "mobile", "id_number": "resident_id", "plate": "plate"}
DOMAIN_NAMES = {"vin": "vin", "mobile": "phone", "resident_id": "id_number", "plate": "plate", "email": "email",
                "pseudonym": "pseudonym"}
PSEUDONYM_CELL = r"^[0-9a-f]{32}$"
MAX_IDENTIFIERS = 64  # more means an identifier several people share (a dealer's phone): refuse, ask for another
TEXT_LIMIT = 32 << 20
VALID = {"vin": re.compile(r"^[A-HJ-NPR-Z0-9]{17}\Z"), "phone": re.compile(r"^(?:\+?86)?1[3-9][0-9]{9}\Z"),
         "id_number": re.compile(r"^[1-9][0-9]{16}[0-9X]\Z"), "plate": re.compile(r"^\S{7,8}\Z")}


class SubjectError(UsageError):
    """A data-subject request that cannot be carried out as asked."""


def seed_pseudonym(key: bytes, kind: str, value: str) -> str:
    """The pseudonym of the identifier asked for; the value itself goes no further."""
    if kind not in DOMAINS:
        raise SubjectError(f"identifier kind {kind!r}: one of {', '.join(DOMAINS)}")
    norm = normalize_identifier(value)
    if kind == "phone":
        norm = norm.removeprefix("+86").removeprefix("86") if len(norm) > 11 else norm
    if not VALID[kind].match(norm):
        raise SubjectError(f"--{kind.replace('_', '-')}: not a valid {kind.replace('_', ' ')}")
    return pseudonym(key, norm, DOMAINS[kind])


@dataclass
class TableRows:
    """The person's rows in one table asset."""

    asset_id: str
    rows: int
    total: int
    keep: list[bool]


@dataclass
class Footprint:
    """Everything of one person in a region (ids and counts; no identifier in clear)."""

    identifiers: dict[str, str] = field(default_factory=dict)  # pseudonym -> domain
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # whole assets, by id
    tables: dict[str, TableRows] = field(default_factory=dict)  # tables to rewrite without their rows
    # JSON assets to rewrite: how many entries name them, and (in memory only) the texts that do
    documents: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    quarantine: dict[str, dict[str, Any]] = field(default_factory=dict)
    packages: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # asset id -> hold id
    models: list[str] = field(default_factory=list)  # model checkpoints whose lineage names their assets
    export_plans: list[str] = field(default_factory=list)  # plans made over HTTP that list their files
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)  # every asset row, by id

    @property
    def vins(self) -> set[str]:
        return {p for p, d in self.identifiers.items() if d == "vin"}

    def touched(self) -> set[str]:
        """Every asset the person's erasure removes or rewrites."""
        return set(self.assets) | set(self.tables) | set(self.documents)

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = defaultdict(int)
        for a in self.assets.values():
            kinds[a["kind"] + (" (derived)" if a["parent_id"] else "")] += 1
        ids: dict[str, int] = defaultdict(int)
        for d in self.identifiers.values():
            ids[DOMAIN_NAMES.get(d, d)] += 1
        return {
            "identifiers": dict(sorted(ids.items())),
            "assets": {"count": len(self.assets), "by_kind": dict(sorted(kinds.items())), "ids": sorted(self.assets)},
            "table_rows": {aid: {"rows": t.rows, "of": t.total, "kind": self.catalog[aid]["kind"]}
                           for aid, t in sorted(self.tables.items())},
            "documents": {aid: {"entries": n, "kind": self.catalog[aid]["kind"]}
                          for aid, (n, _) in sorted(self.documents.items())},
            "quarantine": {"count": len(self.quarantine), "ids": sorted(self.quarantine)},
            "packages": self.packages,
            "ledger_rows": len(self.ledger),
            "held": [{"asset_id": a, "hold": h} for a, h in sorted(self.held.items())],
            "models": sorted(self.models),
            "export_plans": sorted(self.export_plans),
        }


class Scanner:
    """Per-row pseudonym sets of tables, and of texts, under the region key."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.domains: dict[str, str] = {}
        self._cache: dict[tuple[str, str], str] = {}

    def _pseudo(self, domain: str, value: str) -> str:
        hit = self._cache.get((domain, value))
        if hit is None:
            hit = self._cache[(domain, value)] = pseudonym(self.key, value, domain)
            self.domains.setdefault(hit, domain)
        return hit

    def rows(self, table: pa.Table) -> list[set[str]]:
        out: list[set[str]] = [set() for _ in range(table.num_rows)]
        for domain, values in identifier_values(table):
            for i, v in enumerate(values.to_pylist()):
                if v is not None:
                    out[i].add(self._pseudo(domain, v))
        for name in table.column_names:  # de-identified tables keep pseudonyms where the identifiers were
            col = table.column(name)
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                continue
            hits = pc.fill_null(pc.match_substring_regex(col, PSEUDONYM_CELL), False).to_numpy(zero_copy_only=False)
            if hits.any():
                values = col.to_pylist()
                for i in hits.nonzero()[0]:
                    out[i].add(values[i])
                    self.domains.setdefault(values[i], "pseudonym")
        return out

    def texts(self, texts: list[str]) -> list[set[str]]:
        if not texts:
            return []
        return self.rows(pa.table({"text": pa.array(texts, pa.string())}))


def _read_table(data: bytes) -> pa.Table | None:
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError):
        return None


def _json_strings(doc: Any) -> list[str]:
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(str(k))
            out += _json_strings(v)
    elif isinstance(doc, list):
        for v in doc:
            out += _json_strings(v)
    elif isinstance(doc, str):
        out.append(doc)
    return out


def strip_document(doc: Any, naming: set[str]) -> tuple[Any, int]:
    """The JSON document without the entries whose key or text names the person; and how many there were."""
    removed = 0

    def names(value: Any) -> bool:
        return any(s in naming for s in _json_strings(value)) if not isinstance(value, (dict, list)) else False

    def walk(node: Any) -> Any:
        nonlocal removed
        if isinstance(node, dict):
            kept = {}
            for k, v in node.items():
                if str(k) in naming or names(v):
                    removed += 1
                    continue
                kept[k] = walk(v)
            return kept
        if isinstance(node, list):
            kept_list = []
            for v in node:
                if names(v):
                    removed += 1
                    continue
                kept_list.append(walk(v))
            return kept_list
        return node

    return walk(doc), removed


def find_footprint(region: Region, seed: str, seed_domain: str, held: dict[str, str]) -> Footprint:
    """Everything of the person whose identifier has pseudonym `seed` (of `seed_domain`) in this region."""
    key = region.keys.pseudonym_key()
    scan = Scanner(key)
    fp = Footprint()
    rows_of: dict[str, list[set[str]]] = {}
    docs: dict[str, tuple[Any, list[str], list[set[str]]]] = {}
    catalog = {a["id"]: a for a in region.catalog.list_assets(region=region.name)}
    fp.catalog = catalog
    for a in catalog.values():
        if a["vehicle"]:
            continue  # a vehicle's files are the vehicle owner's, whatever they contain
        data = _read(region, a["sha256"])
        if a["file_format"] == "parquet" and data is not None:
            table = _read_table(data)
            if table is not None:
                rows_of[a["id"]] = scan.rows(table)
        elif a["file_format"] == "json" and data is not None:
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            strings = sorted(set(_json_strings(doc)))
            docs[a["id"]] = (doc, strings, scan.texts(strings))
    person = _closure({seed}, [r for rows in rows_of.values() for r in rows])
    fp.identifiers = {p: scan.domains.get(p, seed_domain if p == seed else "pseudonym") for p in person}
    _whole_assets(fp, catalog, key)
    _tables(fp, catalog, rows_of, person)
    for aid, (doc, strings, sets) in docs.items():
        naming = {s for s, found in zip(strings, sets, strict=True) if found & person}
        if naming and aid not in fp.assets:
            fp.documents[aid] = (strip_document(doc, naming)[1], naming)
    _quarantine(fp, region, scan, person)
    _left_and_counted(fp, region, person)
    _export_plans(fp, region, scan, person)
    fp.held = {a: h for a, h in held.items() if a in fp.touched()}
    fp.models = sorted(aid for aid, a in catalog.items() if a["kind"] == "model_checkpoint"
                       and any(t in json.dumps(a["tags"] or {}) for t in fp.touched()))
    return fp


def _read(region: Region, sha256: str, namespace: str = "blobs") -> bytes | None:
    try:
        return region.blobs.read_bytes(sha256, namespace)
    except (FleetgateError, OSError):
        return None


def _closure(person: set[str], row_sets: list[set[str]]) -> set[str]:
    """The person's pseudonyms: grown through every row that holds one of them, until nothing is new."""
    person = set(person)
    grew = True
    while grew:
        grew = False
        for row in row_sets:
            if row & person and not row <= person:
                person |= row
                grew = True
        if len(person) > MAX_IDENTIFIERS:
            raise SubjectError(f"the identifier links more than {MAX_IDENTIFIERS} identifiers across the tables "
                               "(several people share one of them); ask by another identifier. Nothing was done")
    return person


def _whole_assets(fp: Footprint, catalog: dict[str, dict[str, Any]], key: bytes) -> None:
    vins = fp.vins
    vehicle_of: dict[str, str] = {}
    for a in catalog.values():
        if a["vehicle"]:
            vp = vehicle_of.setdefault(a["vehicle"], pseudonym(key, a["vehicle"], "vin"))
            if vp in vins:
                fp.assets[a["id"]] = a
    _add_descendants(fp.assets, catalog)


def _add_descendants(chosen: dict[str, dict[str, Any]], catalog: dict[str, dict[str, Any]]) -> None:
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in catalog.values():
        if a["parent_id"]:
            children[a["parent_id"]].append(a)
    todo = list(chosen)
    while todo:
        for child in children.get(todo.pop(), []):
            if child["id"] not in chosen:
                chosen[child["id"]] = child
                todo.append(child["id"])


def _tables(fp: Footprint, catalog: dict[str, dict[str, Any]], rows_of: dict[str, list[set[str]]],
            person: set[str]) -> None:
    # parents before children: a de-identified table follows its parent's rows when they line up
    ordered = sorted(rows_of, key=lambda aid: bool(catalog[aid]["parent_id"]))
    for aid in ordered:
        if aid in fp.assets:
            continue
        rows = rows_of[aid]
        keep = [not (r & person) for r in rows]
        parent = catalog[aid]["parent_id"]
        if parent in fp.assets:
            fp.assets[aid] = catalog[aid]
            continue
        if parent in fp.tables and fp.tables[parent].total == len(rows):
            keep = [k and pk for k, pk in zip(keep, fp.tables[parent].keep, strict=True)]
        removed = keep.count(False)
        if removed == 0 and parent not in fp.tables:
            continue
        if removed == len(rows):
            fp.assets[aid] = catalog[aid]  # nobody else's rows in it
        else:
            fp.tables[aid] = TableRows(aid, removed, len(rows), keep)
    _add_descendants(fp.assets, catalog)
    for aid in list(fp.tables):
        if aid in fp.assets:
            del fp.tables[aid]


def _quarantine(fp: Footprint, region: Region, scan: Scanner, person: set[str]) -> None:
    vins = fp.vins
    for q in region.catalog.list_quarantine(region=region.name):
        vin = vehicle_of_path(q["source_path"])
        if vin and pseudonym(scan.key, vin, "vin") in vins:
            fp.quarantine[q["id"]] = q
            continue
        texts = [q["source_path"], q["reason"]]
        data = _read(region, q["sha256"], "quarantine") if q["sha256"] else None
        sets: list[set[str]] = []
        if data is not None:
            table = _read_table(data)
            sets = scan.rows(table) if table is not None else []
            if table is None:
                texts.append(data[:TEXT_LIMIT].decode("utf-8", errors="replace"))
        sets += scan.texts(texts)
        if any(s & person for s in sets):
            fp.quarantine[q["id"]] = q


def _export_plans(fp: Footprint, region: Region, scan: Scanner, person: set[str]) -> None:
    """Plans made over HTTP (drafts and signed ones, kept in the catalog) whose items name the person: a
    plan lists each asset by path, and a vehicle's paths hold its VIN."""
    theirs = set(fp.assets)
    for plan_id, body in PlanRepository(region.catalog).bodies():
        try:
            strings = sorted(set(_json_strings(json.loads(body))))
        except ValueError:
            strings = [body]
        if theirs.intersection(strings) or any(found & person for found in scan.texts(strings)):
            fp.export_plans.append(plan_id)


def _left_and_counted(fp: Footprint, region: Region, person: set[str]) -> None:
    touched = fp.touched()
    records = SubjectRecords(region.catalog)
    for e in records.exports_with():
        theirs = sorted({a["asset_id"] for a in e["assets"]} & touched)
        if theirs:
            fp.packages.append({"package_id": e["package_id"], "destination": e["destination"],
                                "status": e["status"], "exported_at": e["created_at"].isoformat(), "assets": theirs})
    fp.ledger = records.ledger_rows(person)
