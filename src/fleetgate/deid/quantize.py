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

The copy takes the image's uint8 pixels (height x width x channels, as a frame is held) in place of the
float tensor the model was exported with: `_take_pixels` below, and `detectors.ModelInput`, which gives
each pixel the very value onnxruntime's own quantization of the float input gave it.

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

RECIPE = 2  # raise when the calibration images or the quantization settings change (2: the pixels taken as input)
PIXELS = "pixels"  # the input of a copy: uint8, n x height x width x channels
# where the copy keeps the scale and zero point its float input was quantized with (ModelInput's table)
SCALE_KEY, ZERO_POINT_KEY = "fleetgate.pixels.scale", "fleetgate.pixels.zero_point"
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
            try:
                _take_pixels(quantized)
            except models.ModelError as exc:  # another quantizer's graph: it keeps its float input, still right
                logging.getLogger(__name__).warning("%s; the int8 copy of %s takes float planes", exc, name)
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


def _take_pixels(path: Path) -> None:
    """The quantized graph at `path` made to take uint8 pixels (n x height x width x channels) where it took
    the float tensor (n x channels x height x width) that its first node quantized. That QuantizeLinear and the
    transpose to the channels-last layout onnxruntime runs int8 convolutions in were 10 % of clp-det's time at
    1920x1440 (one thread; the transpose added here cancels against onnxruntime's own). The scale and zero
    point go into the model's metadata, from which `detectors.ModelInput` builds the table that maps each pixel
    to the value that QuantizeLinear gave it (the same outputs, tested)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    source = graph.input[0]
    users = [node for node in graph.node if source.name in node.input]
    if len(graph.input) != 1 or len(users) != 1 or users[0].op_type != "QuantizeLinear":
        raise models.ModelError(f"{path.name}: its input does not go through one QuantizeLinear; not quantized as "
                                "this recipe expects")
    quantize = users[0]
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    scale, zero_point = (constants.get(name) for name in quantize.input[1:3])
    if scale is None or zero_point is None or scale.size != 1 or zero_point.dtype != np.uint8:
        raise models.ModelError(f"{path.name}: its input is not quantized per tensor to uint8")
    batch, channels, height, width = (d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim)
    graph.node.remove(quantize)
    graph.node.insert(0, helper.make_node("Transpose", [PIXELS], [quantize.output[0]], perm=[0, 3, 1, 2],
                                          name="pixels_to_planes"))
    used = {name for node in graph.node for name in node.input}
    for init in [init for init in graph.initializer if init.name in quantize.input[1:3] and init.name not in used]:
        graph.initializer.remove(init)
    graph.input.remove(source)
    graph.input.append(helper.make_tensor_value_info(PIXELS, TensorProto.UINT8, [batch, height, width, channels]))
    for key, value in ((SCALE_KEY, repr(float(scale))), (ZERO_POINT_KEY, str(int(zero_point)))):
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
