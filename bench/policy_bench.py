"""Policy benchmarks: item decisions per second, and PII-scan throughput against a Parquet read."""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fleetgate.classify.pii_scan import read_table_for_scan, scan_table
from fleetgate.policy import PolicyEngine, Ytd, load_packs, parse_request
from fleetgate.policy.packs import DEFAULT_PACKS_BY_JURISDICTION
from fleetgate.policy.vocabulary import EXEMPTIONS, FEATURES, KINDS
from fleetgate.sample import identities


def _request(n: int, distinct: bool, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    kinds, feats, exemptions = sorted(KINDS), sorted(FEATURES), [None] * 6 + sorted(EXEMPTIONS)
    items = []
    for i in range(n):
        if distinct:  # every item its own shape: the engine cannot reuse any result
            k = i
            features = [f for bit, f in enumerate(feats) if (k >> bit) & 1]
            kind = kinds[(k >> len(feats)) % len(kinds)]
            anon, pseudo = bool((i // 7) % 2), bool((i // 11) % 2)
            exemption = exemptions[(i // 13) % len(exemptions)]
        else:  # a catalog-like mix: a few kinds and feature sets repeat
            kind = str(rng.choice(kinds))
            features = sorted(rng.choice(feats, int(rng.integers(0, 3)), replace=False).tolist())
            anon, pseudo, exemption = bool(rng.random() < 0.1), bool(rng.random() < 0.2), None
        items.append({"id": f"i{i}", "kind": kind, "features": features, "anonymized": anon,
                      "pseudonymized": pseudo, "exemption": exemption, "subjects": int(rng.integers(0, 500))})
    return {"as_of": "2026-11-21", "destination": "US", "exporter": {"zone": "lingang"}, "items": items}


def bench_decisions(runs: int) -> list[str]:
    packs = load_packs(DEFAULT_PACKS_BY_JURISDICTION["CN"])
    in_force = [p for p in packs if p.in_force(dt.date(2026, 11, 21))]
    rules = sum(len(p.rules) for p in in_force)
    rows = []
    for label, distinct in (("catalog-like mix", False), ("every item a distinct shape", True)):
        request = parse_request(_request(10_000, distinct))
        shapes = len({i.shape() for i in request.items})
        for memo in (True, False):
            engine = PolicyEngine(packs, memoize=memo)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                engine.decide(request, Ytd())
                times.append(time.perf_counter() - start)
            med = statistics.median(times)
            rows.append((label, shapes, "on" if memo else "off", med, 10_000 / med))
    out = ["## Policy decisions (issue 3)", "",
           f"One request of 10,000 items (as of 2026-11-21, no legal basis or PIPIA recorded, so every PI item "
           f"also gets its blocking obligations) against the {len(in_force)} default CN packs in force that day "
           f"({rules} CEL rules, `common-expression-language` 0.10.0), decided end to end (classify to a fixed "
           "point, count, decide). "
           "The shape cache reuses a result for items that differ only in id and subject count; "
           f"\"off\" evaluates every rule for every item. Median of {runs} runs.", "",
           "| request | distinct shapes | shape cache | median s | item decisions/s |", "|---|---:|---|---:|---:|"]
    out += [f"| {a} | {b:,} | {c} | {d:.3f} | {e:,.0f} |" for a, b, c, d, e in rows]
    typical = rows[0][4]
    worst = min(r[4] for r in rows)
    out += ["", f"A catalog-like request decides **{typical:,.0f} items/s** "
            f"({'meets' if typical >= 20_000 else 'misses'} the 20,000/s target); the adversarial request in which "
            f"no two items share a shape decides {worst:,.0f} items/s "
            f"({'meets' if worst >= 20_000 else 'misses'} it). Rules run on one reused CEL context "
            "(about 0.2-1 µs per rule); converting a Python dict per call cost 10-30 µs.", ""]
    return out


def _identity_pool(n: int, seed: int = 3) -> dict[str, pa.Array]:
    rng = np.random.default_rng(seed)
    pool = {
        "vin": [identities.vin(rng) for _ in range(n)],
        "name": [identities.person_name(rng) for _ in range(n)],
        "phone": [identities.mobile(rng) for _ in range(n)],
        "national_id": [identities.resident_id(rng) for _ in range(n)],
        "address": [identities.address(rng) for _ in range(n)],
        "plate": [identities.plate(rng, "green" if i % 3 == 0 else "blue") for i in range(n)],
    }
    return {k: pa.array(v, pa.string()) for k, v in pool.items()}


def make_pii_tables(folder: Path, target_bytes: int) -> list[Path]:
    """Owner and after-sales Parquet files of about `target_bytes` of string data, from a pool of identities."""
    pool = _identity_pool(50_000)
    rng = np.random.default_rng(4)
    per_row = 175  # bytes of string data per after-sales + owners row pair, measured on the pool
    rows = target_bytes // per_row
    idx = pa.array(rng.integers(0, 50_000, rows))
    owners = pa.table({k: pool[k].take(idx) for k in ("vin", "name", "phone", "national_id", "address")})
    notes = pa.array(np.array(["更换刹车片，客户电话", "前保险杠维修，联系", "常规保养 email:"], dtype=object)[
        rng.integers(0, 3, rows)], pa.string())
    after_sales = pa.table({
        "ticket_id": pc.binary_join_element_wise("AS-", pc.cast(pa.array(np.arange(rows)), pa.string()), ""),
        "vin": pool["vin"].take(idx), "plate": pool["plate"].take(idx), "phone": pool["phone"].take(idx),
        "dealer": pa.array(np.array(["闵行莘庄服务站", "徐汇龙华4S店", "浦东金桥店"], dtype=object)[
            rng.integers(0, 3, rows)], pa.string()),
        "description": pc.binary_join_element_wise(notes, pool["phone"].take(idx), ""),
    })
    paths = [folder / "owners.parquet", folder / "after_sales.parquet"]
    pq.write_table(owners, paths[0])
    pq.write_table(after_sales, paths[1])
    return paths


def _string_bytes(table: pa.Table) -> int:
    return sum(table.column(n).nbytes for n in table.column_names if pa.types.is_string(table.column(n).type))


def _presidio_scan(values: list[str]) -> int:
    from presidio_analyzer import Pattern, PatternRecognizer
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    recognizers = [
        PatternRecognizer(supported_entity="CN_RESIDENT_ID", patterns=[Pattern("id", r"\b\d{17}[\dXx]\b", 0.5)]),
        PatternRecognizer(supported_entity="CN_MOBILE", patterns=[Pattern("mobile", r"(?<!\d)1[3-9]\d{9}(?!\d)", 0.5)]),
        PatternRecognizer(supported_entity="VIN", patterns=[Pattern("vin", r"\b[A-HJ-NPR-Z0-9]{17}\b", 0.5)]),
        PatternRecognizer(supported_entity="CN_PLATE",
                          patterns=[Pattern("plate", r"[\u4e00-\u9fa5][A-Z][A-Z0-9]{5,6}", 0.5)]),
        EmailRecognizer(),
    ]
    found = 0
    for value in values:
        for r in recognizers:
            found += len(r.analyze(value, entities=r.supported_entities, nlp_artifacts=None))
    return found


def bench_pii_scan(work: Path, runs: int, target_bytes: int = 1_000_000_000) -> list[str]:
    paths = make_pii_tables(work, target_bytes)
    tables = [pq.read_table(p) for p in paths]
    size = sum(_string_bytes(t) for t in tables)
    rows_total = sum(t.num_rows for t in tables)
    del tables
    read_t, dict_t, scan_t, loads = [], [], [], []
    for _ in range(runs):
        loads.append(os.getloadavg()[0])
        start = time.perf_counter()
        for p in paths:
            pq.read_table(p)
        read_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        for p in paths:
            read_table_for_scan(p)
        dict_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        for p in paths:
            scan_table(read_table_for_scan(p))  # as classify reads and scans a table
        scan_t.append(time.perf_counter() - start)
    read_med, scan_med, dict_med = statistics.median(read_t), statistics.median(scan_t), statistics.median(dict_t)
    presidio_line = ""
    try:
        sample = pq.read_table(paths[1]).slice(0, 20_000)
        values = [v for n in sample.column_names for v in sample.column(n).to_pylist() if isinstance(v, str)]
        sample_bytes = _string_bytes(sample)
        start = time.perf_counter()
        _presidio_scan(values)
        presidio_mbs = sample_bytes / (time.perf_counter() - start) / 1e6
        presidio_line = (f"| Presidio 2.2 PatternRecognizers, same 5 entities (on a 20,000-row sample, "
                         f"extrapolated) | — | {presidio_mbs:,.1f} | {presidio_mbs / (size / read_med / 1e6):.1%} |")
    except ImportError:
        presidio_line = "| Presidio | not installed (`pip install presidio-analyzer`) | | |"
    read_mbs, scan_mbs = size / read_med / 1e6, size / scan_med / 1e6
    out = ["## PII scan (issue 3)", "",
           f"Owner and after-sales Parquet with {rows_total:,} rows and {size / 1e6:,.0f} MB of string data "
           "(VIN, name, mobile, resident ID, address, plate, free text with embedded phone numbers). "
           "fleetgate's scan reads the file with its string columns as the dictionaries Parquet stores them in (or "
           "encodes a repeating column itself), scans each row group's distinct values once, finds "
           "candidates with one multi-pattern RE2 pass per column, runs per-entity passes and capturing extracts only "
           "where needed, then validates candidates (check digits). The floor is the Parquet read of the same "
           f"columns, measured side by side. Median of {runs} runs, alternating; load average (1 min) during the "
           f"runs {min(loads):.1f}–{max(loads):.1f} (other work shares this 2-core machine). The tables draw on a "
           "pool of 50,000 identities, so identifier columns repeat (as a ticket table repeats its VINs); a column "
           "of distinct values costs one RE2 pass per value plus the per-entity passes on its candidates.",
           "", "| what | median s | MB/s | vs read |", "|---|---:|---:|---:|",
           f"| Parquet read (floor) | {read_med:.2f} | {read_mbs:,.0f} | 100% |",
           f"| Parquet read, string columns as the file's dictionaries (the scan's read) | {dict_med:.2f} | "
           f"{size / dict_med / 1e6:,.0f} | {read_med / dict_med:.0%} |",
           f"| fleetgate scan (read + scan + validate) | {scan_med:.2f} | {scan_mbs:,.0f} "
           f"| {scan_mbs / read_mbs:.0%} |",
           presidio_line, "",
           f"The scan runs at **{scan_mbs / read_mbs:.0%}** of the raw read "
           f"({'meets' if scan_mbs / read_mbs >= 0.5 else 'misses'} the 50% target).", ""]
    return out


