"""Vectorized scan of table columns for Chinese personal identifiers.

Arrow's RE2 kernels do the matching, column by column, with no Python loop over cells:

1. A column that repeats itself (a VIN or a phone number per ticket) is dictionary-encoded and its
   distinct values are scanned once; rows map back through the indices.
2. One multi-pattern pass (every entity's pattern as alternatives, a DFA without captures) finds
   the values that could hold any identifier; nothing else is looked at again.
3. Per entity, on those candidates only: a match pass, then the value itself where the whole cell
   is the identifier (an anchored match), and a capturing extract only for identifiers inside text.
4. Candidates are validated in numpy: GB 11643 check characters for resident IDs, ISO 3779 check
   digits for VINs, plate shapes.

Columns are scanned in parallel threads (Arrow releases the GIL).
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


SAMPLE_ROWS = 2000


def _strip_groups(pattern: str) -> str:
    return pattern.replace("(?P<v>", "(?:")


def _group(pattern: str) -> str:
    """The body of the named group `v` of an entity's pattern: what a whole cell must be to be the identifier."""
    start = pattern.index("(?P<v>") + len("(?P<v>")
    depth = 1
    for i in range(start, len(pattern)):
        depth += {"(": 1, ")": -1}.get(pattern[i], 0) if pattern[i - 1] != "\\" else 0
        if depth == 0:
            return pattern[start:i]
    raise ValueError(f"unbalanced group in {pattern!r}")


def _mask(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _entity_values(candidates: pa.Array, entity: Entity) -> tuple[pa.Array, np.ndarray] | None:
    """One entity among candidate values: its validated identifiers aligned with them (null: none) and the
    mask of the candidates its pattern matched."""
    hit = _mask(pc.fill_null(pc.match_substring_regex(candidates, _strip_groups(entity.pattern)), False))
    if not hit.any():
        return None
    where = np.flatnonzero(hit)
    sub = candidates.take(pa.array(where))
    whole = _mask(pc.match_substring_regex(sub, f"^(?:{_group(entity.pattern)})$"))
    if whole.all():
        values = sub
    else:  # identifiers inside text: the capturing extract, on those values only
        inner = pc.struct_field(pc.extract_regex(sub.filter(pa.array(~whole)), entity.pattern), [0])
        order = np.concatenate([np.flatnonzero(whole), np.flatnonzero(~whole)])
        values = pa.concat_arrays([sub.filter(pa.array(whole)), inner]).take(pa.array(np.argsort(order)))
    ok = entity.validate(values)
    valid = np.zeros(len(values), dtype=bool)
    valid[np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False))[ok]] = True
    out = np.full(len(candidates), -1, dtype=np.int64)
    out[where[valid]] = np.arange(int(valid.sum()))
    return values.filter(pa.array(valid)).take(pa.array(out, mask=out < 0)), hit


DISTINCT_SAMPLE = 16384


def _distinct(col: pa.ChunkedArray) -> tuple[pa.Array, pa.Array | None]:
    """The distinct values to scan and the row → value indices; a column that does not repeat, as it is.

    Encoding costs one hash pass; every regex pass after it then runs once per distinct value, which
    for a VIN or a phone number repeated per ticket is a fraction of the rows. Rows spread over the
    whole column tell whether it repeats (a sorted table's head would show only distinct values)."""
    values = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(values) <= 2 * DISTINCT_SAMPLE:
        return values, None
    spread = values.take(pa.array(np.linspace(0, len(values) - 1, DISTINCT_SAMPLE).astype(np.int64)))
    if pc.count_distinct(spread).as_py() > 0.99 * DISTINCT_SAMPLE:
        return values, None  # (nearly) every value distinct: encoding would only add a pass
    encoded = pc.dictionary_encode(values)
    return encoded.dictionary, encoded.indices


def _union(entities: list[Entity] | tuple[Entity, ...]) -> str:
    return "|".join(f"(?:{_strip_groups(e.pattern)})" for e in entities)


def _entities_in(candidates: pa.Array, positions: np.ndarray) -> list[tuple[Entity, np.ndarray]]:
    """Which entities to look for at which value positions: those a sample of the candidates shows, at every
    candidate; the others, found by one more multi-pattern pass, only where that pass matched."""
    probe = candidates.slice(0, SAMPLE_ROWS)
    seen = [e for e in ENTITIES if pc.any(pc.match_substring_regex(probe, _strip_groups(e.pattern))).as_py()]
    jobs = [(e, positions) for e in seen]
    rest = [e for e in ENTITIES if e not in seen]
    if rest and len(candidates) > len(probe):
        mask = _mask(pc.fill_null(pc.match_substring_regex(candidates, _union(rest)), False))
        if mask.any():
            jobs += [(e, positions[mask]) for e in rest]
    return jobs


UNION = _union(ENTITIES)


def _parts(col: pa.ChunkedArray) -> list[tuple[pa.Array, np.ndarray | None, int]]:
    """(values to scan, row → value indices or None, rows) per part of a column. A column read as dictionaries
    (`read_table_for_scan`) brings its own per-row-group dictionaries; any other is encoded here if it repeats."""
    if pa.types.is_dictionary(col.type):
        # a reader hands each batch of one row group the same dictionary: scan it once for all of them
        groups: dict[tuple, list] = {}
        for chunk in col.chunks:
            key = (len(chunk.dictionary), tuple(b.address if b is not None else 0 for b in chunk.dictionary.buffers()))
            groups.setdefault(key, []).append(chunk)
        if len(groups) == len(col.chunks) or any(list(g) != col.chunks[i:i + len(g)] for i, g in _runs(groups)):
            groups = {(i,): [chunk] for i, chunk in enumerate(col.chunks)}  # not in runs: keep the row order simple
        out = []
        for chunks in groups.values():
            dictionary = chunks[0].dictionary
            values = dictionary if pa.types.is_string(dictionary.type) else dictionary.cast(pa.string())
            # a null index points one past the values, where the lookups below keep a "none"
            rows = np.concatenate([pc.fill_null(c.indices, len(values)).to_numpy(zero_copy_only=False)
                                   .astype(np.int64) for c in chunks])
            out.append((values, rows, len(rows)))
        return out
    values, rows = _distinct(col)
    return [(values, None if rows is None else pc.fill_null(rows, len(values)).to_numpy(zero_copy_only=False)
             .astype(np.int64), len(values) if rows is None else len(rows))]


def _runs(groups: dict[tuple, list]) -> list[tuple[int, list]]:
    """(first chunk position, chunks) of each group, assuming the groups follow each other in order."""
    out, position = [], 0
    for chunks in groups.values():
        out.append((position, chunks))
        position += len(chunks)
    return out


def _scan_part(values: pa.Array, rows: np.ndarray | None) -> dict[str, tuple[pa.Array, int]]:
    """Per entity found in one part: its validated values aligned with the part's rows, and its candidate rows."""
    candidate = np.flatnonzero(_mask(pc.fill_null(pc.match_substring_regex(values, UNION), False)))
    if len(candidate) == 0:
        return {}
    out = {}
    for entity, subset in _entities_in(values.take(pa.array(candidate)), candidate):
        found = _entity_values(values.take(pa.array(subset)), entity)
        if found is None:
            continue
        valid, hit = found
        per_value = np.full(len(values) + 1, -1, dtype=np.int64)  # the extra slot: null rows
        per_value[subset] = np.arange(len(subset))
        row_of = per_value[: len(values)] if rows is None else per_value[rows]
        aligned = valid.take(pa.array(row_of, mask=row_of < 0))  # back to the rows, through the indices
        matched = np.zeros(len(values) + 1, dtype=bool)
        matched[subset[hit]] = True
        out[entity.name] = (aligned, int(matched[: len(values)].sum() if rows is None else matched[rows].sum()))
    return out


def _scan_column(name: str, col: pa.ChunkedArray) -> list[tuple[Entity, ColumnHit, pa.Array]]:
    """Every entity found in one column: (entity, hit, validated values aligned with the rows, null: none)."""
    parts = _parts(col)
    found = [_scan_part(values, rows) for values, rows, _ in parts]
    out = []
    for entity in ENTITIES:
        if not any(entity.name in f for f in found):
            continue
        pieces = [f[entity.name][0] if entity.name in f else pa.nulls(length, pa.string())
                  for f, (_, _, length) in zip(found, parts, strict=True)]
        aligned = pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]
        matches = len(aligned) - aligned.null_count
        if matches:
            candidates = sum(f[entity.name][1] for f in found if entity.name in f)
            out.append((entity, ColumnHit(name, entity.name, matches, candidates), aligned))
    return out


def _string_columns(table: pa.Table) -> list[tuple[str, pa.ChunkedArray]]:
    out = []
    for name in table.column_names:
        col = table.column(name)
        value_type = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
            out.append((name, col))
    return out


def read_table_for_scan(source: object, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file (path or file object) for `scan_table`: string columns that the file keeps
    dictionary-encoded are read as those dictionaries, which hands the scan each row group's distinct values
    without hashing a row. Which ones: a few bytes per row in every row group (indices, not strings) can only
    be dictionary pages; a column that fell back to plain pages is read as strings (encoding it on read would
    hash every row)."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(source)
    schema = meta.schema.to_arrow_schema()
    groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
    dictionary = [field.name for i, field in enumerate(schema)
                  if (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)) and groups
                  and all(g.num_rows and g.column(i).has_dictionary_page
                          and g.column(i).total_uncompressed_size / g.num_rows < DICTIONARY_BYTES_PER_ROW
                          for g in groups)]
    if hasattr(source, "seek"):
        source.seek(0)
    return pq.read_table(source, columns=columns, read_dictionary=dictionary)


# A dictionary-encoded column chunk holds bit-packed indices (a few bytes a row) and a dictionary page of at
# most 1 MiB; plain strings cost their length plus 4 bytes a row.
DICTIONARY_BYTES_PER_ROW = 8


def scan_table(table: pa.Table, threads: int = 2) -> ScanResult:
    """Find identifiers in every string column; set policy features and a subject per row."""
    result = ScanResult(rows=table.num_rows)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        outputs = [hit for hits in pool.map(lambda nc: _scan_column(*nc), _string_columns(table)) for hit in hits]
    found: dict[str, list[pa.Array]] = {}
    for entity, hit, values in outputs:
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
        outputs = [hit for hits in pool.map(lambda nc: _scan_column(*nc), _string_columns(table)) for hit in hits]
    return [(entity.domain, values) for entity, _, values in outputs]
