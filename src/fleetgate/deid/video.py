"""`fleetgate deid video|image`: find faces and plates, obscure them, re-encode, verify.

Video runs as a three-stage pipeline (decode -> detect/track/obscure -> encode) in threads, so on
two cores the encoder works while the next key frame is detected; memory stays bounded to one
stride of frames. The output is H.264 in MP4 with the input's frame rate, timestamps (variable
rate included) and resolution; frames are turned upright when the input carries rotation, audio is
dropped and no metadata (GPS EXIF, MP4 location atoms, tags) is copied. The output is written
under a temporary name and renamed only when complete.

After encoding, a verification pass decodes the output and runs the detectors again. Anything
still found above the verification threshold is a residual: the report lists it and the result is
not `anonymized`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fleetgate.deid.detectors import Detection, Detector
from fleetgate.deid.obscure import ObscureSettings, obscure
from fleetgate.deid.tracking import FrameBox, Tracker
from fleetgate.errors import MediaError, UsageError

SIDECAR_SCHEMA = pa.schema([
    ("frame", pa.int32()), ("pts", pa.int64()), ("time_s", pa.float64()), ("label", pa.string()),
    ("x0", pa.float32()), ("y0", pa.float32()), ("x1", pa.float32()), ("y1", pa.float32()),
    ("score", pa.float32()), ("source", pa.string()), ("track_id", pa.int32()), ("model", pa.string()),
])


@dataclass(frozen=True)
class VideoSettings:
    stride: int = 2  # detect on every stride-th frame; tracking fills the frames between
    hold: int = 6  # carry a lost box this many frames
    verify: bool = True
    verify_stride: int = 2
    face_verify_threshold: float = 0.5
    plate_verify_threshold: float = 0.65
    crf: int = 23
    preset: str = "veryfast"
    obscure: ObscureSettings = field(default_factory=ObscureSettings)

    def __post_init__(self) -> None:
        if not 1 <= self.stride <= 10:
            raise UsageError("--stride must lie between 1 and 10")
        if not 0 <= self.hold <= 60:
            raise UsageError("--hold must lie between 0 and 60")
        if self.hold < self.stride - 1:
            raise UsageError("--hold must be at least stride-1 so every frame between key frames is covered")
        if not 1 <= self.verify_stride <= 30:
            raise UsageError("--verify-stride must lie between 1 and 30")
        if not 0 <= self.crf <= 51:
            raise UsageError("--crf must lie between 0 and 51")

    def to_dict(self) -> dict:
        return {**asdict(self), "obscure": self.obscure.to_dict()}


@dataclass
class Residual:
    frame: int
    label: str
    box: tuple[float, float, float, float]
    score: float


@dataclass
class MediaReport:
    input: str
    output: str
    kind: str  # video | image
    width: int
    height: int
    frames: int
    fps: float | None
    seconds: float
    boxes: dict[str, int]  # by source: detected / interpolated / held / backfilled
    labels: dict[str, int]  # frames-with-box counts by label
    residuals: list[Residual]
    anonymized: bool
    models: list[str]
    settings: dict
    rotation: int = 0
    input_pix_fmt: str = ""
    audio_dropped: bool = False
    sidecar: str | None = None
    verify_frames: int = 0

    @property
    def detected_features(self) -> list[str]:
        return sorted(label for label, n in self.labels.items() if n)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["residuals"] = [asdict(r) for r in self.residuals]
        out["processing_fps"] = round(self.frames / self.seconds, 2) if self.seconds else None
        return out


def _open(path: Path):
    import av

    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaError(str(path), "container", f"does not open as a media file: {exc}") from exc


def _upright(array: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display rotation (degrees counter-clockwise, as FFmpeg's display matrix says)."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(array, k=turns)) if turns else array


def _decoded(container, path: Path) -> Iterator[tuple[int, int | None, int, np.ndarray]]:
    """(index, pts, rotation, BGR array) for each frame; decoding errors name the frame."""
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    index = -1
    try:
        for frame in container.decode(stream):
            index += 1
            rotation = int(getattr(frame, "rotation", 0) or 0)
            yield index, frame.pts, rotation, _upright(frame.to_ndarray(format="bgr24"), rotation)
    except av.error.FFmpegError as exc:
        raise MediaError(str(path), f"frame {index + 1}", f"does not decode: {exc}") from exc


def _detect(detectors: Sequence[Detector], frame: np.ndarray) -> list[Detection]:
    out: list[Detection] = []
    for detector in detectors:
        out.extend(detector.detect(frame))
    return out


class _Stage(threading.Thread):
    """A pipeline stage in a thread; an exception is kept and re-raised by the caller."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc


_END = object()


def anonymize_video(src: Path, dst: Path, detectors: Sequence[Detector], settings: VideoSettings | None = None,
                    sidecar: Path | None = None, on_frame: Callable[[int, int], None] | None = None) -> MediaReport:
    import av

    settings = settings or VideoSettings()
    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise UsageError(f"{dst}: the output must be .mp4, .m4v or .mov (H.264 in an MP4 container)")
    started = time.perf_counter()
    container = _open(src)
    try:
        if not container.streams.video:
            raise MediaError(str(src), "streams", "has no video stream")
        in_stream = container.streams.video[0]
        audio_dropped = bool(container.streams.audio)
        time_base = in_stream.time_base or Fraction(1, 90000)
        rate = in_stream.average_rate or in_stream.guessed_rate or Fraction(25)
        expected = in_stream.frames or 0
        in_pix_fmt = in_stream.codec_context.pix_fmt or ""
        dst.parent.mkdir(parents=True, exist_ok=True)
        partial = dst.with_name(f".{dst.name}.partial")
        decoded: queue.Queue = queue.Queue(maxsize=settings.stride * 2 + 4)
        to_encode: queue.Queue = queue.Queue(maxsize=settings.stride * 2 + 4)
        rows: list[tuple] = []
        counts = {"detected": 0, "interpolated": 0, "held": 0, "backfilled": 0}
        labels: dict[str, int] = {}
        meta: dict = {"rotation": 0, "size": None}

        def decode() -> None:
            try:
                for item in _decoded(container, src):
                    decoded.put(item)
            finally:
                decoded.put(_END)

        out_container = av.open(str(partial), "w", format="mp4")
        out_state: dict = {"stream": None, "last_pts": None}

        def encode() -> None:
            try:
                _encode()
            except BaseException:
                while to_encode.get() is not _END:  # keep the detector from blocking on a full queue
                    pass
                raise

        def _encode() -> None:
            while True:
                item = to_encode.get()
                if item is _END:
                    break
                pts, array = item
                stream = out_state["stream"]
                if stream is None:
                    height, width = array.shape[:2]
                    stream = out_container.add_stream("libx264", rate=rate)
                    stream.width, stream.height = width, height
                    # x264 4:2:0 needs even sizes; odd ones (1921x1081) keep their size in 4:4:4
                    stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
                    stream.time_base = time_base
                    stream.codec_context.time_base = time_base
                    stream.options = {"crf": str(settings.crf), "preset": settings.preset}
                    out_state["stream"] = stream
                frame = av.VideoFrame.from_ndarray(array, format="bgr24")
                last = out_state["last_pts"]
                if pts is None or (last is not None and pts <= last):
                    # missing or repeated timestamps: keep order with the smallest step
                    pts = (last + 1) if last is not None else 0
                frame.pts, frame.time_base = pts, time_base
                out_state["last_pts"] = pts
                for packet in stream.encode(frame):
                    out_container.mux(packet)
            if out_state["stream"] is not None:
                for packet in out_state["stream"].encode():
                    out_container.mux(packet)

        decoder, encoder = _Stage(decode), _Stage(encode)
        decoder.start()
        encoder.start()
        tracker = Tracker(settings.hold, settings.stride)
        buffer: list[tuple[int, int | None, np.ndarray]] = []

        def emit(upto: int) -> None:
            while buffer and buffer[0][0] <= upto:
                index, pts, array = buffer.pop(0)
                boxes = tracker.boxes_at(index)
                obscure(array, ((b.label, b.box) for b in boxes), settings.obscure)
                seen = set()
                for b in boxes:
                    counts[b.source] += 1
                    seen.add(b.label)
                    rows.append((index, pts, _seconds(pts, time_base), b))
                for label in seen:
                    labels[label] = labels.get(label, 0) + 1
                to_encode.put((pts, array))
                if on_frame:
                    on_frame(index + 1, expected)
            tracker.forget_before(upto + 1)

        last_index = -1
        try:
            while True:
                item = decoded.get()
                if item is _END:
                    break
                index, pts, rotation, array = item
                if meta["size"] is None:
                    meta["size"], meta["rotation"] = array.shape[:2], rotation
                elif array.shape[:2] != meta["size"]:
                    raise MediaError(str(src), f"frame {index}", f"changes size from {meta['size'][1]}x"
                                     f"{meta['size'][0]} to {array.shape[1]}x{array.shape[0]}")
                buffer.append((index, pts, array))
                last_index = index
                if index % settings.stride == 0:
                    tracker.observe(index, _detect(detectors, array))
                    emit(index)
            if decoder.error:
                raise decoder.error
            if buffer:  # the last frame is always a key frame, so the tail is bracketed
                tail_index, _, tail_array = buffer[-1]
                if tail_index % settings.stride:
                    tracker.observe(tail_index, _detect(detectors, tail_array))
                emit(tail_index)
        finally:
            to_encode.put(_END)
            encoder.join()
            out_container.close()
            while decoder.is_alive():  # after an error the decoder may wait on a full queue
                try:
                    decoded.get(timeout=0.1)
                except queue.Empty:
                    pass
        if decoder.error:
            partial.unlink(missing_ok=True)
            raise decoder.error
        if encoder.error:
            partial.unlink(missing_ok=True)
            raise MediaError(str(dst), "encode", f"H.264 encoding failed: {encoder.error}")
        if last_index < 0:
            partial.unlink(missing_ok=True)
            raise MediaError(str(src), "frames", "has no video frames")
    except BaseException:
        container.close()
        for leftover in dst.parent.glob(f".{dst.name}.partial"):
            leftover.unlink(missing_ok=True)
        raise
    container.close()
    height, width = meta["size"]
    residuals, verified = (_verify_video(partial, detectors, settings) if settings.verify else ([], 0))
    os.replace(partial, dst)
    if sidecar is not None:
        write_sidecar(sidecar, rows)
    return MediaReport(
        input=str(src), output=str(dst), kind="video", width=width, height=height, frames=last_index + 1,
        fps=float(rate), seconds=time.perf_counter() - started, boxes=counts, labels=labels, residuals=residuals,
        anonymized=settings.verify and not residuals, models=sorted({d.model_id for d in detectors}),
        settings=settings.to_dict(), rotation=meta["rotation"], input_pix_fmt=in_pix_fmt,
        audio_dropped=audio_dropped, sidecar=str(sidecar) if sidecar else None, verify_frames=verified)


def _seconds(pts: int | None, time_base: Fraction) -> float | None:
    return float(pts * time_base) if pts is not None else None


def _verify_threshold(settings: VideoSettings, label: str) -> float:
    return settings.face_verify_threshold if label == "face" else settings.plate_verify_threshold


def _verify_video(path: Path, detectors: Sequence[Detector], settings: VideoSettings) -> tuple[list[Residual], int]:
    """Decode the written output and look again; returns residual detections and frames checked."""
    container = _open(path)
    residuals: list[Residual] = []
    checked = 0
    try:
        for index, _pts, _rotation, array in _decoded(container, path):
            if index % settings.verify_stride:
                continue
            checked += 1
            for det in _detect(detectors, array):
                if det.score >= _verify_threshold(settings, det.label):
                    residuals.append(Residual(index, det.label, det.box, round(det.score, 3)))
    finally:
        container.close()
    return residuals, checked


def write_sidecar(path: Path, rows: list[tuple[int, int | None, float | None, FrameBox]]) -> None:
    """Per-frame boxes, scores, how each box came about, and the model that found it (Parquet)."""
    columns: dict[str, list] = {name: [] for name in SIDECAR_SCHEMA.names}
    for index, pts, seconds, b in rows:
        values = (index, pts, seconds, b.label, *b.box, b.score, b.source, b.track_id, b.model)
        for name, value in zip(SIDECAR_SCHEMA.names, values, strict=True):
            columns[name].append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(pa.table(columns, schema=SIDECAR_SCHEMA), partial)
    os.replace(partial, path)


def anonymize_image(src: Path, dst: Path, detectors: Sequence[Detector], settings: VideoSettings | None = None,
                    sidecar: Path | None = None) -> MediaReport:
    """Obscure faces and plates in one image; same size out, no EXIF (GPS included), PNG for .png."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    settings = settings or VideoSettings()
    src, dst = Path(src), Path(dst)
    started = time.perf_counter()
    if not src.is_file():
        raise UsageError(f"{src}: no such file")
    try:
        with Image.open(src) as opened:
            upright = ImageOps.exif_transpose(opened)  # what a viewer shows; the EXIF goes no further
            array = np.asarray(upright.convert("RGB"))[:, :, ::-1].copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(str(src), "image", f"does not read as an image: {exc}") from exc
    detections = _detect(detectors, array)
    boxes = [FrameBox(d.label, d.box, d.score, "detected", i, d.model) for i, d in enumerate(detections)]
    obscure(array, ((b.label, b.box) for b in boxes), settings.obscure)
    residuals = []
    if settings.verify:
        residuals = [Residual(0, d.label, d.box, round(d.score, 3)) for d in _detect(detectors, array)
                     if d.score >= _verify_threshold(settings, d.label)]
    suffix = dst.suffix.lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix)
    if fmt is None:
        raise UsageError(f"{dst}: the output must end in .png, .jpg, .jpeg, .webp or .tif")
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial")
    out = Image.fromarray(array[:, :, ::-1].copy())
    out.save(partial, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    os.replace(partial, dst)
    if sidecar is not None:
        write_sidecar(sidecar, [(0, None, None, b) for b in boxes])
    labels = {b.label: 1 for b in boxes}  # one frame: each label found is found on it
    return MediaReport(
        input=str(src), output=str(dst), kind="image", width=array.shape[1], height=array.shape[0], frames=1,
        fps=None, seconds=time.perf_counter() - started, boxes={"detected": len(boxes)}, labels=labels,
        residuals=residuals, anonymized=settings.verify and not residuals,
        models=sorted({d.model_id for d in detectors}), settings=settings.to_dict(),
        sidecar=str(sidecar) if sidecar else None, verify_frames=1 if settings.verify else 0)
