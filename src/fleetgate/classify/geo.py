"""Coordinates: precision and sensitive areas.

Coordinates finer than public-map accuracy (about 50 m, GEO-3) are `geo_precise`; points inside a
region's sensitive-area polygons (GeoJSON, tested with shapely's vectorized predicates) set
`sensitive_area`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape

from fleetgate.errors import ConfigError

# 0.0005 degrees is about 55 m of latitude: the grid public maps are held to.
PUBLIC_MAP_STEP_DEG = 0.0005


def is_precise(lat: np.ndarray, lon: np.ndarray, step: float = PUBLIC_MAP_STEP_DEG) -> bool:
    """True when coordinates are not all on a grid of `step` degrees (i.e. finer than public maps)."""
    if len(lat) == 0:
        return False
    for values in (lat, lon):
        off = np.abs(values / step - np.round(values / step))
        if np.any(off > 1e-6):
            return True
    return False


class SensitiveAreas:
    """Polygons of places whose geographic or flow data is important data (AUTO-ID-1)."""

    def __init__(self, geometries: list, names: list[str]) -> None:
        self.geometries = geometries
        self.names = names
        for g in geometries:
            shapely.prepare(g)

    @classmethod
    def load(cls, path: str | Path | None) -> SensitiveAreas:
        if not path:
            return cls([], [])
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: sensitive areas: not readable GeoJSON: {exc}") from exc
        features = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
        geoms, names = [], []
        for n, feature in enumerate(features or []):
            try:
                geoms.append(shape(feature["geometry"]))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ConfigError(f"{path}: features[{n}].geometry: not a GeoJSON geometry ({exc})") from exc
            names.append(str((feature.get("properties") or {}).get("name", f"area {n}")))
        return cls(geoms, names)

    def hits(self, lat: np.ndarray, lon: np.ndarray) -> list[tuple[str, int]]:
        """(area name, points inside) for every area with at least one point inside."""
        out = []
        for geom, name in zip(self.geometries, self.names, strict=True):
            inside = int(np.count_nonzero(shapely.contains_xy(geom, lon, lat)))
            if inside:
                out.append((name, inside))
        return out
