"""The fast PII scan (dictionaries, one multi-pattern pass, extracts only where needed) finds exactly what the
plain scan finds: every entity's capturing extract over every cell, then the same validation. Whatever shape the
column has (chunks cut anywhere, large strings, dictionaries per chunk, nulls) and whichever way the scan takes
(encoded or as it is)."""

from __future__ import annotations

import io
import math
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetgate.classify import pii_scan
from fleetgate.classify.pii_scan import (
    ENTITIES,
    SUBJECT_PRIORITY,
    identifier_values,
    read_table_for_scan,
    scan_table,
)
from fleetgate.sample import identities


def reference(table: pa.Table) -> tuple[set[tuple], list]:
    """Per column and entity, the capturing extract over every cell and the validation: the definition."""
    hits, subjects, _ = reference_values(table)
    return hits, subjects


def reference_values(table: pa.Table) -> tuple[set[tuple], list, list[tuple[str, list]]]:
    """The definition's hits, row subjects and, per column and entity found, (domain, value per row or None)."""
    hits, found, values_found = set(), {}, []
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if not pa.types.is_string(col.type):
            continue
        for entity in ENTITIES:
            values = pc.struct_field(pc.extract_regex(col, entity.pattern), [0])
            candidates = len(values) - values.null_count
            if not candidates:
                continue
            ok = entity.validate(values)
            keep = np.zeros(len(values), dtype=bool)
            keep[np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False))[ok]] = True
            if keep.any():
                hits.add((name, entity.name, int(keep.sum()), candidates))
                per_row = [v if k else None for v, k in zip(values.to_pylist(), keep, strict=True)]
                found.setdefault(entity.name, []).append(per_row)
                values_found.append((entity.domain, per_row))
    subjects = []
    for row in range(table.num_rows):
        subject = None
        for name in SUBJECT_PRIORITY:
            for values in found.get(name, []):
                if subject is None and values[row] is not None:
                    subject = (next(e.domain for e in ENTITIES if e.name == name), values[row])
        subjects.append(subject)
    return hits, subjects, values_found


def _pool(seed: int) -> list[str | None]:
    rng = np.random.default_rng(seed)
    good = [identities.resident_id(rng), identities.vin(rng), identities.mobile(rng), identities.plate(rng, "blue"),
            "li.na@example.cn"]
    bad = [good[0][:-1] + ("0" if good[0][-1] != "0" else "1"), good[1][:8] + "Z" + good[1][9:], "1" + good[0]]
    texts = [f"客户电话{identities.mobile(rng)}，备注", f"+86 {identities.mobile(rng)}", f"车牌 {good[3]} 维修",
             f"mail {good[4]}; id {good[0]}", "常规保养", "AS-000123", ""]
    return good + bad + texts + [None]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6000), st.data())
def test_the_fast_scan_finds_what_every_cell_extracted_finds(seed: int, rows: int, data: st.DataObject) -> None:
    pool = _pool(seed)
    rng = np.random.default_rng(seed)
    columns = {}
    for c in range(data.draw(st.integers(1, 4))):
        width = data.draw(st.integers(1, len(pool)))  # few distinct values (dictionary path) or many
        picks = rng.integers(0, width, rows)
        unique = data.draw(st.booleans())
        columns[f"c{c}"] = [None if pool[i] is None else pool[i] + (f" #{n}" if unique else "")
                            for n, i in enumerate(picks)]
    table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    hits, subjects = reference(table)
    buf = io.BytesIO()  # as classify reads it: from Parquet, string columns as per-row-group dictionaries
    pq.write_table(table, buf, row_group_size=data.draw(st.sampled_from([500, 2500, 10_000])))
    buf.seek(0)
    for scanned in (table, read_table_for_scan(buf)):
        result = scan_table(scanned)
        assert {(h.column, h.entity, h.matches, h.candidates) for h in result.hits
                if h.entity != "person_name"} == hits
        assert result.row_subjects == subjects


def _fragments(seed: int) -> list[str]:
    """Pieces of cells: identifiers (valid, one character off, inside longer runs), their prefixes and
    surroundings, Chinese and ASCII text, digits."""
    rng = np.random.default_rng(seed)
    rid, vin, mobile = identities.resident_id(rng), identities.vin(rng), identities.mobile(rng)
    plates = [identities.plate(rng, "blue"), identities.plate(rng, "green")]
    return [rid, rid[:-1] + ("0" if rid[-1] != "0" else "1"), vin, vin[:8] + "Z" + vin[9:], mobile, "+86 ", "86-",
            "+86", *plates, plates[0][:-1], "li.na@example.cn", "a@b.c", "@", ".com", "客户电话", "，", "京A", "車",
            "维修", " ", "-", "x", "Q", "0", "7", "1" + mobile, mobile[:7], vin[:9], "é", "\n"]


@st.composite
def _cells(draw: st.DrawFn, fragments: list[str]) -> str | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    pieces = draw(st.lists(st.one_of(st.sampled_from(fragments), st.text(alphabet="0123456789AXx中 @.", max_size=4)),
                           max_size=5))
    return "".join(pieces)


def _shaped(values: list[str | None], data: st.DataObject) -> pa.ChunkedArray:
    """The same values as a column of some shape: cut into chunks anywhere (each a slice of one buffer, so its
    offsets start inside it), as large strings, or as dictionaries (one per chunk or one shared)."""
    kind = data.draw(st.sampled_from(["string", "large_string", "dictionary", "shared dictionary"]))
    whole = pa.array(values, pa.large_string() if kind == "large_string" else pa.string())
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(values)), max_size=4))) | {0, len(values)})
    chunks = [whole.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)] or [whole]
    if kind == "dictionary":
        chunks = [pc.dictionary_encode(c) for c in chunks]
    elif kind == "shared dictionary":
        chunks = pc.dictionary_encode(pa.chunked_array(chunks)).chunks
    return pa.chunked_array(chunks)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.data())
def test_identifiers_in_any_text_and_column_shape_are_found_as_the_definition_finds_them(
        seed: int, data: st.DataObject) -> None:
    fragments = _fragments(seed)
    rows = data.draw(st.integers(1, 120))
    columns = {}
    for c in range(data.draw(st.integers(1, 3))):
        distinct = data.draw(st.lists(_cells(fragments), min_size=1, max_size=rows))
        picks = data.draw(st.lists(st.integers(0, len(distinct) - 1), min_size=rows, max_size=rows))
        columns[f"c{c}"] = [distinct[i] for i in picks]  # repeating values, as a ticket table repeats its VINs
    hits, subjects, values = reference_values(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}))
    shaped = pa.table({k: _shaped(v, data) for k, v in columns.items()})
    encode = data.draw(st.booleans())  # a plain column scanned encoded or as it is: the same findings
    with mock.patch.object(pii_scan, "_encoding_pays", lambda col: encode):
        result = scan_table(shaped, threads=data.draw(st.sampled_from([1, 2])))
        found = identifier_values(shaped)
    assert {(h.column, h.entity, h.matches, h.candidates) for h in result.hits if h.entity != "person_name"} == hits
    assert result.row_subjects == subjects
    assert [(domain, v.to_pylist()) for domain, v in found] == values
    assert sorted(result.distinct_subjects()) == sorted({s for s in subjects if s is not None})


@given(st.integers(10, 10**7))
def test_the_distinct_count_of_a_column_is_recovered_from_its_sample(distinct: int) -> None:
    drawn = pii_scan.DISTINCT_SAMPLE
    def shown(d: float) -> float:  # how many distinct values a sample of rows drawn evenly from d values shows
        return -d * math.expm1(-drawn / d)
    seen = round(shown(distinct))
    if seen < drawn:
        estimate = pii_scan._estimated_distinct(seen, drawn)
        assert abs(shown(estimate) - seen) < 1e-3 * seen  # the one D that explains the sample
        if seen < 0.9 * drawn:  # where the sample still tells them apart: close to the truth
            assert abs(estimate - distinct) <= 0.01 * distinct
    else:
        assert pii_scan._estimated_distinct(seen, drawn) == math.inf


def test_a_repeating_column_of_identifiers_is_encoded_and_one_of_distinct_tickets_is_not() -> None:
    rng = np.random.default_rng(5)
    vins = [identities.vin(rng) for _ in range(2000)]
    rows = 4 * pii_scan.DISTINCT_SAMPLE
    repeating = pa.chunked_array([pa.array([vins[i] for i in rng.integers(0, len(vins), rows)])])
    tickets = pa.chunked_array([pa.array([f"AS-{i:07d}" for i in range(rows)])])
    assert pii_scan._encoding_pays(repeating)
    assert not pii_scan._encoding_pays(tickets)
