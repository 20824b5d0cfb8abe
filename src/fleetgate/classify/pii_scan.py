"""Vectorized scan of table columns for Chinese personal identifiers.

Arrow's RE2 kernels find candidates column by column (no Python loop over cells); only the
candidates are validated in Python: GB 11643 check characters for resident IDs, ISO 3779 check
digits for VINs, plate shapes. Columns are scanned in parallel threads (Arrow releases the GIL).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from fleetgate.formats.identifiers import is_valid_resident_id, is_valid_vin

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"


def _valid_plate(value: str) -> bool:
    # 7 characters for petrol cars; 8 for new-energy cars, whose third character (small) or
    # last character (large) is D or F.
    if len(value) == 7:
        return True
    return len(value) == 8 and (value[2] in "DF" or value[-1] in "DF")


def _valid_mobile(value: str) -> bool:
    return len(value) == 11 and value[1] in "3456789"


@dataclass(frozen=True)
class Entity:
    name: str
    feature: str        # the policy feature it sets
    domain: str         # pseudonym domain
    pattern: str        # RE2 with one named group `v`
    validate: Callable[[str], bool]


# Digits next to a match must not be digits, so '110101199003074578' inside a longer number is no ID.
ENTITIES: tuple[Entity, ...] = (
    Entity("resident_id", "national_id", "resident_id",
           r"(?:^|[^0-9])(?P<v>[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
           r"(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx])(?:[^0-9]|$)",
           is_valid_resident_id),
    Entity("vin", "vin", "vin", r"(?:^|[^A-Z0-9])(?P<v>[A-HJ-NPR-Z0-9]{17})(?:[^A-Z0-9]|$)", is_valid_vin),
    Entity("mobile", "owner_contact", "mobile", r"(?:^|[^0-9])(?:\+?86[- ]?)?(?P<v>1[3-9][0-9]{9})(?:[^0-9]|$)",
           _valid_mobile),
    Entity("plate", "plates", "plate", rf"(?P<v>[{_PROVINCES}][A-HJ-NP-Z][A-HJ-NP-Z0-9]{{5,6}})", _valid_plate),
    Entity("email", "owner_contact", "email",
           r"(?P<v>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})", lambda v: "@" in v),
)
# Which identifier names the person of a row, best first: a VIN links a person's records across tables.
SUBJECT_PRIORITY = ("vin", "resident_id", "mobile", "email", "plate")
CJK_NAME = re.compile(r"^[\u4e00-\u9fff]{2,4}$")
NAME_COLUMNS = {"name", "owner_name", "customer_name", "driver_name", "姓名"}


@dataclass
class ColumnHit:
    column: str
    entity: str
    matches: int         # validated matches
    candidates: int      # regex candidates, before validation


@dataclass
class ScanResult:
    rows: int
    features: set[str] = field(default_factory=set)
    hits: list[ColumnHit] = field(default_factory=list)
    # Per row, the best identifier found in it, as (domain, value); None where the row has none.
    row_subjects: list[tuple[str, str] | None] = field(default_factory=list)

    def evidence(self) -> list[dict]:
        return [{"column": h.column, "entity": h.entity, "matches": h.matches, "candidates": h.candidates}
                for h in self.hits]


def _scan_column(name: str, column: pa.ChunkedArray, entity: Entity) -> tuple[ColumnHit | None, list[str | None]]:
    extracted = pc.extract_regex(column, entity.pattern)
    values = pc.struct_field(extracted, [0])
    candidates = len(values) - values.null_count
    if candidates == 0:
        return None, []
    found: list[str | None] = values.to_pylist()
    matches = 0
    for i, value in enumerate(found):
        if value is not None:
            if entity.validate(value):
                matches += 1
            else:
                found[i] = None
    if matches == 0:
        return None, []
    return ColumnHit(name, entity.name, matches, candidates), found


def _string_columns(table: pa.Table) -> list[tuple[str, pa.ChunkedArray]]:
    out = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out.append((name, col))
    return out


def scan_table(table: pa.Table, threads: int = 2) -> ScanResult:
    """Find identifiers in every string column; set policy features and a subject per row."""
    result = ScanResult(rows=table.num_rows)
    jobs = [(name, col, entity) for name, col in _string_columns(table) for entity in ENTITIES]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        outputs = list(pool.map(lambda job: (job, _scan_column(*job)), jobs))
    best: list[tuple[int, str, str] | None] = [None] * table.num_rows
    for (_name, _col, entity), (hit, found) in outputs:
        if hit is None:
            continue
        result.hits.append(hit)
        result.features.add(entity.feature)
        rank = SUBJECT_PRIORITY.index(entity.name)
        for row, value in enumerate(found):
            if value is not None and (best[row] is None or rank < best[row][0]):
                best[row] = (rank, entity.domain, value)
    for name, col in _string_columns(table):
        if name.lower() in NAME_COLUMNS:
            sample = [v for v in col.slice(0, 200).to_pylist() if v]
            if sample and sum(bool(CJK_NAME.match(v)) for v in sample) >= 0.8 * len(sample):
                result.features.add("owner_contact")
                result.hits.append(ColumnHit(name, "person_name", len(sample), len(sample)))
    result.row_subjects = [None if b is None else (b[1], b[2]) for b in best]
    return result
