"""Road-like GNSS tracks in Shanghai and CAN signals derived from them.

Roads form a grid rotated to the district's street orientation; a car drives from intersection to
intersection, turning on arcs, slowing for curves and accelerating within comfort limits. CAN
speed is the derivative of position and steering follows yaw rate, so the two files agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_378_137.0


@dataclass(frozen=True)
class District:
    """Where a fleet drives: origin, street-grid orientation, block size and typical speeds."""

    name: str
    lat: float
    lon: float
    grid_angle_deg: float
    block_m: float
    cruise_mps: float


DISTRICTS = [
    District("lingang", 30.8985, 121.9290, 42.0, 420.0, 16.0),
    District("pudong-lujiazui", 31.2353, 121.5060, 8.0, 260.0, 11.0),
    District("xuhui", 31.1880, 121.4370, -12.0, 220.0, 10.0),
]


@dataclass
class Trajectory:
    """A sampled drive: times (s from clip start), local metres, lat/lon, heading, speed, yaw rate."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    heading_deg: np.ndarray
    speed: np.ndarray
    yaw_rate: np.ndarray
    turn: np.ndarray  # -1 left, 0 none, 1 right: upcoming turn within 40 m


def _grid_route(rng: np.random.Generator, district: District, min_length: float) -> np.ndarray:
    angle = math.radians(district.grid_angle_deg)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    cell = np.array([int(rng.integers(-5, 6)), int(rng.integers(-5, 6))])
    direction = [np.array(d) for d in ((1, 0), (0, 1), (-1, 0), (0, -1))][int(rng.integers(0, 4))]
    points = [cell.copy()]
    length = 0.0
    while length < min_length:
        blocks = int(rng.integers(1, 4))
        cell = cell + direction * blocks
        points.append(cell.copy())
        length += blocks * district.block_m
        turn = rng.choice([-1, 1])
        direction = np.array([-direction[1] * turn, direction[0] * turn])
    grid = np.array(points, dtype=float) * district.block_m
    return grid @ rot.T


def _densify_with_arcs(corners: np.ndarray, radius: float = 12.0, step: float = 0.5) -> np.ndarray:
    pts: list[np.ndarray] = [corners[0]]
    for i in range(1, len(corners) - 1):
        prev, here, nxt = corners[i - 1], corners[i], corners[i + 1]
        a = (prev - here) / np.linalg.norm(prev - here)
        b = (nxt - here) / np.linalg.norm(nxt - here)
        start, end = here + a * radius, here + b * radius
        _line(pts, start, step)
        # quadratic Bezier through the corner approximates the turning arc
        for s in np.linspace(0, 1, int(radius * 1.6 / step) + 2)[1:]:
            pts.append((1 - s) ** 2 * start + 2 * (1 - s) * s * here + s**2 * end)
    _line(pts, corners[-1], step)
    return np.array(pts)


def _line(pts: list[np.ndarray], target: np.ndarray, step: float) -> None:
    here = pts[-1]
    dist = float(np.linalg.norm(target - here))
    for s in np.linspace(0, 1, max(int(dist / step), 1) + 1)[1:]:
        pts.append(here + (target - here) * s)


def drive(rng: np.random.Generator, district: District, duration_s: float, rate_hz: float) -> Trajectory:
    """Simulate a drive of `duration_s` seconds sampled at `rate_hz`."""
    cruise = district.cruise_mps * float(rng.uniform(0.8, 1.15))
    path = _densify_with_arcs(_grid_route(rng, district, cruise * duration_s * 1.3 + 200))
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s_path = np.concatenate([[0.0], np.cumsum(seg)])
    heading_path = np.unwrap(np.arctan2(np.diff(path[:, 1]), np.diff(path[:, 0])))
    heading_path = np.concatenate([heading_path, heading_path[-1:]])
    curvature = np.abs(np.gradient(heading_path, s_path))
    v_limit = np.minimum(cruise, np.sqrt(2.5 / np.maximum(curvature, 1e-6)))
    v_limit[0] = float(rng.uniform(0.3, 0.7)) * cruise
    # forward pass: accelerate at most 1.8 m/s², backward pass: brake at most 2.5 m/s²
    v = v_limit.copy()
    for i in range(1, len(v)):
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * 1.8 * seg[i - 1]))
    for i in range(len(v) - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * 2.5 * seg[i]))
    dt_path = seg / np.maximum((v[:-1] + v[1:]) / 2, 0.1)
    t_path = np.concatenate([[0.0], np.cumsum(dt_path)])
    t = np.arange(0.0, duration_s, 1.0 / rate_hz)
    x = np.interp(t, t_path, path[:, 0])
    y = np.interp(t, t_path, path[:, 1])
    s_t = np.interp(t, t_path, s_path)
    speed = np.gradient(s_t, t)
    heading = np.interp(t, t_path, heading_path)
    yaw_rate = np.gradient(heading, t)
    ahead = np.interp(np.minimum(s_t + 40.0, s_path[-1]), s_path, heading_path) - heading
    turn = np.where(ahead > 0.3, -1, np.where(ahead < -0.3, 1, 0))
    lat0, lon0 = math.radians(district.lat), district.lon
    lat = district.lat + np.degrees(y / EARTH_RADIUS_M)
    lon = lon0 + np.degrees(x / (EARTH_RADIUS_M * math.cos(lat0)))
    compass = (90.0 - np.degrees(heading)) % 360.0  # east-counterclockwise → north-clockwise
    return Trajectory(t, x, y, lat, lon, compass, speed, yaw_rate, turn)


def can_signals(traj: Trajectory, rate_hz: float, wheelbase_m: float = 2.9, steering_ratio: float = 15.0) -> dict:
    """CAN signals consistent with a trajectory: speed, steering from yaw rate, pedals from accel."""
    t = np.arange(traj.t[0], traj.t[-1], 1.0 / rate_hz)
    speed = np.interp(t, traj.t, traj.speed)
    yaw = np.interp(t, traj.t, traj.yaw_rate)
    accel = np.gradient(speed, t)
    road_wheel = np.arctan(wheelbase_m * yaw / np.maximum(speed, 0.5))
    steering = np.degrees(road_wheel) * steering_ratio
    turn = np.interp(t, traj.t, traj.turn).round().astype(int)
    return {
        "t": t,
        "speed_mps": np.clip(speed, 0, None),
        "steering_deg": steering,
        "accel_mps2": accel,
        "brake": np.clip(-accel / 6.0, 0.0, 1.0),
        "throttle": np.clip(np.where(accel >= 0, accel / 3.0 + speed / 60.0, 0.0), 0.0, 1.0),
        "gear": np.where(speed > 0.1, "D", "P"),
        "turn_signal": np.select([turn < 0, turn > 0], ["left", "right"], "off"),
    }
