"""Business records: owners and after-sales with personal information; production and R&D without."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from fleetgate.formats.drop_layout import ARROW_TIME_TYPE
from fleetgate.sample import identities as ids

DEALERS = ["上汽大众临港4S店", "浦东金桥服务中心", "徐汇龙华4S店", "闵行莘庄服务站"]
ISSUES = ["常规保养", "更换刹车片", "空调异响", "车机系统升级", "轮胎更换", "电池健康检查", "前保险杠维修"]
SUPPLIERS = ["宁德时代", "博世汽车部件(苏州)", "延锋汽车饰件", "华域视觉", "均胜电子", "德赛西威"]
PARTS = ["BAT-LFP-75", "BRK-PAD-F", "CAM-FRONT-8M", "RADAR-77G", "ECU-ADAS-3", "SEAT-FR-L", "LAMP-HEAD-LED"]
WAREHOUSES = ["临港一号库", "安亭中心库", "嘉定备件库"]
COMPONENTS = ["front_camera", "radar", "battery_pack", "brake_system", "adas_ecu"]
METRICS = {"front_camera": "mtf50", "radar": "range_m", "battery_pack": "capacity_kwh",
           "brake_system": "stop_distance_m", "adas_ecu": "latency_ms"}


def _ts(values: list[datetime]) -> pa.Array:
    return pa.array(values, type=ARROW_TIME_TYPE)


def owners(rng: np.random.Generator, vehicles: list[dict]) -> pa.Table:
    """One owner per vehicle: name, mobile, resident ID and address."""
    return pa.table({
        "vin": [v["vin"] for v in vehicles],
        "name": [v["owner"]["name"] for v in vehicles],
        "phone": [v["owner"]["phone"] for v in vehicles],
        "national_id": [v["owner"]["national_id"] for v in vehicles],
        "address": [ids.address(rng) for _ in vehicles],
    })


def after_sales(rng: np.random.Generator, vehicles: list[dict], base: datetime) -> pa.Table:
    """Service tickets that name the car, its plate and the owner's phone."""
    rows: dict[str, list] = {k: [] for k in ("ticket_id", "vin", "plate", "phone", "service_date", "dealer",
                                             "mileage_km", "description")}
    for v in vehicles:
        for n in range(int(rng.integers(1, 4))):
            rows["ticket_id"].append(f"AS-{v['vin'][-6:]}-{n:02d}")
            rows["vin"].append(v["vin"])
            rows["plate"].append(v["plate"])
            rows["phone"].append(v["owner"]["phone"])
            rows["service_date"].append(base - timedelta(days=int(rng.integers(5, 700))))
            rows["dealer"].append(str(rng.choice(DEALERS)))
            rows["mileage_km"].append(float(rng.integers(1_000, 90_000)))
            rows["description"].append(f"{rng.choice(ISSUES)}，客户电话{v['owner']['phone']}")
    return pa.table({**rows, "service_date": _ts(rows["service_date"])})


def charging_sessions(rng: np.random.Generator, vehicles: list[dict], base: datetime) -> pa.Table:
    """Charging sessions at stations around Shanghai."""
    rows: dict[str, list] = {k: [] for k in ("session_id", "vin", "station_id", "start", "end", "energy_kwh",
                                             "lat", "lon")}
    for v in vehicles:
        for n in range(int(rng.integers(2, 6))):
            start = base - timedelta(hours=int(rng.integers(1, 2000)))
            rows["session_id"].append(f"CS-{v['vin'][-6:]}-{n:03d}")
            rows["vin"].append(v["vin"])
            rows["station_id"].append(f"SH-{int(rng.integers(100, 999))}")
            rows["start"].append(start)
            rows["end"].append(start + timedelta(minutes=int(rng.integers(20, 90))))
            rows["energy_kwh"].append(round(float(rng.uniform(8, 70)), 2))
            rows["lat"].append(round(float(rng.uniform(30.85, 31.35)), 6))
            rows["lon"].append(round(float(rng.uniform(121.3, 121.95)), 6))
    return pa.table({**rows, "start": _ts(rows["start"]), "end": _ts(rows["end"])})


def procurement(rng: np.random.Generator, base: datetime, n: int = 60) -> pa.Table:
    """Purchase orders: suppliers and parts, no personal information."""
    return pa.table({
        "po_id": [f"PO-2026-{i:05d}" for i in range(n)],
        "supplier": [str(rng.choice(SUPPLIERS)) for _ in range(n)],
        "part_no": [str(rng.choice(PARTS)) for _ in range(n)],
        "quantity": pa.array(rng.integers(10, 5000, n), type=pa.int64()),
        "unit_price_cny": np.round(rng.uniform(5, 40_000, n), 2),
        "order_date": _ts([base - timedelta(days=int(d)) for d in rng.integers(1, 365, n)]),
    })


def inventory(rng: np.random.Generator, base: datetime) -> pa.Table:
    """Stock of each part in each warehouse."""
    rows = [(p, w) for p in PARTS for w in WAREHOUSES]
    return pa.table({
        "part_no": [p for p, _ in rows],
        "warehouse": [w for _, w in rows],
        "quantity": pa.array(rng.integers(0, 20_000, len(rows)), type=pa.int64()),
        "updated": _ts([base - timedelta(hours=int(h)) for h in rng.integers(1, 200, len(rows))]),
    })


def rd_tests(rng: np.random.Generator, base: datetime, n: int = 80) -> pa.Table:
    """Bench and track test results of components."""
    comps = [str(rng.choice(COMPONENTS)) for _ in range(n)]
    values = rng.uniform(0.2, 120, n)
    return pa.table({
        "test_id": [f"RD-{i:05d}" for i in range(n)],
        "component": comps,
        "metric": [METRICS[c] for c in comps],
        "value": np.round(values, 3),
        "passed": [bool(v > 10) for v in values],
        "test_date": _ts([base - timedelta(days=int(d)) for d in rng.integers(1, 400, n)]),
    })
