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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"


_VIN_VALUES = np.zeros(256, dtype=np.int64)
for _chars, _values in (("0123456789", range(10)), ("ABCDEFGH", range(1, 9)), ("JKLMN", range(1, 6)),
                        ("P", [7]), ("R", [9]), ("STUVWXYZ", range(2, 10))):
    for _c, _v in zip(_chars, _values, strict=True):
        _VIN_VALUES[ord(_c)] = _v
_VIN_WEIGHTS = np.array([8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2], dtype=np.int64)
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)


def _fixed_width(values: pa.Array, width: int) -> np.ndarray:
    """The non-null strings of `values` (each exactly `width` ASCII bytes) as an (n, width) uint8 matrix."""
    values = values.drop_null()
    if len(values) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.reshape(len(values), width)


def _valid_resident_ids(values: pa.Array) -> np.ndarray:
    m = _fixed_width(values, 18)
    digits = (m[:, :17] - ord("0")).astype(np.int64)
    expected = _ID_CHECK[(digits @ _ID_WEIGHTS) % 11]
    return expected == np.where(m[:, 17] == ord("x"), ord("X"), m[:, 17])


def _valid_vins(values: pa.Array) -> np.ndarray:
    m = _fixed_width(values, 17)
    remainder = (_VIN_VALUES[m] @ _VIN_WEIGHTS) % 11
    expected = np.where(remainder == 10, ord("X"), remainder + ord("0"))
    return expected == m[:, 8]


def _valid_plates(values: pa.Array) -> np.ndarray:
    # 7 characters for petrol cars; 8 for new-energy cars, whose third character (small) or
    # last character (large) is D or F.
    values = values.drop_null()
    length = pc.utf8_length(values).to_numpy(zero_copy_only=False)
    third = pc.utf8_slice_codeunits(values, 2, 3)
    last = pc.utf8_slice_codeunits(values, -1)
    nev = pc.or_(pc.is_in(third, pa.array(["D", "F"])), pc.is_in(last, pa.array(["D", "F"])))
    return (length == 7) | ((length == 8) & nev.to_numpy(zero_copy_only=False))


def _all_valid(values: pa.Array) -> np.ndarray:
    return np.ones(len(values) - values.null_count, dtype=bool)


@dataclass(frozen=True)
class Entity:
    name: str
    feature: str        # the policy feature it sets
    domain: str         # pseudonym domain
    pattern: str        # RE2 with one named group `v`
    validate: Callable[[pa.Array], np.ndarray]  # over the non-null candidates, in order


# Digits next to a match must not be digits, so '110101199003074578' inside a longer number is no ID.
ENTITIES: tuple[Entity, ...] = (
    Entity("resident_id", "national_id", "resident_id",
           r"(?:^|[^0-9])(?P<v>[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
           r"(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx])(?:[^0-9]|$)",
           _valid_resident_ids),
    Entity("vin", "vin", "vin", r"(?:^|[^A-Z0-9])(?P<v>[A-HJ-NPR-Z0-9]{17})(?:[^A-Z0-9]|$)", _valid_vins),
    Entity("mobile", "owner_contact", "mobile", r"(?:^|[^0-9])(?:\+?86[- ]?)?(?P<v>1[3-9][0-9]{9})(?:[^0-9]|$)",
           _all_valid),
    Entity("plate", "plates", "plate", rf"(?P<v>[{_PROVINCES}][A-HJ-NP-Z][A-HJ-NP-Z0-9]{{5,6}})", _valid_plates),
    Entity("email", "owner_contact", "email",
           r"(?P<v>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})", _all_valid),
)
# Which identifier names the person of a row, best first: a VIN links a person's records across tables.
SUBJECT_PRIORITY = ("vin", "resident_id", "mobile", "email", "plate")
CJK_NAME = re.compile(r"^[\u4e00-\u9fff]{2,4}\Z")
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
    # Per row, the best identifier found in it, as "domain\x00value"; null where the row has none.
    subjects: pa.Array | None = None

    @property
    def row_subjects(self) -> list[tuple[str, str] | None]:
        """Per row, (domain, value) of its subject, or None."""
        values = self.subjects.to_pylist() if self.subjects is not None else [None] * self.rows
        return [None if v is None else tuple(v.split("\x00", 1)) for v in values]

    def distinct_subjects(self) -> list[tuple[str, str]]:
        """(domain, value) of each distinct subject of the table."""
        if self.subjects is None:
            return []
        return [tuple(v.split("\x00", 1)) for v in pc.unique(self.subjects.drop_null()).to_pylist()]

    def evidence(self) -> list[dict]:
        return [{"column": h.column, "entity": h.entity, "matches": h.matches, "candidates": h.candidates}
                for h in self.hits]


def _scan_column(name: str, column: pa.ChunkedArray, entity: Entity) -> tuple[ColumnHit | None, pa.Array | None]:
    """Validated matches of one entity in one column, as an array aligned with the rows (null: none)."""
    values = pc.struct_field(pc.extract_regex(column, entity.pattern), [0])
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    candidates = len(values) - values.null_count
    if candidates == 0:
        return None, None
    ok = entity.validate(values)
    matches = int(ok.sum())
    if matches == 0:
        return None, None
    if matches < candidates:  # blank out the candidates that failed validation
        keep = np.zeros(len(values), dtype=bool)
        keep[np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False))[ok]] = True
        values = pc.if_else(pa.array(keep), values, pa.scalar(None, pa.string()))
    return ColumnHit(name, entity.name, matches, candidates), values


def _string_columns(table: pa.Table) -> list[tuple[str, pa.ChunkedArray]]:
    out = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out.append((name, col))
    return out


SAMPLE_ROWS = 2000


def _strip_groups(pattern: str) -> str:
    return pattern.replace("(?P<v>", "(?:")


def _column_jobs(name: str, col: pa.ChunkedArray) -> list[tuple[str, pa.ChunkedArray, Entity]]:
    """Which entities to extract from a column, screened with one combined pass.

    Entities seen in a sample of the column are extracted in full. For the rest, one RE2 pass with
    all their patterns as alternatives finds the rows that could hold any of them; only those rows
    are searched entity by entity. Every row is still covered by every pattern.
    """
    sample = col.slice(0, SAMPLE_ROWS)
    seen = [e for e in ENTITIES if pc.any(pc.match_substring_regex(sample, _strip_groups(e.pattern))).as_py()]
    rest = [e for e in ENTITIES if e not in seen]
    jobs = [(name, col, e) for e in seen]
    if rest:
        combined = "|".join(f"(?:{_strip_groups(e.pattern)})" for e in rest)
        mask = pc.match_substring_regex(col, combined)
        if pc.any(mask).as_py():
            jobs += [(name, pc.if_else(mask, col, pa.scalar(None, col.type)), e) for e in rest]
    return jobs


def scan_table(table: pa.Table, threads: int = 2) -> ScanResult:
    """Find identifiers in every string column; set policy features and a subject per row."""
    result = ScanResult(rows=table.num_rows)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        jobs = [j for js in pool.map(lambda nc: _column_jobs(*nc), _string_columns(table)) for j in js]
        outputs = list(pool.map(lambda job: (job, _scan_column(*job)), jobs))
    found: dict[str, list[pa.Array]] = {}
    for (_name, _col, entity), (hit, values) in outputs:
        if hit is None:
            continue
        result.hits.append(hit)
        result.features.add(entity.feature)
        found.setdefault(entity.name, []).append(values)
    # The row's subject: its best identifier (VIN first), as "domain\x00value"; null when it has none.
    ordered = [pc.binary_join_element_wise(pa.scalar(next(e.domain for e in ENTITIES if e.name == name)), v, "\x00")
               for name in SUBJECT_PRIORITY for v in found.get(name, [])]
    result.subjects = (pc.coalesce(*ordered) if ordered else pa.nulls(table.num_rows, pa.string()))
    for name, col in _string_columns(table):
        if name.lower() in NAME_COLUMNS:
            sample = [v for v in col.slice(0, 200).to_pylist() if v]
            if sample and sum(bool(CJK_NAME.match(v)) for v in sample) >= 0.8 * len(sample):
                result.features.add("owner_contact")
                result.hits.append(ColumnHit(name, "person_name", len(sample), len(sample)))
    return result


def identifier_values(table: pa.Table, threads: int = 2) -> list[tuple[str, pa.Array]]:
    """Every validated identifier of every string column, as (pseudonym domain, values aligned with the
    rows, null where a row has none): what finds one person's rows (`fleetgate subject find`)."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        jobs = [j for js in pool.map(lambda nc: _column_jobs(*nc), _string_columns(table)) for j in js]
        outputs = list(pool.map(lambda job: (job[2], _scan_column(*job)[1]), jobs))
    return [(entity.domain, values) for entity, values in outputs if values is not None]
