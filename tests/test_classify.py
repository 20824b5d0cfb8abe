"""Content classification, the PII scan and the data-subject ledger."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helpers import run_cli
from fleetgate.classify import classify_region, explain_asset, scan_table
from fleetgate.ingest import ingest_drop
from fleetgate.sample import identities
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace
from fleetgate.workspace.config import save_config

filler = st.text(alphabet="维修客户电话 abc,;:-", max_size=12)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), filler, filler)
def test_valid_identifiers_in_free_text_are_found(seed: int, before: str, after: str) -> None:
    rng = np.random.default_rng(seed)
    rid, vin, phone, plate = (identities.resident_id(rng), identities.vin(rng), identities.mobile(rng),
                              identities.plate(rng, "green"))
    table = pa.table({"note": [f"{before}{rid}{after}", f"{before}{vin}{after}", f"{before}电话{phone}{after}",
                               f"{before}{plate}{after}"]})
    result = scan_table(table)
    assert {"national_id", "vin", "owner_contact", "plates"} <= result.features
    assert result.row_subjects[0] == ("resident_id", rid)
    assert result.row_subjects[1] == ("vin", vin)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_identifiers_with_a_wrong_check_character_are_not_counted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rid, vin = identities.resident_id(rng), identities.vin(rng)
    bad_rid = rid[:17] + ("0" if rid[17] != "0" else "1")
    bad_vin = vin[:8] + ("0" if vin[8] != "0" else "1") + vin[9:]
    result = scan_table(pa.table({"a": [bad_rid], "b": [bad_vin], "c": ["123456789012345678901"]}))
    assert not ({"national_id", "vin"} & result.features)
    assert result.row_subjects == [None]


def test_non_string_and_empty_tables_scan_cleanly() -> None:
    result = scan_table(pa.table({"x": pa.array([1, 2], pa.int64()), "y": pa.array([None, None], pa.string())}))
    assert result.features == set() and result.row_subjects == [None, None]


def _ingested(workspace: Workspace, drop: Path) -> Workspace:
    ingest_drop(workspace.region(), drop)
    return workspace


def test_classify_sample_fleet(workspace: Workspace, sample_drop: Path) -> None:
    _ingested(workspace, sample_drop)
    report = classify_region(workspace)
    assert not report.failed
    reg = workspace.region()
    ledger = Ledger(reg.catalog)
    by_kind: dict[str, dict] = {}
    for row in ledger.classifications():
        asset = reg.catalog.get_asset(row["asset_id"])
        by_kind.setdefault(asset["kind"], row)
    owners = by_kind["owner_record"]
    assert {"national_id", "owner_contact", "vin"} <= set(owners["features"])
    assert owners["subjects"] == 2  # two vehicles, one owner each
    assert owners["outcome"] == "STANDARD_CONTRACT_OR_CERT"  # resident IDs are sensitive: no floor
    assert "geo_precise" in by_kind["gnss_trajectory"]["features"]
    assert by_kind["gnss_trajectory"]["outcome"] == "LOCAL_ONLY"
    assert by_kind["exterior_video"]["outcome"] == "LOCAL_ONLY"
    # cn-shanghai is in Lingang, but the Lingang list's trial ended on 16 May 2025 and this workspace records
    # no renewal (LG-ICV.LAPSED): procurement data without PI leaves under Art 3 instead
    assert by_kind["procurement"]["outcome"] == "EXPORT_FREE"
    assert "LG-ICV.LAPSED" in by_kind["procurement"]["decision"]["rules"]
    assert by_kind["clip_manifest"]["outcome"] == "LOCAL_ONLY"
    assert by_kind["clip_manifest"]["decision"]["reasons"][0] == "unclassified"
    # subjects are stored as keyed pseudonyms, never raw identifiers
    keys = ledger.subjects_of([owners["asset_id"]])
    raw = pq.read_table(sample_drop / "tables" / "owners.parquet").to_pylist()
    raw_values = {v for row in raw for v in row.values()}
    assert len(keys) == 2 and not any(k in raw_values for k, _ in keys)
    explained = explain_asset(workspace, owners["asset_id"])
    assert any("XB-8.SPI" in r for r in explained["decision"]["reasons"])


def test_sensitive_area_polygon_marks_trajectories(workspace: Workspace, sample_drop: Path) -> None:
    _ingested(workspace, sample_drop)
    gnss = next(a for a in workspace.region().catalog.list_assets(kind="gnss_trajectory"))
    with workspace.region().blobs.open(gnss["sha256"]) as fh:
        lat, lon = pq.read_table(fh, columns=["lat", "lon"]).to_pydict().values()
    ring = [[min(lon) - 1e-3, min(lat) - 1e-3], [max(lon) + 1e-3, min(lat) - 1e-3],
            [max(lon) + 1e-3, max(lat) + 1e-3], [min(lon) - 1e-3, max(lat) + 1e-3], [min(lon) - 1e-3, min(lat) - 1e-3]]
    areas = workspace.home / "areas.geojson"
    areas.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "test garrison"},
         "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    workspace.config.regions["cn-shanghai"].sensitive_areas = "areas.geojson"
    workspace.config.regions["cn-shanghai"].surveying_approval = True
    save_config(workspace.config)
    classify_region(workspace)
    row = Ledger(workspace.region().catalog).classification(gnss["id"])
    assert "sensitive_area" in row["features"]
    assert row["outcome"] == "SECURITY_ASSESSMENT"
    assert any(e.get("area") == "test garrison" for e in row["evidence"])


def test_ledger_counts_distinct_people_and_never_loses_concurrent_inserts(workspace: Workspace) -> None:
    ledger = Ledger(workspace.region().catalog)
    catalog = workspace.region().catalog
    with catalog.transaction() as conn:
        assert ledger.record(conn, "acme", 2026, "exp1", [("p1", "pi"), ("p2", "pi"), ("s1", "spi")]) == \
            {"pi": 2, "spi": 1}
    with catalog.transaction() as conn:  # a rerun, and overlap with a new export, add only new people
        assert ledger.record(conn, "acme", 2026, "exp1", [("p1", "pi"), ("p2", "pi")]) == {"pi": 0, "spi": 0}
        assert ledger.record(conn, "acme", 2026, "exp2", [("p2", "pi"), ("p3", "pi")]) == {"pi": 1, "spi": 0}
    assert ledger.counts("acme", 2026) == {"pi": 3, "spi": 1}
    assert ledger.counts("acme", 2027) == {"pi": 0, "spi": 0}

    def worker(n: int) -> None:
        for chunk in range(5):
            with catalog.transaction() as conn:
                ledger.record(conn, "acme", 2027, f"w{n}", [(f"q{(n * 37 + chunk * 11 + i) % 400}", "pi")
                                                            for i in range(60)])
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {f"q{(n * 37 + chunk * 11 + i) % 400}" for n in range(4) for chunk in range(5) for i in range(60)}
    assert ledger.counts("acme", 2027)["pi"] == len(expected)


def test_decide_reads_ytd_from_the_ledger_when_the_request_omits_it(workspace: Workspace, tmp_path: Path) -> None:
    ledger = Ledger(workspace.region().catalog)
    with workspace.region().catalog.transaction() as conn:
        ledger.record(conn, "cn-shanghai", 2026, "exp", [(f"p{i}", "pi") for i in range(1000)])
    workspace.close()
    request = tmp_path / "r.json"
    request.write_text(json.dumps({"as_of": "2026-11-21", "destination": "US", "items": [
        {"id": "o", "kind": "owner_record", "features": ["vin"], "subjects": 99_000}]}))
    out = json.loads(run_cli("decide", str(request), "--format", "json", home=workspace.home, check=True).stdout)
    assert out["ytd_after"]["pi_subjects"] == 100_000
    assert out["outcome"] == "STANDARD_CONTRACT_OR_CERT"


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2000, 4999))
def test_screening_finds_an_identifier_far_beyond_the_sample(seed: int, row: int) -> None:
    rng = np.random.default_rng(seed)
    rid = identities.resident_id(rng)
    notes = ["常规保养"] * 5000
    notes[row] = f"客户身份证{rid}。"
    result = scan_table(pa.table({"note": notes}))
    assert "national_id" in result.features
    assert result.row_subjects[row] == ("resident_id", rid)
    assert result.distinct_subjects() == [("resident_id", rid)]
