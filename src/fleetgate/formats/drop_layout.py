"""Where each file of a fleet drop lives, which data kind it is, and what it must contain.

Kinds use the policy vocabulary so later stages can decide on them without a lookup table of
their own. Files the layout does not know are not guessed at: they are quarantined.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import pyarrow as pa

DROP_FORMAT_VERSION = "1"

# Folder names must be plain: letters, digits and a few separators. This keeps names usable as
# object keys in S3 and as paths on every filesystem, and excludes '..' and control characters.
# Patterns end in \Z, not $: `$` also matches before a trailing newline.
SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
CAMERA_FILE = re.compile(r"^cam_([a-z0-9_]{1,32})\.mp4\Z")


@dataclass(frozen=True)
class FileRole:
    """What a path inside a drop is: its kind, its format and where it belongs."""

    kind: str
    file_format: str  # mp4 | parquet | json | wav
    vin: str | None = None
    clip_id: str | None = None
    table: str | None = None
    camera: str | None = None


_CLIP_FILES: dict[str, tuple[str, str]] = {
    "clip.json": ("clip_manifest", "json"),
    "can.parquet": ("can_telemetry", "parquet"),
    "gnss.parquet": ("gnss_trajectory", "parquet"),
    "cabin_audio.wav": ("cabin_audio", "wav"),
    "cabin.mp4": ("cabin_video", "mp4"),
}

TABLE_KINDS_BY_NAME: dict[str, str] = {
    "owners": "owner_record",
    "after_sales": "after_sales",
    "charging_sessions": "charging_session",
    "procurement": "procurement",
    "inventory": "inventory",
    "rd_tests": "rd_test",
}

# Sensor and business times are stored as UTC microseconds.
ARROW_TIME_TYPE = pa.timestamp("us", tz="UTC")

# Required columns of each Parquet file. Types are the logical family a column must cast to;
# extra columns are allowed and kept.
TABLE_SCHEMAS: dict[str, dict[str, str]] = {
    "can": {
        "t": "time",
        "speed_mps": "float",
        "steering_deg": "float",
        "accel_mps2": "float",
        "brake": "float",
        "throttle": "float",
        "gear": "string",
        "turn_signal": "string",
    },
    "gnss": {
        "t": "time",
        "lat": "float",
        "lon": "float",
        "alt_m": "float",
        "heading_deg": "float",
        "hdop": "float",
    },
    "owners": {"vin": "string", "name": "string", "phone": "string", "national_id": "string", "address": "string"},
    "after_sales": {
        "ticket_id": "string",
        "vin": "string",
        "plate": "string",
        "phone": "string",
        "service_date": "time",
        "dealer": "string",
        "mileage_km": "float",
        "description": "string",
    },
    "charging_sessions": {
        "session_id": "string",
        "vin": "string",
        "station_id": "string",
        "start": "time",
        "end": "time",
        "energy_kwh": "float",
        "lat": "float",
        "lon": "float",
    },
    "procurement": {
        "po_id": "string",
        "supplier": "string",
        "part_no": "string",
        "quantity": "int",
        "unit_price_cny": "float",
        "order_date": "time",
    },
    "inventory": {"part_no": "string", "warehouse": "string", "quantity": "int", "updated": "time"},
    "rd_tests": {
        "test_id": "string",
        "component": "string",
        "metric": "string",
        "value": "float",
        "passed": "bool",
        "test_date": "time",
    },
}


def asset_id(region: str, source_path: str, sha256: str) -> str:
    """Deterministic asset id: the same file with the same bytes is the same asset on every rerun."""
    return "as_" + hashlib.sha256(f"{region}\0{source_path}\0{sha256}".encode()).hexdigest()[:24]


def classify_drop_path(relpath: str) -> FileRole | None:
    """Map a drop-relative POSIX path to its role, or None when the layout has no place for it."""
    parts = relpath.split("/")
    if parts == ["drop.json"]:
        return FileRole(kind="drop_manifest", file_format="json")
    if parts == ["labels.json"]:
        return FileRole(kind="annotation", file_format="json")
    if len(parts) == 2 and parts[0] == "tables" and parts[1].endswith(".parquet"):
        table = parts[1][: -len(".parquet")]
        if table in TABLE_KINDS_BY_NAME:
            return FileRole(kind=TABLE_KINDS_BY_NAME[table], file_format="parquet", table=table)
        return None
    if len(parts) == 5 and parts[0] == "vehicles" and parts[2] == "clips":
        vin, clip_id, name = parts[1], parts[3], parts[4]
        if name in _CLIP_FILES:
            kind, fmt = _CLIP_FILES[name]
            table = name[: -len(".parquet")] if fmt == "parquet" else None
            return FileRole(kind=kind, file_format=fmt, vin=vin, clip_id=clip_id, table=table)
        camera = CAMERA_FILE.match(name)
        if camera:
            return FileRole(kind="exterior_video", file_format="mp4", vin=vin, clip_id=clip_id,
                            camera=camera.group(1))
    return None


@cache
def clip_json_schema() -> dict:
    """The JSON Schema of clip.json (draft 2020-12), shipped with the package."""
    text = resources.files("fleetgate.formats").joinpath("schemas/clip.schema.json").read_text("utf-8")
    return json.loads(text)
