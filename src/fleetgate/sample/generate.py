"""`fleetgate sample`: write a reproducible fleet drop (format v1) with ground-truth labels."""

from __future__ import annotations

import json
import math
import wave
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fleetgate.errors import UsageError
from fleetgate.formats.drop_layout import ARROW_TIME_TYPE, DROP_FORMAT_VERSION
from fleetgate.sample import identities as ids
from fleetgate.sample import tables
from fleetgate.sample.tracks import AREAS, can_signals, drive
from fleetgate.sample.video import encode_h264, render_clip

BASE_TIME = datetime(2026, 10, 12, 8, 0, tzinfo=UTC)
RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080)}


@dataclass
class SampleSpec:
    """What to generate."""

    vehicles: int = 4
    clips: int = 2
    seed: int = 7
    video_seconds: float = 3.0
    drive_seconds: float = 20.0
    fps: int = 10
    resolution: str = "720p"
    cabin_audio: bool = True
    defects: bool = False
    area: str = "shanghai"  # where the fleet drives (AREAS): roads, speeds and driving side differ


def _write_parquet(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, compression="zstd")


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _cabin_audio(path: Path, rng: np.random.Generator, seconds: float, rate: int = 16_000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    # speech-like: a voiced tone with syllable-rate amplitude modulation over road noise
    f0 = float(rng.uniform(110, 220))
    signal = 0.3 * np.sin(2 * math.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * math.pi * 4 * t) ** 2)
    signal += 0.05 * rng.standard_normal(t.size)
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


def generate_sample(out: Path, spec: SampleSpec, on_clip: Callable[[str], None] | None = None) -> dict:
    """Write a drop to `out` and return a summary; the same spec and seed give the same drop."""
    if spec.vehicles < 1 or spec.clips < 1:
        raise UsageError("--vehicles and --clips must be at least 1")
    if spec.area not in AREAS:
        raise UsageError(f"--area must be one of {', '.join(AREAS)}")
    if spec.drive_seconds < spec.video_seconds:
        raise UsageError("--drive-seconds must be at least the video length (--seconds)")
    if spec.resolution not in RESOLUTIONS:
        raise UsageError(f"--resolution must be one of {', '.join(RESOLUTIONS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: folder exists and is not empty; choose a new folder")
    rng = np.random.default_rng(spec.seed)
    width, height = RESOLUTIONS[spec.resolution]
    (out / "tables").mkdir(parents=True, exist_ok=True)
    vehicles = []
    for index in range(spec.vehicles):
        color = ["blue", "green", "blue", "yellow"][index % 4]
        vehicles.append({"vin": ids.vin(rng), "plate_color": color, "plate": ids.plate(rng, color),
                         "district": AREAS[spec.area][index % len(AREAS[spec.area])],
                         "owner": {"name": ids.person_name(rng), "phone": ids.mobile(rng),
                                   "national_id": ids.resident_id(rng)}})
    labels: dict[str, dict] = {}
    clip_count = 0
    for v_index, vehicle in enumerate(vehicles):
        for c_index in range(spec.clips):
            clip_id = f"c{v_index:03d}-{c_index:03d}-s{spec.seed}"
            folder = out / "vehicles" / vehicle["vin"] / "clips" / clip_id
            folder.mkdir(parents=True)
            start = BASE_TIME + timedelta(days=c_index, hours=v_index, minutes=int(rng.integers(0, 50)))
            traj = drive(rng, vehicle["district"], spec.drive_seconds, rate_hz=10.0)
            can = can_signals(traj, rate_hz=20.0)
            t0 = start.timestamp()
            _write_parquet(folder / "gnss.parquet", pa.table({
                "t": pa.array(((traj.t + t0) * 1e6).astype("int64"), type=pa.int64()).cast(ARROW_TIME_TYPE),
                "lat": traj.lat + rng.normal(0, 2e-6, traj.t.size),
                "lon": traj.lon + rng.normal(0, 2e-6, traj.t.size),
                "alt_m": 4.0 + rng.normal(0, 0.3, traj.t.size),
                "heading_deg": traj.heading_deg,
                "hdop": rng.uniform(0.6, 1.3, traj.t.size),
            }))
            can_table = {k: v for k, v in can.items() if k != "t"}
            can_table["t"] = pa.array(((can["t"] + t0) * 1e6).astype("int64")).cast(ARROW_TIME_TYPE)
            _write_parquet(folder / "can.parquet", pa.table(can_table))
            colors = rng.choice(["blue", "green", "yellow", "blue"], int(rng.integers(2, 4)))
            plates = [(ids.plate(rng, str(color)), str(color)) for color in colors]
            n_frames = int(spec.video_seconds * spec.fps)
            speeds = np.interp(np.arange(n_frames) / spec.fps, traj.t, traj.speed)
            frames, frame_labels = render_clip(rng, width, height, spec.fps, n_frames, speeds, plates,
                                               n_people=int(rng.integers(1, 4)))
            encode_h264(folder / "cam_front.mp4", frames, spec.fps)
            sensors = ["cam_front", "can", "gnss"]
            if spec.cabin_audio and (v_index + c_index) % 2 == 0:
                _cabin_audio(folder / "cabin_audio.wav", rng, spec.video_seconds)
                sensors.append("cabin_audio")
            _write_json(folder / "clip.json", {
                "format_version": DROP_FORMAT_VERSION,
                "vin": vehicle["vin"],
                "clip_id": clip_id,
                "start_utc": start.isoformat().replace("+00:00", "Z"),
                "end_utc": (start + timedelta(seconds=spec.drive_seconds)).isoformat().replace("+00:00", "Z"),
                "sensors": sensors,
                "cameras": {"cam_front": {"width": width, "height": height, "fps": spec.fps,
                                          "fx": width * 0.9, "fy": width * 0.9, "cx": width / 2, "cy": height / 2}},
                "software_version": "ADAS-3.4.1",
                "region_hint": vehicle["district"].name,
            })
            labels[f"{vehicle['vin']}/{clip_id}"] = {"camera": "cam_front", "width": width, "height": height,
                                                     "fps": spec.fps, "frames": frame_labels}
            clip_count += 1
            if on_clip:
                on_clip(clip_id)
    _write_parquet(out / "tables" / "owners.parquet", tables.owners(rng, vehicles))
    _write_parquet(out / "tables" / "after_sales.parquet", tables.after_sales(rng, vehicles, BASE_TIME))
    _write_parquet(out / "tables" / "charging_sessions.parquet", tables.charging_sessions(rng, vehicles, BASE_TIME))
    _write_parquet(out / "tables" / "procurement.parquet", tables.procurement(rng, BASE_TIME))
    _write_parquet(out / "tables" / "inventory.parquet", tables.inventory(rng, BASE_TIME))
    _write_parquet(out / "tables" / "rd_tests.parquet", tables.rd_tests(rng, BASE_TIME))
    _write_json(out / "labels.json", {"format_version": DROP_FORMAT_VERSION, "clips": labels})
    _write_json(out / "drop.json", {"format_version": DROP_FORMAT_VERSION, "drop_id": f"sample-s{spec.seed}",
                                    "created_utc": BASE_TIME.isoformat().replace("+00:00", "Z"),
                                    "generator": "fleetgate sample"})
    if spec.defects:
        _add_defects(out, vehicles)
    return {"path": str(out), "vehicles": len(vehicles), "clips": clip_count,
            "faces": sum(1 for c in labels.values() for f in c["frames"] for b in f["boxes"] if b["type"] == "face"),
            "plates": sum(1 for c in labels.values() for f in c["frames"] for b in f["boxes"] if b["type"] == "plate")}


def _add_defects(out: Path, vehicles: list[dict]) -> None:
    """Faults real uploads have: a video cut off mid-upload and a GNSS fix with an impossible latitude."""
    first = out / "vehicles" / vehicles[0]["vin"] / "clips"
    clip = sorted(first.iterdir())[0]
    data = (clip / "cam_front.mp4").read_bytes()
    (clip / "cam_front.mp4").write_bytes(data[: len(data) // 2])
    if len(vehicles) > 1:
        second = sorted((out / "vehicles" / vehicles[1]["vin"] / "clips").iterdir())[0]
        table = pq.read_table(second / "gnss.parquet")
        lat = table.column("lat").to_numpy().copy()
        lat[len(lat) // 2] = 200.0
        table = table.set_column(table.schema.get_field_index("lat"), "lat", pa.array(lat))
        _write_parquet(second / "gnss.parquet", table)
