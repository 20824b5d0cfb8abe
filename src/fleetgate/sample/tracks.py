"""Road-like GNSS tracks and CAN signals derived from them, for fleets in different areas.

In grid districts (Shanghai) roads form a grid rotated to the street orientation; a car drives from
intersection to intersection, turning on arcs. The driving side sets the arcs: where traffic keeps
right, a right turn hugs the kerb (tight radius) and a left turn crosses the junction (wide radius);
where it keeps left, the other way round. In winding districts (Frankfurt's Autobahn, the Taunus
roads, Sachsenhausen) roads are straights joined by curves of the district's radii. Everywhere a car
slows for curves and accelerates within comfort limits; areas differ in speeds and geometry, which
is what a model trained in one area has to learn about another. CAN speed is the derivative of
position and steering follows yaw rate, so the two files agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_378_137.0


@dataclass(frozen=True)
class District:
    """Where a fleet drives: origin, road layout, typical speeds and the side traffic keeps to.

    Grid districts use `grid_angle_deg` and `block_m`; winding ones use `block_m` as the typical
    straight between curves and `curve_radius_m` as the range of curve radii.
    """

    name: str
    lat: float
    lon: float
    grid_angle_deg: float
    block_m: float
    cruise_mps: float
    road: str = "grid"  # grid | winding
    keep: str = "right"  # the side traffic keeps to: right (China, Germany) or left (UK, Japan)
    curve_radius_m: tuple[float, float] = (8.0, 16.0)  # grid: (near-side turn, far-side turn)


AREAS: dict[str, list[District]] = {
    "shanghai": [
        District("lingang", 30.8985, 121.9290, 42.0, 420.0, 16.0),
        District("pudong-lujiazui", 31.2353, 121.5060, 8.0, 260.0, 11.0),
        District("xuhui", 31.1880, 121.4370, -12.0, 220.0, 10.0),
    ],
    "frankfurt": [
        District("a5-frankfurter-kreuz", 50.0543, 8.5980, 0.0, 900.0, 33.0, road="winding",
                 curve_radius_m=(450.0, 900.0)),
        District("taunus-b455", 50.2010, 8.4570, 0.0, 300.0, 22.0, road="winding",
                 curve_radius_m=(80.0, 250.0)),
        District("sachsenhausen", 50.1000, 8.6830, 0.0, 120.0, 12.5, road="winding",
                 curve_radius_m=(25.0, 70.0)),
    ],
    "london": [
        District("westminster", 51.4975, -0.1357, 17.0, 180.0, 9.0, keep="left"),
        District("canary-wharf", 51.5054, -0.0235, -8.0, 300.0, 12.0, keep="left"),
        District("m25-j16", 51.6020, -0.5180, 0.0, 800.0, 31.0, road="winding", keep="left",
                 curve_radius_m=(500.0, 1000.0)),
    ],
}
DISTRICTS = AREAS["shanghai"]


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


def turn_radius(district: District, left_turn: bool) -> float:
    """The arc a car takes through a grid junction: near-side turns are tight, far-side turns wide."""
    near, far = district.curve_radius_m
    near_side = (not left_turn) if district.keep == "right" else left_turn
    return near if near_side else far


def _densify_with_arcs(corners: np.ndarray, district: District, step: float = 0.5) -> np.ndarray:
    pts: list[np.ndarray] = [corners[0]]
    for i in range(1, len(corners) - 1):
        prev, here, nxt = corners[i - 1], corners[i], corners[i + 1]
        a = (prev - here) / np.linalg.norm(prev - here)
        b = (nxt - here) / np.linalg.norm(nxt - here)
        incoming = -a
        left_turn = float(incoming[0] * b[1] - incoming[1] * b[0]) > 0  # counter-clockwise
        radius = turn_radius(district, left_turn)
        start, end = here + a * radius, here + b * radius
        _line(pts, start, step)
        # quadratic Bezier through the corner approximates the turning arc
        for s in np.linspace(0, 1, int(radius * 1.6 / step) + 2)[1:]:
            pts.append((1 - s) ** 2 * start + 2 * (1 - s) * s * here + s**2 * end)
    _line(pts, corners[-1], step)
    return np.array(pts)


def _winding_route(rng: np.random.Generator, district: District, min_length: float,
                   step: float = 0.5) -> np.ndarray:
    """Straights joined by circular curves of the district's radii, turning either way."""
    heading = float(rng.uniform(-math.pi, math.pi))
    here = np.array([float(rng.uniform(-500, 500)), float(rng.uniform(-500, 500))])
    pts = [here.copy()]
    length = 0.0
    r_min, r_max = district.curve_radius_m
    while length < min_length:
        straight = float(rng.uniform(0.4, 1.6)) * district.block_m
        n = max(int(straight / step), 1)
        for _ in range(n):
            here = here + step * np.array([math.cos(heading), math.sin(heading)])
            pts.append(here.copy())
        radius = float(rng.uniform(r_min, r_max))
        angle = float(rng.uniform(math.radians(20), math.radians(100))) * float(rng.choice([-1, 1]))
        n_arc = max(int(abs(angle) * radius / step), 1)
        for _ in range(n_arc):
            heading += angle / n_arc
            here = here + (abs(angle) * radius / n_arc) * np.array([math.cos(heading), math.sin(heading)])
            pts.append(here.copy())
        length += straight + abs(angle) * radius
    return np.array(pts)


def _line(pts: list[np.ndarray], target: np.ndarray, step: float) -> None:
    here = pts[-1]
    dist = float(np.linalg.norm(target - here))
    for s in np.linspace(0, 1, max(int(dist / step), 1) + 1)[1:]:
        pts.append(here + (target - here) * s)


def drive(rng: np.random.Generator, district: District, duration_s: float, rate_hz: float) -> Trajectory:
    """Simulate a drive of `duration_s` seconds sampled at `rate_hz`."""
    cruise = district.cruise_mps * float(rng.uniform(0.8, 1.15))
    route_length = cruise * duration_s * 1.3 + 200
    if district.road == "winding":
        path = _winding_route(rng, district, route_length)
    else:
        path = _densify_with_arcs(_grid_route(rng, district, route_length), district)
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
