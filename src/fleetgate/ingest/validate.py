"""Checks of each file of a drop: containers and codecs, table schemas, times and coordinates.

Each check raises an ItemError naming the file and the field at fault, or returns what the
catalog should know about the file: its time range and tags.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from jsonschema import Draft202012Validator

from fleetgate.errors import ItemError, MediaError, TableError, ValueRangeError
from fleetgate.formats.drop_layout import DROP_FORMAT_VERSION, TABLE_SCHEMAS, FileRole, clip_json_schema
from fleetgate.formats.identifiers import is_valid_vin

Meta = dict[str, Any]

# Columns whose values have a physical range; anything outside cannot be a real reading.
VALUE_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "gnss": {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0), "alt_m": (-500.0, 9000.0),
             "heading_deg": (0.0, 360.0), "hdop": (0.0, 100.0)},
    "can": {"speed_mps": (0.0, 120.0), "steering_deg": (-1080.0, 1080.0), "accel_mps2": (-50.0, 50.0),
            "brake": (0.0, 1.0), "throttle": (0.0, 1.0)},
    "charging_sessions": {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0), "energy_kwh": (0.0, 1000.0)},
}
# Times before 2000 or after 2100 are unit mistakes (ms taken for s), not fleet data.
EPOCH_RANGE = (946684800.0, 4102444800.0)
# Sensor streams must move forward in time, sample after sample.
MONOTONIC_TABLES = {"can", "gnss"}


def validate_file(relpath: str, role: FileRole, path: Path) -> Meta:
    """Validate one file by its role; return catalog metadata or raise an ItemError."""
    if role.vin is not None and not is_valid_vin(role.vin):
        raise ItemError(relpath, "vin", f"folder name {role.vin!r} is not a VIN with a valid ISO 3779 check digit")
    if role.file_format == "mp4":
        return probe_video(relpath, path)
    if role.file_format == "wav":
        return probe_audio(relpath, path)
    if role.file_format == "parquet":
        return check_table(relpath, role.table or "", path)
    if role.kind == "clip_manifest":
        return check_clip_json(relpath, role, path)
    return check_json_document(relpath, role, path)


# -- JSON ---------------------------------------------------------------------------------------
def _load_json(relpath: str, path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ItemError(relpath, "encoding", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ItemError(relpath, "json", f"not valid JSON: {exc.msg} at line {exc.lineno}") from exc


def _parse_utc(relpath: str, field: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueRangeError(relpath, field, f"{value!r} is not an ISO 8601 date-time") from exc
    if parsed.tzinfo is None:
        raise ValueRangeError(relpath, field, f"{value!r} has no UTC offset")
    return parsed.astimezone(UTC)


def check_clip_json(relpath: str, role: FileRole, path: Path) -> Meta:
    """clip.json: the JSON Schema, then agreement with its folder and a forward time range."""
    doc = _load_json(relpath, path)
    errors = sorted(Draft202012Validator(clip_json_schema()).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.absolute_path) or "(document)"
        raise ItemError(relpath, field, f"does not match the clip schema: {first.message}")
    if doc["vin"] != role.vin:
        raise ItemError(relpath, "vin", f"{doc['vin']!r} differs from its folder {role.vin!r}")
    if doc["clip_id"] != role.clip_id:
        raise ItemError(relpath, "clip_id", f"{doc['clip_id']!r} differs from its folder {role.clip_id!r}")
    if not is_valid_vin(doc["vin"]):
        raise ItemError(relpath, "vin", f"{doc['vin']!r} has a wrong ISO 3779 check digit")
    start = _parse_utc(relpath, "start_utc", doc["start_utc"])
    end = _parse_utc(relpath, "end_utc", doc["end_utc"])
    if end <= start:
        raise ValueRangeError(relpath, "end_utc", "clip ends before it starts")
    return {"t_start": start, "t_end": end,
            "tags": {"software_version": doc["software_version"], "sensors": doc["sensors"],
                     "cameras": doc["cameras"]}}


def check_json_document(relpath: str, role: FileRole, path: Path) -> Meta:
    """drop.json and labels.json: JSON objects; drop.json must declare format version 1."""
    doc = _load_json(relpath, path)
    if not isinstance(doc, dict):
        raise ItemError(relpath, "(document)", "must be a JSON object")
    if role.kind == "drop_manifest" and str(doc.get("format_version")) != DROP_FORMAT_VERSION:
        raise ItemError(relpath, "format_version",
                        f"expected {DROP_FORMAT_VERSION!r}, found {doc.get('format_version')!r}")
    return {"tags": {}}


# -- media --------------------------------------------------------------------------------------
def probe_video(relpath: str, path: Path) -> Meta:
    """Probe with PyAV: an MP4 with one H.264 stream whose every packet is present and which decodes."""
    import av

    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(relpath, "container", f"not a readable video file ({_av_reason(exc)})") from exc
    with container:
        if "mp4" not in container.format.name and "mov" not in container.format.name:
            raise MediaError(relpath, "container", f"expected MP4, found {container.format.name}")
        if not container.streams.video:
            raise MediaError(relpath, "streams", "no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec != "h264":
            raise MediaError(relpath, "codec", f"expected H.264, found {codec}")
        width, height = stream.codec_context.width, stream.codec_context.height
        declared = stream.frames
        packets = 0
        decoded_first = False
        try:
            # Demux every packet (cheap: no decoding) so a truncated file is caught, and decode the
            # first frame so a file whose header is fine but whose data is garbage is caught too.
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                packets += 1
                if not decoded_first:
                    decoded_first = bool(packet.decode())
        except (av.FFmpegError, ValueError) as exc:
            reason = f"video data is corrupt after packet {packets} ({_av_reason(exc)})"
            raise MediaError(relpath, "data", reason) from exc
        if packets == 0:
            raise MediaError(relpath, "frames", "the video has zero frames")
        if declared and packets < declared:
            raise MediaError(relpath, "data", f"truncated: {packets} of {declared} frames present")
        if not decoded_first:
            # H.264 may need a few packets before the first picture; decode a little further.
            decoded_first = _decodes_any(path)
        if not decoded_first:
            raise MediaError(relpath, "data", "no frame decodes")
        fps = float(stream.average_rate) if stream.average_rate else None
        duration = float(stream.duration * stream.time_base) if stream.duration else None
    return {"tags": {"codec": codec, "width": width, "height": height, "frames": packets,
                     "fps": fps, "duration_s": duration}}


def _decodes_any(path: Path) -> bool:
    import av

    try:
        with av.open(str(path)) as container:
            for _frame in container.decode(video=0):
                return True
    except av.FFmpegError:
        return False
    return False


def probe_audio(relpath: str, path: Path) -> Meta:
    """Probe a WAV with PyAV: one audio stream that decodes."""
    import av

    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(relpath, "container", f"not a readable audio file ({_av_reason(exc)})") from exc
    with container:
        if not container.streams.audio:
            raise MediaError(relpath, "streams", "no audio stream")
        stream = container.streams.audio[0]
        samples = 0
        try:
            for frame in container.decode(stream):
                samples += frame.samples
        except av.FFmpegError as exc:
            raise MediaError(relpath, "data", f"audio data is corrupt ({_av_reason(exc)})") from exc
        if samples == 0:
            raise MediaError(relpath, "samples", "the audio has no samples")
        rate = stream.codec_context.sample_rate
    return {"tags": {"codec": stream.codec_context.name, "sample_rate": rate,
                     "duration_s": samples / rate if rate else None}}


def _av_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


# -- tables -------------------------------------------------------------------------------------
def _family_ok(family: str, dtype: pa.DataType) -> bool:
    if family == "time":
        return pa.types.is_timestamp(dtype) or pa.types.is_date(dtype) or pa.types.is_floating(dtype) \
            or pa.types.is_integer(dtype)
    if family == "float":
        return pa.types.is_floating(dtype) or pa.types.is_integer(dtype) or pa.types.is_decimal(dtype)
    if family == "int":
        return pa.types.is_integer(dtype)
    if family == "bool":
        return pa.types.is_boolean(dtype)
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype)


def _as_epoch_seconds(column: pa.ChunkedArray) -> np.ndarray:
    dtype = column.type
    if pa.types.is_timestamp(dtype):
        return column.cast(pa.timestamp("us", tz=dtype.tz)).cast(pa.int64()).to_numpy(zero_copy_only=False) / 1e6
    if pa.types.is_date(dtype):
        return column.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False).astype(float) * 86400.0
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False)


def check_table(relpath: str, table_name: str, path: Path) -> Meta:
    """Parquet: readable, required columns with the right types, no nulls or NaN in them, values
    in range, sensor time strictly increasing."""
    required = TABLE_SCHEMAS[table_name]
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(relpath, "file", f"not a readable Parquet file ({exc})") from exc
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise TableError(relpath, missing[0], f"required column missing (missing: {', '.join(missing)})")
    for column, family in required.items():
        dtype = schema.field(column).type
        if not _family_ok(family, dtype):
            raise TableError(relpath, column, f"type {dtype} is not a {family} type")
    try:
        table = parquet.read(columns=list(required))
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(relpath, "file", f"Parquet data does not read ({exc})") from exc
    if table.num_rows == 0:
        raise TableError(relpath, "rows", "table has no rows")
    times: dict[str, np.ndarray] = {}
    for column, family in required.items():
        values = table.column(column)
        if values.null_count:
            raise ValueRangeError(relpath, column, f"{values.null_count} null value(s)")
        if family in ("float", "time") and pa.types.is_floating(values.type):
            nan = pc.sum(pc.is_nan(values).cast(pa.int64())).as_py() or 0
            if nan:
                raise ValueRangeError(relpath, column, f"{nan} NaN value(s)")
        if family == "time":
            seconds = _as_epoch_seconds(values)
            if seconds.min() < EPOCH_RANGE[0] or seconds.max() > EPOCH_RANGE[1]:
                raise ValueRangeError(relpath, column, "time outside 2000-01-01 .. 2100-01-01 (wrong unit?)")
            times[column] = seconds
    for column, (low, high) in VALUE_RANGES.get(table_name, {}).items():
        bounds = pc.min_max(table.column(column))
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        if lo < low or hi > high:
            bad = lo if lo < low else hi
            raise ValueRangeError(relpath, column, f"value {bad} outside [{low:g}, {high:g}]")
    if table_name in MONOTONIC_TABLES:
        t = times["t"]
        steps = np.diff(t)
        if steps.size and not np.all(steps > 0):
            row = int(np.argmax(steps <= 0)) + 1
            raise ValueRangeError(relpath, "t", f"timestamps must strictly increase (row {row} goes back or repeats)")
    meta: Meta = {"tags": {"rows": table.num_rows}}
    if times:
        lo_t = min(float(v.min()) for v in times.values())
        hi_t = max(float(v.max()) for v in times.values())
        meta["t_start"] = datetime.fromtimestamp(lo_t, UTC)
        meta["t_end"] = datetime.fromtimestamp(hi_t, UTC)
    return meta
