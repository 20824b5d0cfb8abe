"""De-identification of trajectories and tables, and the derived assets it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetgate.audit import open_log
from fleetgate.classify import classify_region
from fleetgate.classify.geo import SensitiveAreas
from fleetgate.classify.pii_scan import scan_table
from fleetgate.deid import DeidError, TrajectoryPolicy, deid_region, deidentify_table, deidentify_trajectory
from fleetgate.deid.trajectory import haversine_m
from fleetgate.errors import UsageError
from fleetgate.gate import make_plan, record_basis, run_export, verify_region
from fleetgate.ingest import ingest_drop
from fleetgate.sample import identities
from fleetgate.workspace import Workspace
from fleetgate.workspace.config import save_config
from people import AS_OF, CLOCK, make_team


def _track(seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    heading = np.cumsum(rng.normal(0, 0.2, n))
    step = rng.uniform(5, 15, n)  # metres per second, one point per second
    lat = 31.2 + np.cumsum(step * np.cos(heading)) / 111_320
    lon = 121.5 + np.cumsum(step * np.sin(heading)) / (111_320 * np.cos(np.radians(31.2)))
    t = pa.array(1_780_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000).cast(pa.timestamp("us", tz="UTC"))
    return pa.table({"t": t, "lat": lat, "lon": lon, "alt_m": rng.uniform(0, 30, n), "heading_deg": heading,
                     "hdop": np.full(n, 0.8)})


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(200, 900), st.sampled_from([50.0, 100.0, 250.0]), st.integers(10, 120),
       st.floats(100, 800))
def test_trajectory_is_trimmed_coarsened_and_time_increases(seed: int, n: int, precision: float, step_s: int,
                                                             trim: float) -> None:
    table = _track(seed, n)
    lat, lon = np.asarray(table["lat"]), np.asarray(table["lon"])
    policy = TrajectoryPolicy(precision_m=precision, trim_m=trim, excise_buffer_m=0, time_step_s=step_s)
    out, report = deidentify_trajectory(table, SensitiveAreas([], []), policy)
    assert report["points_out"] == out.num_rows
    if out.num_rows == 0:
        return
    t = out.column("t").cast(pa.int64()).to_numpy()
    assert np.all(np.diff(t) > 0) and np.all(t % (step_s * 1_000_000) == 0)
    o_lat, o_lon = np.asarray(out["lat"]), np.asarray(out["lon"])
    # no kept point lies within `trim` metres (along the track) of either end: check the straight-line bound
    assert haversine_m(o_lat, o_lon, np.full_like(o_lat, lat[0]), np.full_like(o_lon, lon[0])).min() >= \
        min(trim, 0) - precision
    lat_step = precision / 111_320
    assert np.allclose(np.round(o_lat / lat_step) * lat_step, o_lat)


def test_sensitive_areas_are_cut_with_their_buffer() -> None:
    table = _track(3, 600)
    lat, lon = np.asarray(table["lat"]), np.asarray(table["lon"])
    mid = 300
    ring = [[lon[mid] - 4e-4, lat[mid] - 4e-4], [lon[mid] + 4e-4, lat[mid] - 4e-4],
            [lon[mid] + 4e-4, lat[mid] + 4e-4], [lon[mid] - 4e-4, lat[mid] + 4e-4], [lon[mid] - 4e-4, lat[mid] - 4e-4]]
    from shapely.geometry import Polygon

    areas = SensitiveAreas([Polygon(ring)], ["garrison"])
    out, report = deidentify_trajectory(table, areas, TrajectoryPolicy(precision_m=10, trim_m=0,
                                                                       excise_buffer_m=300, time_step_s=1))
    assert report["excised"] > 0
    o_lat, o_lon = np.asarray(out["lat"]), np.asarray(out["lon"])
    distance = haversine_m(o_lat, o_lon, np.full_like(o_lat, lat[mid]), np.full_like(o_lon, lon[mid]))
    assert distance.min() > 300 - 20  # buffer, less the 10 m grid and the polygon's half-width slack


def test_h3_precision_and_bad_policies() -> None:
    out, report = deidentify_trajectory(_track(1, 400), SensitiveAreas([], []),
                                        TrajectoryPolicy(precision_m=None, h3_resolution=8, trim_m=0, time_step_s=1))
    assert report["precision_m"] > 400 and len(set(zip(out["lat"].to_pylist(), out["lon"].to_pylist(), strict=True))) \
        < out.num_rows
    with pytest.raises(UsageError):
        TrajectoryPolicy(precision_m=100, h3_resolution=9)
    with pytest.raises(UsageError):
        TrajectoryPolicy(precision_m=-1)


def test_tables_get_keyed_pseudonyms_and_lose_other_identifiers() -> None:
    rng = np.random.default_rng(5)
    vins = [identities.vin(rng) for _ in range(50)]
    ids = [identities.resident_id(rng) for _ in range(50)]
    phones = [identities.mobile(rng) for _ in range(50)]
    table = pa.table({"vin": vins, "national_id": ids, "phone": phones,
                      "name": [identities.person_name(rng) for _ in range(50)],
                      "note": [f"客户电话{p}，身份证{i}" for p, i in zip(phones, ids, strict=True)]})
    a = deidentify_table(table, b"k" * 32)
    b = deidentify_table(table, b"k" * 32)
    c = deidentify_table(table, b"j" * 32)
    assert a.actions == {"vin": "hmac", "national_id": "suppress", "phone": "suppress", "name": "suppress",
                         "note": "scrub"}
    assert a.table.column("vin").to_pylist() == b.table.column("vin").to_pylist() != c.table.column("vin").to_pylist()
    assert a.pseudonymized_features == ["vin"]
    flat = json.dumps(a.table.to_pylist(), ensure_ascii=False)
    assert not any(v in flat for v in vins + ids + phones)
    assert scan_table(a.table).features == set()
    assert "客户电话[已删除]" in flat
    with pytest.raises(DeidError, match="'national_id'"):
        deidentify_table(table, b"k" * 32, {"vin": "hmac", "national_id": "keep", "phone": "suppress",
                                           "name": "suppress", "note": "scrub"})


def test_deid_run_derives_assets_that_the_gate_can_export(workspace: Workspace, sample_drop: Path,
                                                          tmp_path: Path) -> None:
    ingest_drop(workspace.region(), sample_drop)
    report = deid_region(workspace)
    assert not report.failed and {d["kind"] for d in report.derived} >= {"owner_record", "after_sales",
                                                                         "gnss_trajectory", "exterior_video"}
    assert report.cabin_kept_local >= 1 and "cabin_audio" not in {d["kind"] for d in report.derived}
    videos = [a for a in workspace.region().catalog.list_assets() if a["kind"] == "exterior_video"
              and (a["tags"] or {}).get("derived") == "deid"]
    assert len(videos) == 4 and len(report.camera) == 4
    for video in videos:
        tags = video["tags"]
        assert tags["anonymized"] and tags["detected_features"] == [] and "faces" in tags["removed_features"]
        assert workspace.region().blobs.exists(tags["sidecar_sha256"]) and video["parent_id"]
    assert deid_region(workspace).already == len(report.derived)  # rerun: nothing new
    classify_region(workspace)
    team = make_team(workspace, tmp_path / "people")
    plan = make_plan(workspace, "overseas", team.engineer, "asset.source_path.endsWith('#deid')", "train",
                     as_of=AS_OF, clock=CLOCK)
    by_kind = {}
    for item in plan.plan.items:
        by_kind.setdefault(item.kind, item)
    # the Lingang list's trial ended on 16 May 2025 and no renewal is recorded: pseudonymized VINs of a few
    # people leave under Art 5(4) instead of the list
    assert by_kind["after_sales"].outcome == "EXPORT_FREE" and "LG-ICV.LAPSED" in by_kind["after_sales"].rules
    assert by_kind["owner_record"].outcome == "EXPORT_FREE"  # PI of a few people, no SPI left
    assert "geo_precise" not in by_kind["gnss_trajectory"].features
    # coarsening is not the state-approved confidentiality technique: by default the trajectory keeps its
    # surveying character (GEO-2.TRAJECTORY, docs/policy.md) and stays without an approval
    trajectory = by_kind["gnss_trajectory"]
    assert trajectory.outcome == "LOCAL_ONLY" and "GEO-2.TRAJECTORY" in trajectory.rules
    assert by_kind["owner_record"].subjects == 2  # lineage keeps the people
    # faces and plates are gone, yet road video is surveying data: it stays without an approval
    assert by_kind["exterior_video"].outcome == "LOCAL_ONLY"
    assert not {"faces", "plates"} & set(by_kind["exterior_video"].features)
    record_basis(workspace, plan, "separate_consent", "CONSENT-1", "PIPIA-1", team.compliance[0], clock=CLOCK)
    result = run_export(workspace, plan, team.engineer, clock=CLOCK)
    blobs = b"".join(p.read_bytes() for p in result.path.rglob("*") if p.is_file())
    owners = pq.read_table(sample_drop / "tables" / "owners.parquet").to_pylist()
    for row in owners:
        for value in (row["vin"], row["national_id"], row["phone"], row["name"]):
            assert value.encode() not in blobs
    assert workspace.keys().pseudonym_key() not in blobs
    kinds = [e["type"] for e in open_log(workspace).entries()]
    assert "deid_run" in kinds and "key_use" in kinds and "derive" in kinds
    assert not verify_region(workspace).findings  # every derived asset is a logged fact


def test_sensitive_area_config_excises_derived_trajectories(workspace: Workspace, sample_drop: Path) -> None:
    ingest_drop(workspace.region(), sample_drop)
    gnss = workspace.region().catalog.list_assets(kind="gnss_trajectory")[0]
    with workspace.region().blobs.open(gnss["sha256"]) as fh:
        t = pq.read_table(fh)
    lat, lon = np.asarray(t["lat"]), np.asarray(t["lon"])
    areas = workspace.home / "areas.geojson"
    ring = [[float(lon.min()) - 1, float(lat.min()) - 1], [float(lon.max()) + 1, float(lat.min()) - 1],
            [float(lon.max()) + 1, float(lat.max()) + 1], [float(lon.min()) - 1, float(lat.min()) - 1]]
    areas.write_text(json.dumps({"type": "Feature", "properties": {"name": "all"},
                                 "geometry": {"type": "Polygon", "coordinates": [ring]}}))
    workspace.config.regions["cn-shanghai"].sensitive_areas = "areas.geojson"
    save_config(workspace.config)
    report = deid_region(workspace)
    derived = [d for d in report.derived if d["parent"] == gnss["id"]][0]
    asset = workspace.region().catalog.get_asset(derived["asset_id"])
    assert asset["tags"]["trajectory"]["points_out"] == 0
