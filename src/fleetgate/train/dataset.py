"""Training samples for ego-trajectory prediction, built from one region's catalog and store only.

Each sample is a moment in a clip's GNSS track (10 Hz): the input is the past 2 s of positions in
the vehicle's own frame at that moment (x forward, y left, metres) plus its speed; the target is the
next 3 s of positions in the same frame. Reads happen while acting for the region, so the store's
residency guard refuses (and records) any attempt to build samples from another region's data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from fleetgate.errors import UsageError
from fleetgate.store.residency import acting_for
from fleetgate.workspace import Workspace

RATE_HZ = 10
PAST = 20  # 2 s
FUTURE = 30  # 3 s
STEP = 5  # a sample every 0.5 s
EARTH_M_PER_DEG = 111_320.0


@dataclass
class Samples:
    region: str
    inputs: np.ndarray  # (n, PAST*2 + 1) float32
    targets: np.ndarray  # (n, FUTURE*2) float32
    vehicles: np.ndarray  # (n,) vehicle of each sample
    assets: list[str] = field(default_factory=list)  # the trajectory assets read

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, mask: np.ndarray) -> Samples:
        return Samples(self.region, self.inputs[mask], self.targets[mask], self.vehicles[mask], self.assets)

    def lineage(self) -> dict:
        ids = sorted(self.assets)
        return {"region": self.region, "assets": len(ids), "vehicles": len(set(self.vehicles.tolist())),
                "samples": len(self), "assets_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}


def _track_samples(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat0 = float(np.mean(lat))
    x = (lon - lon.mean()) * EARTH_M_PER_DEG * np.cos(np.radians(lat0))
    y = (lat - lat.mean()) * EARTH_M_PER_DEG
    inputs, targets = [], []
    for now in range(PAST, len(x) - FUTURE, STEP):
        dx, dy = x[now] - x[now - 2], y[now] - y[now - 2]
        if np.hypot(dx, dy) < 0.2:  # standing still: no heading to predict along
            continue
        heading = np.arctan2(dy, dx)
        c, s = np.cos(-heading), np.sin(-heading)
        px, py = x - x[now], y - y[now]
        ego = np.stack([px * c - py * s, px * s + py * c], axis=1)  # x forward, y left
        speed = np.hypot(dx, dy) * RATE_HZ / 2
        inputs.append(np.concatenate([ego[now - PAST + 1 : now + 1].ravel(), [speed]]))
        targets.append(ego[now + 1 : now + 1 + FUTURE].ravel())
    return np.asarray(inputs, np.float32).reshape(-1, PAST * 2 + 1), np.asarray(targets, np.float32).reshape(
        -1, FUTURE * 2)


def raw_tracks(ws: Workspace, region: str) -> list[dict]:
    """The region's raw GNSS track assets, from its catalog (no blob is read)."""
    return [a for a in ws.region(region).catalog.list_assets(region=region)
            if a["kind"] == "gnss_trajectory" and not (a["tags"] or {}).get("derived")]


def build_samples(ws: Workspace, region: str) -> Samples:
    """Samples from the region's raw GNSS tracks (in-region training may use raw data)."""
    reg = ws.region(region)
    assets = raw_tracks(ws, region)
    inputs, targets, vehicles, used = [], [], [], []
    with acting_for(region):
        for asset in assets:
            table = reg.blobs.read_table(asset["sha256"], columns=["lat", "lon"])
            x, y = _track_samples(table.column("lat").to_numpy(), table.column("lon").to_numpy())
            if len(x):
                inputs.append(x)
                targets.append(y)
                vehicles.extend([asset["vehicle"] or "?"] * len(x))
                used.append(asset["id"])
    if not inputs:
        raise UsageError(f"region {region} has no GNSS tracks long enough to train on "
                         f"({(PAST + FUTURE) / RATE_HZ:.0f} s or more); ingest a drop first")
    return Samples(region, np.concatenate(inputs), np.concatenate(targets), np.asarray(vehicles), used)


def split_by_vehicle(samples: Samples, val_share: float = 0.25, salt: str = "val") -> tuple[Samples, Samples]:
    """Train and validation sets by vehicle: no vehicle is in both (a hash of the VIN decides)."""
    vehicles = sorted(set(samples.vehicles.tolist()))
    def in_val(v: str) -> bool:
        return int(hashlib.sha256(f"{salt}:{v}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < val_share
    val = {v for v in vehicles if in_val(v)}
    if not val and len(vehicles) > 1:  # small fleets: keep at least one vehicle for validation
        val = {vehicles[-1]}
    mask = np.isin(samples.vehicles, list(val))
    return samples.subset(~mask), samples.subset(mask)


VELOCITY_WINDOW = 10  # 1 s: GNSS noise (~0.2 m) makes a one-step velocity useless for 3 s ahead


def constant_velocity_errors(samples: Samples) -> dict[str, float]:
    """ADE/FDE of the classic baseline: keep the velocity of the last second for 3 s (what the model must beat)."""
    past = samples.inputs[:, : PAST * 2].reshape(len(samples), PAST, 2)
    step = (past[:, -1] - past[:, -1 - VELOCITY_WINDOW]) / VELOCITY_WINDOW
    horizon = np.arange(1, FUTURE + 1, dtype=np.float32)[None, :, None]
    pred = past[:, -1][:, None, :] + step[:, None, :] * horizon
    err = np.linalg.norm(pred - samples.targets.reshape(len(samples), FUTURE, 2), axis=2)
    return {"ade_m": round(float(err.mean()), 3), "fde_m": round(float(err[:, -1].mean()), 3),
            "samples": len(samples)}
