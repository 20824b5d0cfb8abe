"""Property tests of drop validation: names, and the checks on sensor tables."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetgate.errors import ItemError, UnsafePathError
from fleetgate.formats import classify_drop_path
from fleetgate.ingest.drop import check_relpath
from fleetgate.ingest.validate import check_table

T0 = 1_790_000_000.0  # 2026-09


@given(st.text(max_size=80))
def test_a_checked_name_never_escapes_the_drop(name: str) -> None:
    try:
        clean = check_relpath(name)
    except UnsafePathError as exc:
        assert exc.field == "name"
        return
    root = Path("/drop")
    resolved = Path(*(root / PurePosixPath(clean)).parts)
    assert not PurePosixPath(clean).is_absolute()
    assert ".." not in PurePosixPath(clean).parts
    assert root in resolved.parents
    assert all(c.isascii() and c.isprintable() for c in clean)


@given(st.lists(st.sampled_from(["..", ".", "a", "vehicles", "/", "etc", "passwd", "x\x00", "ü"]), min_size=1,
                max_size=6))
def test_path_tricks_are_rejected(parts: list[str]) -> None:
    name = "/".join(parts)
    bad = name.startswith("/") or any(p in ("..", ".", "", "x\x00", "ü") for p in name.split("/"))
    try:
        check_relpath(name)
        rejected = False
    except UnsafePathError:
        rejected = True
    assert rejected == bad


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_/.0123456789", max_size=60))
def test_layout_classification_is_total(name: str) -> None:
    role = classify_drop_path(name)
    assert role is None or role.kind


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def _gnss(lat: list[float], lon: list[float], t: list[float]) -> pa.Table:
    n = len(lat)
    return pa.table({"t": t, "lat": lat, "lon": lon, "alt_m": [4.0] * n, "heading_deg": [90.0] * n,
                     "hdop": [0.9] * n})


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_gnss_accepted_iff_coordinates_in_range_and_time_increasing(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=12))
    lat = data.draw(st.lists(st.one_of(st.floats(-90, 90), finite, st.just(math.nan)), min_size=n, max_size=n))
    lon = data.draw(st.lists(st.one_of(st.floats(-180, 180), finite), min_size=n, max_size=n))
    steps = data.draw(st.lists(st.floats(-1.0, 2.0, allow_nan=False), min_size=n, max_size=n))
    t = list(T0 + np.cumsum(steps))
    expected_ok = (all(not math.isnan(v) and -90 <= v <= 90 for v in lat)
                   and all(-180 <= v <= 180 for v in lon)
                   and all(b > a for a, b in zip(t, t[1:], strict=False)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gnss.parquet"
        pq.write_table(_gnss(lat, lon, t), path)
        try:
            check_table("vehicles/V/clips/c/gnss.parquet", "gnss", path)
            ok = True
        except ItemError as exc:
            ok = False
            assert exc.path.endswith("gnss.parquet") and exc.field in ("lat", "lon", "t")
    assert ok == expected_ok


@settings(max_examples=40)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_as_parquet_fail_cleanly(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "can.parquet"
        path.write_bytes(blob)
        try:
            check_table("can.parquet", "can", path)
        except ItemError as exc:
            assert exc.path == "can.parquet"


def test_a_trailing_newline_is_not_a_safe_name() -> None:
    # `$` in a Python regex matches before a final newline; hypothesis found it (name='0\n').
    for name in ("0\n", "vehicles/LFV9SH4F5TG610401\n/clip.json", "drop.json\n"):
        try:
            check_relpath(name)
        except UnsafePathError:
            continue
        raise AssertionError(f"{name!r} was accepted")
