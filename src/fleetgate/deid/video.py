"""`fleetgate deid video|image`: find faces and plates, obscure them, re-encode, verify.

Video runs as a three-stage pipeline (decode -> detect/track/obscure -> encode) in threads, so on
two cores the encoder works while the next key frame is detected; memory stays bounded to one
stride of frames. The output is H.264 in MP4 with the input's frame rate, timestamps (variable
rate included) and resolution; frames are turned upright when the input carries rotation, audio is
dropped and no metadata (GPS EXIF, MP4 location atoms, tags) is copied. The output is written
under a temporary name and renamed only when complete.

After encoding, a verification pass decodes the output and looks again with a `Verifier`
(deid/verify.py): other scales and tiles than the obscuring pass, and a plate-text check, so that a
miss is caught rather than confirmed. Any residual means the result is not `anonymized`.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fleetgate.deid.detectors import IMAGE, VIDEO, Detection, Detector, load_models, on_cpu, side_by_side
from fleetgate.deid.obscure import ObscureSettings, obscure, obscure_i420
from fleetgate.deid.tracking import FrameBox, Tracker
from fleetgate.deid.verify import Finding, Verifier, build_verifier
from fleetgate.errors import MediaError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

Box = tuple[float, float, float, float]


@cache
def sidecar_schema() -> pa.Schema:
    """The sidecar's columns. pyarrow loads when the first sidecar is written, not with this module: it is
    30 ms of a clip's start-up, and a clip needs it only at its end."""
    import pyarrow as pa

    return pa.schema([
        ("frame", pa.int32()), ("pts", pa.int64()), ("time_s", pa.float64()), ("label", pa.string()),
        ("x0", pa.float32()), ("y0", pa.float32()), ("x1", pa.float32()), ("y1", pa.float32()),
        ("score", pa.float32()), ("source", pa.string()), ("track_id", pa.int32()), ("model", pa.string()),
    ])


# detect at least this often in video time when the stride is left to us (30 fps: every 6th frame, 25 fps:
# every 5th, 10 fps: every 2nd); the frames up to the next key frame are buffered, so a face first found at
# a key frame is backfilled onto the key frame before and the frames between, and boxes between two
# sightings are interpolated (the hand-marked real clips, a head-worn fisheye among them, come out with
# every face obscured: tests/test_deid_real.py)
AUTO_DETECT_HZ = 5


@dataclass(frozen=True)
class VideoSettings:
    stride: int = 0  # detect on every stride-th frame (0: about 5 times a second); tracking fills the rest
    hold: int | None = None  # carry a lost box this many frames (None: max(6, max_stride-1))
    verify: bool = True
    verify_stride: int = 0  # verify every Nth frame of the output (0: twice the detection stride)
    crf: int = 23
    preset: str = "superfast"
    obscure: ObscureSettings = field(default_factory=ObscureSettings)
    # while the tracker is steady (nothing new, nothing lost, nothing moving fast), detect only every
    # max_stride-th frame (None: twice the automatic stride, at most 10; an explicit --stride alone: no wider)
    max_stride: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.stride <= 10:
            raise UsageError("--stride must lie between 1 and 10 (0: about 5 detections a second)")
        if self.hold is not None and not 0 <= self.hold <= 60:
            raise UsageError("--hold must lie between 0 and 60")
        if self.hold is not None and self.hold < max(self.stride, self.max_stride or 0) - 1:
            raise UsageError("--hold must be at least stride-1 so every frame between key frames is covered")
        if self.max_stride is not None and not max(1, self.stride) <= self.max_stride <= 20:
            raise UsageError("--max-stride must lie between the stride and 20")
        if not 0 <= self.verify_stride <= 30:
            raise UsageError("--verify-stride must lie between 1 and 30 (0: the detection stride)")
        if not 0 <= self.crf <= 51:
            raise UsageError("--crf must lie between 0 and 51")

    def to_dict(self) -> dict:
        return {**asdict(self), "obscure": self.obscure.to_dict()}

    def checks(self, index: int) -> bool:
        """Whether the verification pass may look at frame `index`: every verify_stride-th frame, taken midway
        between two key frames, where the boxes are the tracker's (interpolated or held) rather than the
        detectors' own, so that what the tracker carried is what gets checked; and the first frame, which is
        checked only when the clip ends before the first of those (`first_check`), so that every clip is."""
        every = self.verify_stride or 1
        return index == 0 or index % every == self.first_check()

    def first_check(self) -> int:
        """The first frame checked in a clip long enough to have it (the offset of every verify_stride-th)."""
        return min((self.stride or 1) // 2, (self.verify_stride or 1) - 1)

    def for_rate(self, fps: float) -> VideoSettings:
        """The strides this clip runs with: an automatic stride from its frame rate (never past hold+1 when
        hold is given), the widest stride a steady tracker may take, the hold that covers it; the verifier,
        at other scales than the detectors, checks frames twice the stride apart."""
        stride = self.stride or max(1, min(int(fps // AUTO_DETECT_HZ), 10))
        if self.hold is not None:
            stride = min(stride, self.hold + 1)
        widest = self.max_stride or (stride if self.stride else min(2 * stride, 10))
        if self.hold is not None:
            widest = min(widest, self.hold + 1)
        widest = max(widest, stride)
        hold = self.hold if self.hold is not None else max(6, widest - 1)
        return replace(self, stride=stride, max_stride=widest, hold=hold,
                       verify_stride=self.verify_stride or min(2 * stride, 30))


@dataclass
class Residual:
    frame: int
    label: str
    box: tuple[float, float, float, float]
    score: float
    reason: str = "face"  # face | plate-legible (verify.Finding)


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
    verifier: dict | None = None  # what the verification pass ran (Verifier.describe)

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


class BgrPicture:
    """A decoded frame as a BGR array: what the decoder gave when it was not 8-bit 4:2:0 in limited range
    (10-bit, 4:2:2, full range, odd sizes), or once turned upright."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.shape = array.shape[:2]

    def bgr(self) -> np.ndarray:
        return self.array

    def obscure(self, boxes: Iterable[tuple[str, Box]], settings: ObscureSettings) -> None:
        obscure(self.array, boxes, settings)

    def encoder_frame(self, pix_fmt: str):
        return encoder_frame(self.array, pix_fmt)


class I420Picture:
    """A decoded 8-bit 4:2:0 frame kept as the decoder's planes (the common camera case). The detectors get
    it as BGR on key frames only; obscuring works on the planes themselves (obscure_i420), and the planes
    go to the encoder as they are: no conversion of the whole frame to BGR and back, which cost about 20 ms
    of a 2560x1920 frame, and the pixels no box touches reach the encoder unchanged."""

    def __init__(self, planes: np.ndarray) -> None:
        self.planes = np.ascontiguousarray(planes)  # obscuring writes through views of it
        self.shape = (planes.shape[0] * 2 // 3, planes.shape[1])

    def bgr(self) -> np.ndarray:
        import cv2

        return cv2.cvtColor(self.planes, cv2.COLOR_YUV2BGR_I420)

    def obscure(self, boxes: Iterable[tuple[str, Box]], settings: ObscureSettings) -> None:
        obscure_i420(self.planes, boxes, settings)

    def encoder_frame(self, pix_fmt: str):
        """The planes themselves, not a copy: the encoder takes 4:2:0 for even sizes, and these are even. The
        frame holds a reference to them; libx264 copies a picture into its own frames as it is sent."""
        import av

        return av.VideoFrame.from_numpy_buffer(self.planes, format=pix_fmt)


Picture = BgrPicture | I420Picture
_MPEG_RANGE = (0, 1)  # unspecified or limited (16-235), as OpenCV's BT.601 conversions take it


def picture_of(frame, rotation: int) -> Picture:
    """The decoded `frame` as a picture: its own planes where the pipeline can keep them, else BGR upright."""
    if (frame.format.name == "yuv420p" and not rotation % 360 and frame.width % 2 == 0 and frame.height % 2 == 0
            and int(getattr(frame, "color_range", 0) or 0) in _MPEG_RANGE):
        return I420Picture(frame.to_ndarray())
    return BgrPicture(_upright(frame.to_ndarray(format="bgr24"), rotation))


def _threaded(codec, alone: bool) -> None:
    """One decoding thread when the models share the CPU (`alone` false): the pipeline's stages already keep
    every core busy, and FFmpeg's frame threads cost 15-20 % more CPU for the same frames (measured on the
    2560x1920 and 1080p clips); FFmpeg's own threading when the models run elsewhere (a GPU)."""
    if alone:
        codec.thread_type = "AUTO"
    else:
        codec.thread_count = 1


def _decoded(container, path: Path, alone: bool = False) -> Iterator[tuple[int, int | None, int, Picture]]:
    """(index, pts, rotation, picture) for each frame; decoding errors name the frame."""
    import av

    stream = container.streams.video[0]
    _threaded(stream.codec_context, alone)
    index = -1
    try:
        for frame in container.decode(stream):
            index += 1
            rotation = int(getattr(frame, "rotation", 0) or 0)
            yield index, frame.pts, rotation, picture_of(frame, rotation)
    except av.error.FFmpegError as exc:
        raise MediaError(str(path), f"frame {index + 1}", f"does not decode: {exc}") from exc


def encoder_frame(array_bgr: np.ndarray, pix_fmt: str):
    """A frame in the encoder's pixel format. For 4:2:0, OpenCV converts BGR to I420 (BT.601, limited
    range, as FFmpeg's default): measured 2-6x faster than letting the encoder's swscale do it (43 ms a
    2560x1920 frame, the largest single cost outside the models there) and closer to the input (round
    trip error 0.7 grey levels against 2.0)."""
    import av
    import cv2

    if pix_fmt == "yuv420p":
        return av.VideoFrame.from_ndarray(cv2.cvtColor(array_bgr, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
    return av.VideoFrame.from_ndarray(array_bgr, format="bgr24")


def _labels(detectors: Sequence[Detector]) -> list[str]:
    return sorted({label for d in detectors for label in d.label.split("+")})


def _detect(detectors: Sequence[Detector], frame: np.ndarray) -> list[Detection]:
    """Every detector on `frame`, side by side in threads (onnxruntime, OpenCV and numpy release the GIL),
    each model on its share of the cores (detectors.ort_threads); results in the detectors' order."""
    found = side_by_side([lambda detector=detector: detector.detect(frame) for detector in detectors])
    return [d for detections in found for d in detections]


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


class Clip:
    """An input video, open and decoding into a queue of a few frames in a thread of its own from the moment
    it is made, until `close`. `anonymize_video` opens its input as one; a caller with other work to do
    first makes the clip before it: the command line opens it before it builds and checks the models, so
    the clip's first frames are decoded meanwhile (FFmpeg decodes without the GIL, and the first frame of the
    2560x1920 indoor clip comes out of the decoder 0.13 s after it opens, behind two more it must decode).

    `settings` are resolved for the clip's frame rate (`VideoSettings.for_rate`); `models_on_cpu` false lets
    FFmpeg thread its decoding (the models are elsewhere, a GPU). A clip is read once."""

    def __init__(self, src: Path, settings: VideoSettings | None = None, models_on_cpu: bool = True) -> None:
        self.src = Path(src)
        self.opened = time.perf_counter()  # a report's seconds count from here
        container = _open(self.src)
        try:
            if not container.streams.video:
                raise MediaError(str(self.src), "streams", "has no video stream")
            stream = container.streams.video[0]
            self.audio_dropped = bool(container.streams.audio)
            self.time_base = stream.time_base or Fraction(1, 90000)
            self.rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            self.settings = (settings or VideoSettings()).for_rate(float(self.rate))
            self.expected = stream.frames or 0
            self.pix_fmt = stream.codec_context.pix_fmt or ""
        except BaseException:
            container.close()
            raise
        self._container = container
        self.models_on_cpu = models_on_cpu
        self._closed = False
        self.frames: queue.Queue = queue.Queue(maxsize=self.settings.stride * 2 + 4)
        self._stop = threading.Event()
        self._decoder = _Stage(lambda: self._decode(not models_on_cpu))
        self._decoder.start()

    def _decode(self, alone: bool) -> None:
        try:
            for item in _decoded(self._container, self.src, alone):
                if self._stop.is_set():  # an error elsewhere: the rest of the clip is not decoded
                    break
                self.frames.put(item)
        finally:
            self.frames.put(_END)

    @property
    def error(self) -> BaseException | None:
        """What stopped the decoder, if anything did (a frame that does not decode)."""
        return self._decoder.error

    def close(self) -> None:
        """Stop the decoder, wait for it to end, and close the input (again: nothing happens). The decoder reads
        the container, so it stops first: after an error it may be waiting on a full queue, so what it puts is
        taken until it sees the stop. At the end of a clip it has ended already."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        while self._decoder.is_alive():
            try:
                self.frames.get(timeout=0.1)
            except queue.Empty:
                pass
        self._container.close()

    def __enter__(self) -> Clip:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def anonymize_video(src: Path | Clip, dst: Path, detectors: Sequence[Detector], settings: VideoSettings | None = None,
                    sidecar: Path | None = None, on_frame: Callable[[int, int], None] | None = None,
                    verifier: Verifier | None = None) -> MediaReport:
    """`src` a path, or a `Clip` already decoding (made with the settings; `settings` is then not given); the clip
    is read and closed. `verifier` None: the independent check of verify.build_verifier for the detectors' labels."""
    if isinstance(src, Clip) and settings is not None:
        src.close()
        raise UsageError("anonymize_video: a Clip carries its own settings; give them when the clip is made")
    dst = Path(dst)
    if dst.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        if isinstance(src, Clip):
            src.close()
        raise UsageError(f"{dst}: the output must be .mp4, .m4v or .mov (H.264 in an MP4 container)")
    # the decoders may take every core when the models are elsewhere
    clip = src if isinstance(src, Clip) else Clip(src, settings, models_on_cpu=on_cpu(detectors))
    try:
        return _anonymize_clip(clip, dst, detectors, sidecar, on_frame, verifier)
    finally:
        clip.close()


def _anonymize_clip(clip: Clip, dst: Path, detectors: Sequence[Detector], sidecar: Path | None,
                    on_frame: Callable[[int, int], None] | None, verifier: Verifier | None) -> MediaReport:
    import av

    src, settings, time_base, rate, decoded = clip.src, clip.settings, clip.time_base, clip.rate, clip.frames
    expected = clip.expected
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        partial = dst.with_name(f".{dst.name}.partial")
        to_encode: queue.Queue = queue.Queue(maxsize=settings.stride * 2 + 4)
        rows: list[tuple] = []
        counts = {"detected": 0, "interpolated": 0, "held": 0, "backfilled": 0}
        labels: dict[str, int] = {}
        meta: dict = {"rotation": 0, "size": None}
        # the clip decodes while the models load (LazySession): FFmpeg works without the GIL, onnxruntime not
        if settings.verify and verifier is None:
            verifier = build_verifier(VIDEO, labels=_labels(detectors))
        load_models([*detectors, *(verifier.detectors if settings.verify else [])])
        out_container = av.open(str(partial), "w", format="mp4")
        out_state: dict = {"stream": None, "last_pts": None, "packets": 0}
        # the verifier decodes the very packets the muxer writes, while the clip is still being processed,
        # so it runs on the core the encoder leaves idle; the file is checked to hold them all at the end
        to_verify: queue.Queue = queue.Queue(maxsize=64)
        obscured: dict[int, list[tuple[str, tuple]]] = {}
        frame_of_pts: dict[int, int] = {}  # the encoder's record of which frame it gave each timestamp
        verdict: dict = {"residuals": [], "checked": 0, "decoded": 0, "unreferenced": 0}

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
                index, pts, picture = item
                stream = out_state["stream"]
                if stream is None:
                    height, width = picture.shape
                    stream = out_container.add_stream("libx264", rate=rate)
                    stream.width, stream.height = width, height
                    # x264 4:2:0 needs even sizes; odd ones (1921x1081) keep their size in 4:4:4
                    stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
                    stream.time_base = time_base
                    stream.codec_context.time_base = time_base
                    stream.options = {"crf": str(settings.crf), "preset": settings.preset}
                    out_state["stream"] = stream
                    if settings.verify:
                        stream.codec_context.open()  # its extradata (SPS/PPS) is what the verifier decodes with
                        to_verify.put(("open", stream.codec_context.extradata))
                frame = picture.encoder_frame(stream.pix_fmt)
                last = out_state["last_pts"]
                if pts is None or (last is not None and pts <= last):
                    # missing or repeated timestamps: keep order with the smallest step
                    pts = (last + 1) if last is not None else 0
                frame.pts, frame.time_base = pts, time_base
                out_state["last_pts"] = pts
                frame_of_pts[pts] = index
                for packet in stream.encode(frame):
                    _write(packet)
            if out_state["stream"] is not None:
                for packet in out_state["stream"].encode():
                    _write(packet)

        def _write(packet) -> None:
            if settings.verify:
                to_verify.put(("packet", bytes(packet), packet.pts, packet.dts, packet.is_keyframe))
            out_container.mux(packet)
            out_state["packets"] += 1

        def verify() -> None:
            try:
                _verify_packets(to_verify, verifier, settings, obscured, frame_of_pts, verdict, time_base,
                                not clip.models_on_cpu)
            except BaseException:
                while to_verify.get() is not _END:  # keep the encoder from blocking on a full queue
                    pass
                raise

        encoder, checker = _Stage(encode), _Stage(verify)
        encoder.start()
        if settings.verify:
            checker.start()
        tracker = Tracker(settings.hold, settings.max_stride)
        buffer: list[tuple[int, int | None, Picture]] = []

        def emit(upto: int) -> None:
            while buffer and buffer[0][0] <= upto:
                index, pts, picture = buffer.pop(0)
                boxes = tracker.boxes_at(index)
                picture.obscure(((b.label, b.box) for b in boxes), settings.obscure)
                seen = set()
                for b in boxes:
                    counts[b.source] += 1
                    seen.add(b.label)
                    rows.append((index, pts, _seconds(pts, time_base), b))
                if settings.checks(index):
                    obscured[index] = [(b.label, b.box) for b in boxes]
                for label in seen:
                    labels[label] = labels.get(label, 0) + 1
                to_encode.put((index, pts, picture))
                if on_frame:
                    on_frame(index + 1, expected)
            tracker.forget_before(upto + 1)

        last_index, next_key, last_key = -1, 0, -1
        try:
            while True:
                item = decoded.get()
                if item is _END:
                    break
                index, pts, rotation, picture = item
                if meta["size"] is None:
                    meta["size"], meta["rotation"] = picture.shape, rotation
                elif picture.shape != meta["size"]:
                    raise MediaError(str(src), f"frame {index}", f"changes size from {meta['size'][1]}x"
                                     f"{meta['size'][0]} to {picture.shape[1]}x{picture.shape[0]}")
                buffer.append((index, pts, picture))
                last_index = index
                if index == next_key:
                    tracker.observe(index, _detect(detectors, picture.bgr()))
                    # the previous key frame waits for this one too: what the detector missed there but
                    # finds here is backfilled onto it (a plate missed on frame 0 left it legible)
                    emit(index - 1)
                    # a steady scene (the same objects, slow) is looked at less often; anything new is found
                    # at the next key frame and backfilled onto the frames before it (hold >= max_stride-1)
                    last_key, next_key = index, index + (settings.max_stride if tracker.steady(index)
                                                         else settings.stride)
            if clip.error:
                raise clip.error
            if buffer:  # the last frame is always a key frame, so the tail is bracketed
                tail_index, _, tail_picture = buffer[-1]
                if tail_index != last_key:
                    tracker.observe(tail_index, _detect(detectors, tail_picture.bgr()))
                emit(tail_index)
            if sidecar is not None:  # loaded while the encoder and the verifier finish, not after them
                import_module("pyarrow.parquet")
        finally:
            to_encode.put(_END)
            encoder.join()
            to_verify.put(_END)
            if settings.verify:
                checker.join()
            out_container.close()
            clip.close()
        if clip.error:
            partial.unlink(missing_ok=True)
            raise clip.error
        if encoder.error:
            partial.unlink(missing_ok=True)
            raise MediaError(str(dst), "encode", f"H.264 encoding failed: {encoder.error}")
        if checker.error:
            partial.unlink(missing_ok=True)
            if isinstance(checker.error, MediaError | UsageError):
                raise checker.error
            raise MediaError(str(dst), "verify", f"the output did not decode for verification: {checker.error}")
        if last_index < 0:
            partial.unlink(missing_ok=True)
            raise MediaError(str(src), "frames", "has no video frames")
    except BaseException:
        for leftover in dst.parent.glob(f".{dst.name}.partial"):
            leftover.unlink(missing_ok=True)
        raise
    height, width = meta["size"]
    residuals, verified = verdict["residuals"], verdict["checked"]
    if settings.verify:
        _check_written(partial, dst, out_state["packets"], verdict["decoded"] + verdict["unreferenced"], last_index + 1)
    os.replace(partial, dst)
    if sidecar is not None:
        write_sidecar(sidecar, rows, verifier.describe() if settings.verify else None)
    return MediaReport(
        input=str(src), output=str(dst), kind="video", width=width, height=height, frames=last_index + 1,
        fps=float(rate), seconds=time.perf_counter() - clip.opened, boxes=counts, labels=labels, residuals=residuals,
        anonymized=settings.verify and not residuals, models=sorted({d.model_id for d in detectors}),
        settings=settings.to_dict(), rotation=meta["rotation"], input_pix_fmt=clip.pix_fmt,
        audio_dropped=clip.audio_dropped, sidecar=str(sidecar) if sidecar else None, verify_frames=verified,
        verifier=verifier.describe() if settings.verify else None)


def _seconds(pts: int | None, time_base: Fraction) -> float | None:
    return float(pts * time_base) if pts is not None else None


def _residuals(frame: int, findings: Sequence[Finding]) -> list[Residual]:
    return [Residual(frame, f.label, f.box, round(f.score, 3), f.reason) for f in findings]


def _verify_packets(packets: queue.Queue, verifier: Verifier, settings: VideoSettings,
                    obscured: dict[int, list[tuple[str, tuple]]], frame_of_pts: dict[int, int], verdict: dict,
                    time_base: Fraction, alone: bool) -> None:
    """Decode the encoder's packets as they are written and check every verify_stride-th frame.

    Each packet's frame is the one the encoder gave its timestamp (`frame_of_pts`). A packet that no other
    frame refers to (H.264 nal_ref_idc 0: x264's non-reference B-frames, 6 of the 14 frames of the indoor
    clip) is not decoded unless its frame is checked: nothing in it reaches a frame that is (measured on that
    clip: 0.37 -> 0.24 CPU s). It is counted as `unreferenced`, and the file is checked to hold every packet."""
    import av

    codec = None
    first = _FirstFrame(settings)

    def look(number: int, frame) -> None:
        verdict["checked"] += 1
        array = frame.to_ndarray(format="bgr24")
        verdict["residuals"] += _residuals(number, verifier.check(array, obscured.pop(number, [])))

    def check(frames) -> None:
        for frame in frames:  # in presentation order, so frame numbers rise
            for number, picture in first.checked(frame_of_pts[frame.pts], frame, obscured):
                look(number, picture)
            verdict["decoded"] += 1

    while True:
        item = packets.get()
        if item is _END:
            break
        if item[0] == "open":
            codec = av.CodecContext.create("h264", "r")
            codec.extradata = item[1]
            _threaded(codec, alone)
            continue
        _kind, data, pts, dts, keyframe = item
        if not settings.checks(frame_of_pts[pts]) and not referenced(data):
            verdict["unreferenced"] += 1
            continue
        packet = av.Packet(data)
        packet.pts, packet.dts, packet.time_base = pts, dts, time_base
        if keyframe:
            packet.is_keyframe = True
        check(codec.decode(packet))
    if codec is not None:
        check(codec.decode(None))
    for number, picture in first.checked(-1, None, obscured):  # a clip too short for any other check
        look(number, picture)


_SLICES = (1, 5)  # H.264 NAL unit types of coded slices (non-IDR, IDR)


def referenced(packet: bytes) -> bool:
    """Whether an H.264 packet (length-prefixed NAL units, as in MP4) holds a frame that others may refer to:
    its first slice's nal_ref_idc is not 0. Anything that does not parse counts as referenced, so it is decoded."""
    position = 0
    while position + 5 <= len(packet):
        size = int.from_bytes(packet[position:position + 4], "big")
        header = packet[position + 4]
        if header & 0x1F in _SLICES:
            return bool(header >> 5 & 0x3)
        if size <= 0:
            break
        position += 4 + size
    return True


class _FirstFrame:
    """The frames to check, in order, given each decoded one: the first frame is held back until the clip
    either reaches its first regular check (then it is dropped: that frame is checked instead) or ends
    (then it is checked), so a long clip is not checked twice at its start and a short one still once."""

    def __init__(self, settings: VideoSettings) -> None:
        self.settings = settings
        self.held = None

    def checked(self, index: int, frame, obscured: dict) -> list:
        """(frame number, frame) pairs to check now; call with frame None once the clip has ended."""
        if frame is None:
            held, self.held = self.held, None
            return [(0, held)] if held is not None else []
        if not self.settings.checks(index):
            return []
        if index == 0 and self.settings.first_check() > 0:
            self.held = frame
            return []
        if self.held is not None:
            self.held = None
            obscured.pop(0, None)
        return [(index, frame)]


def _check_written(partial: Path, dst: Path, packets: int, accounted: int, frames: int) -> None:
    """The file holds every packet the encoder wrote, and the verifier had a packet for every frame (`accounted`:
    the frames it decoded and the unreferenced ones it left undecoded)."""
    container = _open(partial)
    try:
        written = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    finally:
        container.close()
    if written != packets or accounted != frames:
        partial.unlink(missing_ok=True)
        raise MediaError(str(dst), "verify", f"the output holds {written} of {packets} packets and gave the verifier "
                         f"{accounted} of {frames} frames; nothing was written")


def _verify_video(path: Path, verifier: Verifier, settings: VideoSettings,
                  obscured: dict[int, list[tuple[str, tuple]]]) -> tuple[list[Residual], int]:
    """Decode a written output and look again (tests use it on a file); returns residuals and frames checked."""
    container = _open(path)
    residuals: list[Residual] = []
    checked = 0
    try:
        first, boxes = _FirstFrame(settings), dict(obscured)  # the first frame's boxes are dropped from the copy
        pictures = ((index, picture) for index, _pts, _rotation, picture in _decoded(container, path))
        for index, picture in itertools.chain(pictures, [(-1, None)]):  # None: the clip has ended
            for number, chosen in first.checked(index, picture, boxes):
                checked += 1
                residuals += _residuals(number, verifier.check(chosen.bgr(), obscured.get(number, [])))
    finally:
        container.close()
    return residuals, checked


def write_sidecar(path: Path, rows: list[tuple[int, int | None, float | None, FrameBox]],
                  verifier: dict | None = None) -> None:
    """Per-frame boxes, scores, how each box came about, and the model that found it (Parquet); the
    file's metadata says what the verification pass ran (`fleetgate.verifier`, JSON)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = sidecar_schema()
    columns: dict[str, list] = {name: [] for name in schema.names}
    for index, pts, seconds, b in rows:
        values = (index, pts, seconds, b.label, *b.box, b.score, b.source, b.track_id, b.model)
        for name, value in zip(schema.names, values, strict=True):
            columns[name].append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    arrays = [_arrow_column(columns[f.name], f.type) for f in schema]
    schema = schema.with_metadata({"fleetgate.verifier": json.dumps(verifier, sort_keys=True)})
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), partial)
    os.replace(partial, path)


def _arrow_column(values: list, kind: pa.DataType) -> pa.Array:
    """A column from its buffers. pa.array() on Python or numpy values asks pandas whether they are pandas
    objects, and the first ask imports pandas: 0.35-0.55 s of every clip's run (measured), for a few rows."""
    import pyarrow as pa

    valid = np.fromiter((v is not None for v in values), bool, len(values))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if not valid.all() else None
    if pa.types.is_string(kind):
        encoded = [v.encode() if v is not None else b"" for v in values]
        offsets = np.zeros(len(encoded) + 1, np.int32)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        buffers = [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        return pa.Array.from_buffers(kind, len(values), buffers, null_count=int((~valid).sum()))
    data = np.array([v if v is not None else 0 for v in values], kind.to_pandas_dtype())
    return pa.Array.from_buffers(kind, len(values), [bitmap, pa.py_buffer(data)], null_count=int((~valid).sum()))


def anonymize_image(src: Path, dst: Path, detectors: Sequence[Detector], settings: VideoSettings | None = None,
                    sidecar: Path | None = None, verifier: Verifier | None = None) -> MediaReport:
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
    if settings.verify and verifier is None:
        verifier = build_verifier(IMAGE, labels=_labels(detectors))
    detections = _detect(detectors, array)
    boxes = [FrameBox(d.label, d.box, d.score, "detected", i, d.model) for i, d in enumerate(detections)]
    obscure(array, ((b.label, b.box) for b in boxes), settings.obscure)
    suffix = dst.suffix.lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix)
    if fmt is None:
        raise UsageError(f"{dst}: the output must end in .png, .jpg, .jpeg, .webp or .tif")
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial")
    out = Image.fromarray(array[:, :, ::-1].copy())
    out.save(partial, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    residuals = []
    if settings.verify:  # what was written, read back, not the array in memory
        with Image.open(partial) as written:
            check = np.asarray(written.convert("RGB"))[:, :, ::-1].copy()
        residuals = _residuals(0, verifier.check(check, [(b.label, b.box) for b in boxes]))
    os.replace(partial, dst)
    if sidecar is not None:
        write_sidecar(sidecar, [(0, None, None, b) for b in boxes], verifier.describe() if settings.verify else None)
    labels = {b.label: 1 for b in boxes}  # one frame: each label found is found on it
    return MediaReport(
        input=str(src), output=str(dst), kind="image", width=array.shape[1], height=array.shape[0], frames=1,
        fps=None, seconds=time.perf_counter() - started, boxes={"detected": len(boxes)}, labels=labels,
        residuals=residuals, anonymized=settings.verify and not residuals,
        models=sorted({d.model_id for d in detectors}), settings=settings.to_dict(),
        sidecar=str(sidecar) if sidecar else None, verify_frames=1 if settings.verify else 0,
        verifier=verifier.describe() if settings.verify else None)
