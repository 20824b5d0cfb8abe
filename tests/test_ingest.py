"""Ingest: the good drop lands, reruns add nothing, and every kind of bad input is quarantined
with the file and field named while the rest of the drop still lands."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fleetgate.errors import ExitCode, InvalidInputError
from fleetgate.ingest import ingest_drop
from fleetgate.workspace import Workspace


def _files(drop: Path) -> list[Path]:
    return sorted(p for p in drop.rglob("*") if p.is_file())


def _first_clip(drop: Path) -> Path:
    return sorted((drop / "vehicles").glob("*/clips/*"))[0]


def _quarantined(ws: Workspace) -> dict[str, dict]:
    return {q["source_path"]: q for q in ws.region().catalog.list_quarantine()}


def test_good_drop_lands_completely(workspace: Workspace, sample_drop: Path) -> None:
    report = ingest_drop(workspace.region(), sample_drop)
    files = _files(sample_drop)
    assert report.exit_code == ExitCode.OK
    assert report.landed == len(files) and report.quarantined == 0
    assets = workspace.region().catalog.list_assets()
    kinds = {a["kind"] for a in assets}
    assert {"exterior_video", "can_telemetry", "gnss_trajectory", "owner_record", "after_sales",
            "charging_session", "procurement", "inventory", "rd_test", "clip_manifest"} <= kinds
    for asset in assets:
        assert workspace.region().blobs.verify(asset["sha256"])
        assert asset["region"] == "cn-shanghai" and asset["source_drop"] == "sample-s11"
    video = next(a for a in assets if a["kind"] == "exterior_video")
    assert video["vehicle"] and video["clip_id"] and video["t_start"] < video["t_end"]
    assert video["tags"]["codec"] == "h264" and video["tags"]["width"] == 1280


def test_reingest_adds_nothing(workspace: Workspace, sample_drop: Path) -> None:
    first = ingest_drop(workspace.region(), sample_drop)
    before = workspace.region().catalog.list_assets()
    second = ingest_drop(workspace.region(), sample_drop)
    assert second.landed == 0 and second.already_present == first.landed
    assert workspace.region().catalog.list_assets() == before
    assert len(workspace.region().catalog.list_runs()) == 2


def _assert_quarantined(ws: Workspace, drop: Path, report, relpath: str, field: str, words: str) -> None:
    q = _quarantined(ws)
    assert relpath in q, f"{relpath} not quarantined; quarantine has {list(q)}"
    assert q[relpath]["field"] == field
    assert words in q[relpath]["reason"]
    assert report.exit_code == ExitCode.PARTIAL
    # the rest of the drop landed: every other file is an asset
    landed = {a["source_path"] for a in ws.region().catalog.list_assets()}
    others = {p.relative_to(drop).as_posix() for p in _files(drop)} - set(q)
    assert others <= landed
    # nothing lost: the bad bytes are kept in the quarantine namespace
    if q[relpath]["sha256"]:
        assert ws.region().blobs.exists(q[relpath]["sha256"], "quarantine")


def test_truncated_mp4(workspace: Workspace, sample_drop: Path) -> None:
    video = _first_clip(sample_drop) / "cam_front.mp4"
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 2 // 3])
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, video.relative_to(sample_drop).as_posix(),
                        "container", "not a readable video")


def test_mp4_that_is_really_text(workspace: Workspace, sample_drop: Path) -> None:
    video = _first_clip(sample_drop) / "cam_front.mp4"
    video.write_text("this is not a video, it is a note\n" * 20)
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, video.relative_to(sample_drop).as_posix(),
                        "container", "not a readable video")


def test_parquet_with_missing_columns(workspace: Workspace, sample_drop: Path) -> None:
    path = _first_clip(sample_drop) / "can.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["speed_mps", "gear"]), path)
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, path.relative_to(sample_drop).as_posix(),
                        "speed_mps", "required column missing")


def test_broken_parquet(workspace: Workspace, sample_drop: Path) -> None:
    path = sample_drop / "tables" / "owners.parquet"
    path.write_bytes(path.read_bytes()[:100])
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, "tables/owners.parquet", "file", "not a readable Parquet")


def test_latitude_200(workspace: Workspace, sample_drop: Path) -> None:
    path = _first_clip(sample_drop) / "gnss.parquet"
    table = pq.read_table(path)
    lat = table.column("lat").to_numpy().copy()
    lat[3] = 200.0
    pq.write_table(table.set_column(table.schema.get_field_index("lat"), "lat", pa.array(lat)), path)
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, path.relative_to(sample_drop).as_posix(),
                        "lat", "200.0 outside [-90, 90]")


def test_nan_timestamps(workspace: Workspace, sample_drop: Path) -> None:
    path = _first_clip(sample_drop) / "gnss.parquet"
    table = pq.read_table(path)
    seconds = table.column("t").cast(pa.int64()).to_numpy() / 1e6
    seconds[5] = np.nan
    table = table.set_column(table.schema.get_field_index("t"), "t", pa.array(seconds))
    pq.write_table(table, path)
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, path.relative_to(sample_drop).as_posix(), "t", "NaN")


def test_timestamps_going_backwards(workspace: Workspace, sample_drop: Path) -> None:
    path = _first_clip(sample_drop) / "can.parquet"
    table = pq.read_table(path)
    t = table.column("t").cast(pa.int64()).to_numpy().copy()
    t[10], t[11] = t[11], t[10]
    table = table.set_column(0 if table.schema.names[0] == "t" else table.schema.get_field_index("t"), "t",
                             pa.array(t).cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(table, path)
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, path.relative_to(sample_drop).as_posix(),
                        "t", "strictly increase")


def test_dot_dot_names_in_a_tar_never_escape(workspace: Workspace, sample_drop: Path, tmp_path: Path) -> None:
    archive = tmp_path / "upload.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(sample_drop, arcname=".")
        payload = b"root:x:0:0:root:/root:/bin/bash\n"
        info = tarfile.TarInfo("../../etc/passwd")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    report = ingest_drop(workspace.region(), archive)
    q = _quarantined(workspace)
    assert q["../../etc/passwd"]["field"] == "name" and "'..'" in q["../../etc/passwd"]["reason"]
    assert report.landed == len(_files(sample_drop)) and report.quarantined == 1
    assert not (tmp_path.parent / "etc" / "passwd").exists()
    assert workspace.region().blobs.read_bytes(q["../../etc/passwd"]["sha256"], "quarantine") == payload


def test_absolute_name_in_tar(workspace: Workspace, sample_drop: Path, tmp_path: Path) -> None:
    archive = tmp_path / "upload.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(sample_drop / "drop.json", arcname="drop.json")
        info = tarfile.TarInfo("/tmp/evil.sh")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"boom"))
    ingest_drop(workspace.region(), archive)
    assert "absolute" in _quarantined(workspace)["/tmp/evil.sh"]["reason"]


def test_a_truncated_tar_lands_what_came_before_and_quarantines_the_cut_member(
        workspace: Workspace, sample_drop: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.tar"
    names = ["drop.json", "tables/owners.parquet", "tables/rd_tests.parquet"]
    with tarfile.open(whole, "w") as tar:
        for name in names:
            tar.add(sample_drop / name, arcname=name)
    data = whole.read_bytes()
    with tarfile.open(whole) as tar:
        last = tar.getmembers()[-1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:last.offset_data + last.size // 2])  # the upload stopped inside the last member
    report = ingest_drop(workspace.region(), cut)
    q = _quarantined(workspace)
    assert set(q) == {names[-1]} and q[names[-1]]["field"] == "data"
    assert "ends inside this member" in q[names[-1]]["reason"]
    assert report.landed == 2 and report.quarantined == 1
    # the bytes that did arrive are kept in quarantine, never dropped
    kept = workspace.region().blobs.read_bytes(q[names[-1]]["sha256"], "quarantine")
    assert kept == data[last.offset_data:last.offset_data + len(kept)] and 0 < len(kept) < last.size


def test_a_tar_cut_inside_a_header_keeps_the_members_before_it(workspace: Workspace, sample_drop: Path,
                                                               tmp_path: Path) -> None:
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w") as tar:
        tar.add(sample_drop / "drop.json", arcname="drop.json")
        tar.add(sample_drop / "tables" / "owners.parquet", arcname="tables/owners.parquet")
    with tarfile.open(whole) as tar:
        second = tar.getmembers()[1]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:second.offset + 100])  # inside the second member's 512-byte header
    report = ingest_drop(workspace.region(), cut)
    q = _quarantined(workspace)
    assert list(q) == ["member-000001"] and q["member-000001"]["field"] == "archive"
    assert report.landed == 1 and report.quarantined == 1


def test_a_file_that_is_no_tar_is_refused_in_one_line(workspace: Workspace, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not an archive at all")
    with pytest.raises(InvalidInputError) as refused:
        ingest_drop(workspace.region(), junk)
    assert "\n" not in str(refused.value) and "junk.tar: not a readable tar archive" in str(refused.value)


def test_symlink_escape(workspace: Workspace, sample_drop: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("KEY-THAT-MUST-NOT-LAND")
    link = sample_drop / "tables" / "rd_tests.parquet"
    link.unlink()
    os.symlink(secret, link)
    report = ingest_drop(workspace.region(), sample_drop)
    q = _quarantined(workspace)["tables/rd_tests.parquet"]
    assert q["field"] == "symlink" and "outside the drop" in q["reason"]
    assert q["sha256"] is None  # the target's bytes are not ours to copy
    assert report.quarantined == 1 and report.landed == len(_files(sample_drop)) - 1


def test_duplicate_clip_ids(workspace: Workspace, sample_drop: Path) -> None:
    clips = sorted((sample_drop / "vehicles").glob("*/clips/*"))
    first, other_vehicle_clip = clips[0], next(c for c in clips if c.parent != clips[0].parent)
    duplicate = other_vehicle_clip.parent / first.name
    other_vehicle_clip.rename(duplicate)
    doc = json.loads((duplicate / "clip.json").read_text())
    doc["clip_id"] = first.name
    (duplicate / "clip.json").write_text(json.dumps(doc))
    report = ingest_drop(workspace.region(), sample_drop)
    q = _quarantined(workspace)
    dup_paths = {p.relative_to(sample_drop).as_posix() for p in _files(first) + _files(duplicate)}
    assert dup_paths <= set(q)
    assert all(q[p]["field"] == "clip_id" and "duplicate clip id" in q[p]["reason"] for p in dup_paths)
    assert report.landed == len(_files(sample_drop)) - len(dup_paths)


def test_empty_drop_is_an_error(workspace: Workspace, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInputError, match="holds no files"):
        ingest_drop(workspace.region(), empty)


def test_unknown_file_is_quarantined_not_dropped(workspace: Workspace, sample_drop: Path) -> None:
    (sample_drop / "notes.txt").write_text("driver comments")
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, "notes.txt", "layout", "no place for this file")


def test_clip_json_mismatch_and_bad_vin_folder(workspace: Workspace, sample_drop: Path) -> None:
    clip = _first_clip(sample_drop)
    doc = json.loads((clip / "clip.json").read_text())
    doc["end_utc"] = doc["start_utc"]
    (clip / "clip.json").write_text(json.dumps(doc))
    report = ingest_drop(workspace.region(), sample_drop)
    _assert_quarantined(workspace, sample_drop, report, (clip / "clip.json").relative_to(sample_drop).as_posix(),
                        "end_utc", "ends before it starts")


def test_failure_mid_ingest_is_recorded_and_a_rerun_completes(workspace: Workspace, sample_drop: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from fleetgate.errors import StoreError

    region = workspace.region()
    real_put = region.blobs.put_file
    calls = {"n": 0}

    def flaky_put(path, namespace="blobs"):
        calls["n"] += 1
        if calls["n"] == 5:
            raise StoreError("blob store: disk full")
        return real_put(path, namespace)

    monkeypatch.setattr(region.blobs, "put_file", flaky_put)
    with pytest.raises(StoreError):
        ingest_drop(region, sample_drop, batch_size=4)
    runs = region.catalog.list_runs()
    assert runs[0]["status"] == "failed"
    partial = len(region.catalog.list_assets())
    assert 0 < partial < len(_files(sample_drop))  # the first batch committed, nothing half-catalogued
    monkeypatch.setattr(region.blobs, "put_file", real_put)
    report = ingest_drop(region, sample_drop)
    assert report.landed == len(_files(sample_drop)) - partial and report.already_present == partial
    assert len(region.catalog.list_assets()) == len(_files(sample_drop))
