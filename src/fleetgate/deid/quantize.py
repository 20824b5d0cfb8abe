"""int8 copies of the detector models, made on this machine from the verified float models.

Static quantization (onnxruntime.quantization, QOperator format: QLinearConv, per-channel int8
weights, uint8 activations with MinMax ranges) runs CenterFace 2.1-2.2x and clp-det 1.5x faster on
the CPU here (one thread, 608x1088 to 1920x1440 inputs; measured in docs/benchmarks.md). Nothing is
downloaded: the copy is derived from the float model that `models.path` verified, calibrated on
images that ship with the packages fleetgate installs (scikit-image's photographs, and frames of the
generated road scene with its rendered plates and real faces), so every machine derives it the same
way. The cache holds the copy beside a record of what it came from (the float model's SHA-256, this
recipe, the onnxruntime version) and the copy's own SHA-256, which is checked before every use; a
copy that does not match is made again, never used.

Whether int8 keeps the recall is measured, not assumed: tests/test_deid_real.py and the bench run the
video profile, which uses these copies, on the hand-marked real set.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fleetgate.deid import models

RECIPE = 1  # raise when the calibration images or the quantization settings change
# the photographs scikit-image ships in its wheel (no download): people, a street scene, objects
_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "camera")
_LOCK = threading.Lock()


def _photos() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in _PHOTOS:
        pixels = getattr(data, name)()
        if isinstance(pixels, tuple):  # the stereo pair comes with its disparity: the left view
            pixels = pixels[0]
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        out.append(np.ascontiguousarray(pixels[:, :, 2::-1]))  # RGB to BGR, alpha dropped
    return out


def _road_frames() -> list[np.ndarray]:
    """Frames of the generated 1080p road scene (fixed seed): cars with plates of every colour, people."""
    from fleetgate.sample.video import render_clip

    rng = np.random.default_rng(14)
    frames, _labels = render_clip(rng, 1920, 1080, 25, 40, np.full(40, 12.0),
                                  [("沪A12345", "blue"), ("沪B67890", "yellow"), ("沪AD12345", "green"),
                                   ("苏E5C821", "blue")], n_people=3)
    return [np.ascontiguousarray(f[:, :, ::-1]) for f in frames[::8]]  # render_clip draws RGB


def calibration_images() -> list[np.ndarray]:
    """BGR images the ranges are measured on."""
    return _photos() + _road_frames()


# input sizes (width, height) each image is shown at, as the video profile shows a 608x1080 portrait
# and a 1080p frame: the ranges are those of real use (two sizes give the ranges four gave)
_SIZES = ((608, 1088), (1440, 800))


class _Reader:
    """onnxruntime's CalibrationDataReader over the calibration images at each input size."""

    def __init__(self, input_name: str, pack: Callable[[np.ndarray, int, int], np.ndarray]) -> None:
        self._items = ((input_name, image, size) for image in calibration_images() for size in _SIZES)
        self._pack = pack

    def get_next(self) -> dict | None:
        item = next(self._items, None)
        if item is None:
            return None
        name, image, (width, height) = item
        return {name: self._pack(image, width, height)}

    def rewind(self) -> None:  # pragma: no cover - onnxruntime asks only for some calibrators
        raise NotImplementedError


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _record(name: str, source: Path) -> dict:
    import onnxruntime

    spec = models.spec_of(name)
    return {"model": name, "from_sha256": spec.sha256, "recipe": RECIPE, "onnxruntime": onnxruntime.__version__,
            "source_file": source.name}


def int8_path(name: str, float_model: Callable[[], bytes], source: Path,
              pack: Callable[[np.ndarray, int, int], np.ndarray]) -> Path:
    """The int8 copy of model `name`, made from `float_model()` (the verified float graph, as the detector
    loads it) on first use and cached; `pack` turns a BGR image into the model's input at a size."""
    import onnxruntime

    spec = models.spec_of(name)
    target = models.models_dir() / f"{spec.name}-{spec.version}.int8-r{RECIPE}-ort{onnxruntime.__version__}.onnx"
    wanted = _record(name, source)
    with _LOCK:
        if _valid(target, wanted):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="fleetgate-int8-", dir=target.parent) as tmp:
            floated = Path(tmp) / "float.onnx"
            floated.write_bytes(float_model())
            quantized = Path(tmp) / "int8.onnx"
            _quantize(floated, quantized, pack)
            digest = models.sha256_file(quantized)
            os.replace(quantized, target)
            partial = _meta_path(target).with_suffix(".partial")
            partial.write_text(json.dumps({**wanted, "sha256": digest}, indent=2) + "\n")
            os.replace(partial, _meta_path(target))
        return target


def _valid(target: Path, wanted: dict) -> bool:
    meta = _meta_path(target)
    if not (target.is_file() and meta.is_file()):
        return False
    try:
        recorded = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    same = all(recorded.get(k) == v for k, v in wanted.items())
    return same and recorded.get("sha256") == models.sha256_file(target)


def _quantize(src: Path, dst: Path, pack: Callable[[np.ndarray, int, int], np.ndarray]) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ort.set_default_logger_severity(3)  # the pre-processing's notes on unused initialisers are no news
    prepared = src.with_name("prepared.onnx")
    # folds batch norms and constants first, so the quantized graph has fewer, fused convolutions
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    input_name = ort.InferenceSession(str(prepared), options, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    logging.disable(logging.WARNING)  # it logs every tensor it leaves in float (shapes, indices) on the root logger
    try:
        quantize_static(str(prepared), str(dst), _Reader(input_name, pack), quant_format=QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.disable(logging.NOTSET)
