"""De-identification of GNSS trajectories: trim trip ends, cut sensitive areas, coarsen space and time.

    1. trim: drop the first and last `trim_m` metres of each trip (they reveal home and work);
    2. excise: drop points inside a sensitive-area polygon grown by `excise_buffer_m`;
    3. coarsen space: snap to a metric grid of `precision_m`, or to H3 cell centres at a resolution;
    4. coarsen time: floor timestamps to `time_step_s`, keeping one point per step.

The output keeps the GNSS table schema, so it validates and classifies like any trajectory; its
precision is recorded on the derived asset so classification knows it is no longer precise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from fleetgate.classify.geo import SensitiveAreas
from fleetgate.errors import UsageError

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True)
class TrajectoryPolicy:
    precision_m: float | None = 100.0
    h3_resolution: int | None = None
    trim_m: float = 500.0
    excise_buffer_m: float = 200.0
    time_step_s: int = 60

    def __post_init__(self) -> None:
        if (self.precision_m is None) == (self.h3_resolution is None):
            raise UsageError("trajectory precision: give exactly one of precision in metres or an H3 resolution")
        if self.precision_m is not None and self.precision_m <= 0:
            raise UsageError("--precision-m: must be positive")
        if self.h3_resolution is not None and not 0 <= self.h3_resolution <= 15:
            raise UsageError("--h3: resolution is 0..15")
        if self.trim_m < 0 or self.excise_buffer_m < 0 or self.time_step_s < 1:
            raise UsageError("trim, buffer and time step must not be negative (time step at least 1 s)")

    def effective_precision_m(self) -> float:
        if self.precision_m is not None:
            return float(self.precision_m)
        import h3

        return float(h3.average_hexagon_edge_length(self.h3_resolution, unit="m"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def haversine_m(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlat, dlon = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dlat / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def _grown_areas(areas: SensitiveAreas, buffer_m: float, lat0: float) -> list:
    # Degrees per metre differ by axis; growing by the larger (longitude) span errs on the safe side.
    deg = buffer_m / (METRES_PER_DEG_LAT * max(np.cos(np.radians(lat0)), 0.1))
    return [g.buffer(deg) if deg > 0 else g for g in areas.geometries]


def deidentify_trajectory(table: pa.Table, areas: SensitiveAreas,
                          policy: TrajectoryPolicy) -> tuple[pa.Table, dict[str, Any]]:
    """The de-identified trajectory and what was removed."""
    lat = table.column("lat").to_numpy(zero_copy_only=False).astype(float)
    lon = table.column("lon").to_numpy(zero_copy_only=False).astype(float)
    n = len(lat)
    report: dict[str, Any] = {"points_in": n, "policy": policy.to_dict()}
    if n == 0:
        return table, report | {"points_out": 0}
    step = haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:])
    travelled = np.concatenate([[0.0], np.cumsum(step)])
    keep = (travelled >= policy.trim_m) & (travelled <= travelled[-1] - policy.trim_m)
    report["trimmed"] = int(n - keep.sum())
    inside = np.zeros(n, dtype=bool)
    for grown in _grown_areas(areas, policy.excise_buffer_m, float(np.mean(lat))):
        inside |= shapely.contains_xy(grown, lon, lat)
    report["excised"] = int((keep & inside).sum())
    keep &= ~inside
    out = table.filter(pa.array(keep))
    lat, lon = lat[keep], lon[keep]
    if policy.h3_resolution is not None:
        import h3

        cells = [h3.latlng_to_cell(a, b, policy.h3_resolution) for a, b in zip(lat, lon, strict=True)]
        centres = np.array([h3.cell_to_latlng(c) for c in cells]).reshape(-1, 2)
        new_lat, new_lon = centres[:, 0], centres[:, 1]
    else:
        lat_step = policy.precision_m / METRES_PER_DEG_LAT
        lon_step = policy.precision_m / (METRES_PER_DEG_LAT * np.cos(np.radians(np.mean(lat) if len(lat) else 0)))
        new_lat, new_lon = np.round(lat / lat_step) * lat_step, np.round(lon / lon_step) * lon_step
    out = out.set_column(out.schema.get_field_index("lat"), "lat", pa.array(new_lat))
    out = out.set_column(out.schema.get_field_index("lon"), "lon", pa.array(new_lon))
    # time: floor to the step and keep the first point of each step, so time still strictly increases
    t_type = out.schema.field("t").type
    micros = out.column("t").cast(pa.int64()).to_numpy(zero_copy_only=False)
    step_us = policy.time_step_s * 1_000_000
    floored = (micros // step_us) * step_us
    first = np.concatenate([[True], floored[1:] != floored[:-1]]) if len(floored) else np.zeros(0, dtype=bool)
    out = out.filter(pa.array(first))
    out = out.set_column(out.schema.get_field_index("t"), "t", pa.array(floored[first]).cast(t_type))
    for name in ("alt_m", "heading_deg"):
        if name in out.column_names:
            out = out.set_column(out.schema.get_field_index(name), name,
                                 pc.round(out.column(name).cast(pa.float64()), -1 if name == "alt_m" else 0))
    report["points_out"] = out.num_rows
    report["precision_m"] = policy.effective_precision_m()
    return out, report
