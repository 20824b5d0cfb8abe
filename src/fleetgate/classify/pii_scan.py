"""Vectorized scan of table columns for Chinese personal identifiers: Arrow's RE2 kernels, no Python loop over cells.

1. Which values. A column that Parquet keeps dictionary-encoded is read as its dictionaries
   (`read_table_for_scan`) and scanned as their distinct values, once for all row groups. Any other column is
   dictionary-encoded first where a sample spread over it shows that the repetition spares more passes than
   hashing its rows costs (a VIN or a phone number per ticket, an address per owner); a column of distinct
   values is scanned as it is.
2. One multi-pattern pass per array of values (every entity's pattern as alternatives: one DFA, no captures)
   finds the values that could hold any identifier; nothing else is looked at again.
3. Per entity, on those candidates only: a match pass, a whole-value pass (a value that is the identifier
   whole is its own identifier), and the capturing extract, which takes the first match as the definition
   does, only for identifiers inside text.
4. Validation in numpy: GB 11643 check characters for resident IDs, ISO 3779 check digits for VINs, plate
   shapes.
5. Rows. Counts go through the dictionary indices, and a row's subject is an index into one dictionary of the
   validated identifiers: no string is copied per row.

Columns are scanned in parallel threads (Arrow releases the GIL), the largest first. Hyperscan (one pass of all
patterns with per-pattern ids over each array's buffer) was measured in place of the RE2 passes and did not win:
its pass alone costs what RE2's does (docs/benchmarks.md, "PII scan"), the pass is a small part of the scan, and
it calls back into Python once per match, which a column of identifiers does on every value.
"""

from __future__ import annotations

import math
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
    # Per row, the best identifier found in it, as "domain\x00value"; null where the row has none. A dictionary
    # array: rows point into the identifiers found, no string is copied per row.
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
        present = self.subjects.drop_null()
        if pa.types.is_dictionary(present.type):  # the identifiers the rows use (one may sit in two columns)
            present = present.dictionary.take(pc.unique(present.indices))
        return [tuple(v.split("\x00", 1)) for v in pc.unique(present).to_pylist()]

    def evidence(self) -> list[dict]:
        return [{"column": h.column, "entity": h.entity, "matches": h.matches, "candidates": h.candidates}
                for h in self.hits]


SAMPLE_ROWS = 2000


def _plain(pattern: str) -> str:
    """A pattern without its capturing group: what RE2 matches with its DFA, without captures."""
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


def _union(entities: list[Entity] | tuple[Entity, ...]) -> str:
    return "|".join(f"(?:{_plain(e.pattern)})" for e in entities)


UNION = _union(ENTITIES)


def _mask(array: pa.Array) -> np.ndarray:
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


@dataclass
class _Found:
    """One entity among an array of values: the positions of the values its pattern matches (the candidates),
    and the positions and identifiers of those that validate."""
    candidates: np.ndarray
    positions: np.ndarray
    values: pa.Array


def _entity_found(values: pa.Array, entity: Entity, matched: np.ndarray) -> _Found:
    """The candidates of one entity validated. A value that is the identifier whole is its own identifier (its
    first match is all of it); for one inside text, RE2's capturing extract takes the first match, as the
    definition does, on those values only."""
    taken = values.take(pa.array(matched))
    whole = _mask(pc.match_substring_regex(taken, f"^(?:{_group(entity.pattern)})$"))
    positions, found = [matched[whole]], [taken.filter(pa.array(whole))]
    if not whole.all():
        extracted = pc.struct_field(pc.extract_regex(taken.filter(pa.array(~whole)), entity.pattern), [0])
        ok = np.asarray(extracted.is_valid())
        positions.append(matched[~whole][ok])
        found.append(extracted.filter(pa.array(ok)))
    candidates = np.concatenate(positions)
    identifiers = pa.concat_arrays([f.cast(pa.string()) for f in found])
    valid = entity.validate(identifiers)
    return _Found(candidates, candidates[valid], identifiers.filter(pa.array(valid)))


def _entities_in(candidates: pa.Array) -> list[tuple[Entity, np.ndarray]]:
    """Which entities to look for at which candidates: those a probe of the first candidates shows, at every
    candidate; the others, found by one more pass for all of them at once, only where that pass matched."""
    probe = candidates.slice(0, SAMPLE_ROWS)
    seen = [e for e in ENTITIES if pc.any(pc.match_substring_regex(probe, _plain(e.pattern))).as_py()]
    jobs = [(e, np.arange(len(candidates))) for e in seen]
    rest = [e for e in ENTITIES if e not in seen]
    if rest and len(candidates) > len(probe):
        where = np.flatnonzero(_mask(pc.match_substring_regex(candidates, _union(rest))))
        if len(where):
            jobs += [(e, where) for e in rest]
    return jobs


def _scan_values(values: pa.Array) -> dict[str, _Found]:
    """Per entity found among `values`: its candidates and validated identifiers. One multi-pattern pass over
    every value (every entity's pattern as alternatives: one RE2 DFA, no captures) picks the candidates; the
    per-entity passes run on those only."""
    candidates = np.flatnonzero(_mask(pc.match_substring_regex(values, UNION))) if len(values) else []
    if len(candidates) == 0:
        return {}
    taken = values.take(pa.array(candidates))
    out = {}
    for entity, where in _entities_in(taken):
        sub = taken if len(where) == len(taken) else taken.take(pa.array(where))
        hit = _mask(pc.match_substring_regex(sub, _plain(entity.pattern)))
        if hit.any():
            out[entity.name] = _entity_found(values, entity, candidates[where[hit]])
    return out


@dataclass
class _Run:
    """Consecutive rows of a column: which array of values they read, and at which positions (None: row i
    reads value i)."""
    source: int
    positions: np.ndarray | None
    rows: int


DISTINCT_SAMPLE = 16384
# Rough costs of a row, in RE2 passes over it, measured on the bench's tables: hashing it into a dictionary about
# 3/4 of a pass; matching, extracting and validating an identifier in it about 8 more. Wrong constants cost time,
# never findings: encoded or not, a column yields the same hits.
HASH_COST, MATCH_COST = 0.75, 8.0


def _estimated_distinct(seen: int, drawn: int) -> float:
    """How many distinct values a column holds whose sample of `drawn` rows shows `seen` distinct ones: D with
    D(1 - exp(-drawn/D)) = seen (the expected count when rows draw from D values evenly), by bisection."""
    if seen >= drawn:
        return math.inf
    low, high = float(seen), 2.0 * seen
    while -high * math.expm1(-drawn / high) < seen:
        low, high = high, 2 * high
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if -mid * math.expm1(-drawn / mid) < seen else (low, mid)
    return high


def _spread(col: pa.ChunkedArray, n: int) -> pa.Array:
    """`n` rows spread evenly over a column, taken chunk by chunk (a take across chunks would join them first)."""
    rows = np.linspace(0, len(col) - 1, n).astype(np.int64)
    starts = np.cumsum([0] + [len(c) for c in col.chunks])
    which = np.searchsorted(starts, rows, side="right") - 1
    return pa.concat_arrays([c.take(pa.array(rows[which == k] - starts[k])) for k, c in enumerate(col.chunks)
                             if (which == k).any()])


def _encoding_pays(col: pa.ChunkedArray) -> bool:
    """Whether dictionary-encoding a column of strings spares more passes than hashing its rows costs, judged on
    rows spread over all of it (a sorted table's head would show only distinct values)."""
    if len(col) <= 2 * DISTINCT_SAMPLE:
        return False
    spread = _spread(col, DISTINCT_SAMPLE)
    seen = pc.count_distinct(spread).as_py()
    if seen > 0.99 * DISTINCT_SAMPLE:
        return False
    spared = 1 - min(1.0, _estimated_distinct(seen, DISTINCT_SAMPLE) / len(col))
    matched = _mask(pc.match_substring_regex(spread, UNION)).mean()
    return spared * (1 + MATCH_COST * matched) > HASH_COST


def _indices(chunk: pa.DictionaryArray, null_position: int) -> np.ndarray:
    """A dictionary chunk's indices as positions, `null_position` for null rows."""
    indices = chunk.indices if chunk.indices.type.bit_width >= 32 else chunk.indices.cast(pa.int32())
    if chunk.null_count:
        indices = pc.fill_null(indices, null_position)
    return indices.to_numpy()


def _key(d: pa.Array) -> tuple:
    """Which dictionary this is: a reader hands every batch of one row group the same buffers."""
    return (len(d), d.offset, tuple(b.address if b is not None else 0 for b in d.buffers()))


def _dictionary_sources(col: pa.ChunkedArray) -> tuple[list[pa.Array], list[_Run]]:
    """A column of dictionaries (one per row group): the distinct values of all of them, scanned once, and each
    chunk's rows as positions in those."""
    known: dict[tuple, int] = {}
    arrays = []
    for chunk in col.chunks:
        if known.setdefault(_key(chunk.dictionary), len(known)) == len(arrays):
            arrays.append(chunk.dictionary)
    if len(arrays) == 1:
        values, remap = arrays[0], None
    else:  # row groups' dictionaries share most of their values
        encoded = pc.dictionary_encode(pa.concat_arrays([a.cast(pa.large_string()) for a in arrays]))
        values, remap = encoded.dictionary, encoded.indices.to_numpy()
    starts = np.cumsum([0] + [len(a) for a in arrays])
    runs = []
    for chunk in col.chunks:
        k = known[_key(chunk.dictionary)]
        positions = _indices(chunk, len(arrays[k]))
        if remap is not None:
            positions = np.append(remap[starts[k]: starts[k + 1]], len(values)).astype(np.int32)[positions]
        runs.append(_Run(0, positions, len(chunk)))
    return [values], runs


def _sources(col: pa.ChunkedArray) -> tuple[list[pa.Array], list[_Run]]:
    """The arrays of values to scan for a column, and its rows, in order, as runs over them."""
    if pa.types.is_dictionary(col.type):
        return _dictionary_sources(col)
    if _encoding_pays(col):
        encoded = pc.dictionary_encode(col)  # its chunks share one dictionary
        values = encoded.chunk(0).dictionary
        return [values], [_Run(0, _indices(c, len(values)), len(c)) for c in encoded.chunks]
    chunks = [c for c in col.chunks if len(c)]
    return chunks, [_Run(k, None, len(c)) for k, c in enumerate(chunks)]


@dataclass
class _ColumnFound:
    entity: Entity
    hit: ColumnHit
    codes: np.ndarray       # per row, the position of its identifier in `identifiers`; -1: none
    identifiers: pa.Array


def _rows_reading(source: int, runs: list[_Run], values: int) -> np.ndarray:
    """How many rows read each value of an array (a last slot counts null rows)."""
    counts = np.zeros(values + 1, dtype=np.int64)
    for run in runs:
        if run.source == source:
            counts += 1 if run.positions is None else np.bincount(run.positions, minlength=values + 1)
    return counts


def _scan_column(name: str, col: pa.ChunkedArray) -> list[_ColumnFound]:
    """Every entity found in one column: its counts and, per row, its identifier."""
    sources, runs = _sources(col)
    found = [_scan_values(values) for values in sources]
    counts = {k: _rows_reading(k, runs, len(sources[k])) for k, f in enumerate(found) if f}
    out = []
    for entity in ENTITIES:
        parts = [(k, f[entity.name]) for k, f in enumerate(found) if entity.name in f]
        matches = sum(int(counts[k][p.positions].sum()) for k, p in parts)
        if not matches:
            continue
        candidates = sum(int(counts[k][p.candidates].sum()) for k, p in parts)
        local, base = {}, 0
        for k, p in parts:  # each value's identifier, as a position in the column's identifiers
            local[k] = np.full(len(sources[k]) + 1, -1, dtype=np.int32)
            local[k][p.positions] = base + np.arange(len(p.positions), dtype=np.int32)
            base += len(p.positions)
        codes = np.concatenate([np.full(r.rows, -1, dtype=np.int32) if r.source not in local
                                else local[r.source][: r.rows] if r.positions is None
                                else local[r.source][r.positions] for r in runs])
        identifiers = pa.concat_arrays([p.values for _, p in parts])
        out.append(_ColumnFound(entity, ColumnHit(name, entity.name, matches, candidates), codes, identifiers))
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
    hash every row; the scan encodes it only where that pays)."""
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


def _scan_columns(table: pa.Table, threads: int) -> list[_ColumnFound]:
    """Every column's findings, in column order; the largest columns start first, so that no thread is left
    with a big one at the end."""
    columns = _string_columns(table)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        futures = {name: pool.submit(_scan_column, name, col)
                   for name, col in sorted(columns, key=lambda nc: -nc[1].nbytes)}
        return [f for name, _ in columns for f in futures[name].result()]


def _subjects(rows: int, found: list[_ColumnFound]) -> pa.Array:
    """Per row, its best identifier (VIN first; among equals, the first column) as "domain\\x00value", null where
    it has none: a dictionary array over every column's identifiers."""
    order = [f for name in SUBJECT_PRIORITY for f in found if f.entity.name == name]
    if not order:
        return pa.nulls(rows, pa.string())
    best = np.full(rows, -1, dtype=np.int32)
    base = 0
    for f in order:
        fill = (best < 0) & (f.codes >= 0)
        best[fill] = f.codes[fill] + base
        base += len(f.identifiers)
    dictionary = pa.concat_arrays([pc.binary_join_element_wise(pa.scalar(f.entity.domain), f.identifiers, "\x00")
                                   for f in order])
    return pa.DictionaryArray.from_arrays(pa.array(best, mask=best < 0), dictionary)


def scan_table(table: pa.Table, threads: int = 2) -> ScanResult:
    """Find identifiers in every string column; set policy features and a subject per row."""
    result = ScanResult(rows=table.num_rows)
    found = _scan_columns(table, threads)
    for f in found:
        result.hits.append(f.hit)
        result.features.add(f.entity.feature)
    result.subjects = _subjects(table.num_rows, found)
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
    return [(f.entity.domain, f.identifiers.take(pa.array(f.codes, mask=f.codes < 0)))
            for f in _scan_columns(table, threads)]
