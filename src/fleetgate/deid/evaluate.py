"""Evaluation against hand-marked boxes: recall by box height, precision, and whether obscuring worked.

The boxes live with the tests (tests/fixtures/real_boxes/*.json); the tests assert on them and the
bench (bench/deid_bench.py) reports from them, with the same rules:
- a detection finds a marked box at IoU >= 0.3 (obscuring grows each box, so that overlap covers it);
- a plate counts for the recall targets when it is legible and Chinese (`legible`: false marks plates
  no character of which can be read; `foreign`: true a non-Chinese plate); the bench reports all;
- an obscured box is illegible when the detail left in it (the spread of its Laplacian, with the box
  scaled to 48 px high) is at most 30 %
  of the original or its mean grey level changed by 25 or more, for a plate in each third of its width;
  outside the grown boxes at most 5 % of
  the pixels may change (by more than 8 grey levels, above JPEG/PNG rounding).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fleetgate.deid.tracking import iou

Box = tuple[float, float, float, float]
MATCH_IOU = 0.3
_DETAIL_PX = 48
BUCKETS = ((0, 12), (12, 16), (16, 24), (24, 48), (48, 96), (96, 100_000))


@dataclass(frozen=True)
class Marked:
    label: str  # face | plate | painted
    box: Box
    legible: bool = True
    foreign: bool = False
    colour: str | None = None

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def counted(self) -> bool:
        """In the recall targets: faces, and legible Chinese plates."""
        return self.label == "face" or (self.label == "plate" and self.legible and not self.foreign)


@dataclass(frozen=True)
class MarkedImage:
    name: str
    boxes: tuple[Marked, ...]
    ignore: tuple[Box, ...] = ()


def load_marked(path: Path) -> list[MarkedImage]:
    """The images of one box file; a clip's frames come as `name#frame`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for name, entry in data.get("images", {}).items():
        out.append(MarkedImage(name, tuple(_marked(b) for b in entry["boxes"]),
                               tuple(tuple(b) for b in entry.get("ignore", []))))
    for clip, entry in data.get("clips", {}).items():
        for frame, boxes in entry["frames"].items():
            out.append(MarkedImage(f"{clip}#{int(frame)}", tuple(_marked(b) for b in boxes)))
    return out


def _marked(entry: dict) -> Marked:
    return Marked(entry["label"], tuple(float(v) for v in entry["box"]), entry.get("legible", True),
                  entry.get("foreign", False), entry.get("colour"))


def bucket_of(height: float) -> str:
    for low, high in BUCKETS:
        if low <= height < high:
            return f"{low}-{high} px" if high < 100_000 else f">= {low} px"
    return "?"


def found(mark: Marked, boxes: Iterable[tuple[str, Box]]) -> bool:
    label = "plate" if mark.label == "painted" else mark.label
    return any(lbl == label and iou(mark.box, box) >= MATCH_IOU for lbl, box in boxes)


@dataclass
class Tally:
    """Recall per (label, bucket) and precision per label over many images."""

    hits: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    dets: dict[str, list[int]] = field(default_factory=dict)

    def add(self, image: MarkedImage, detections: Sequence[tuple[str, Box]], counted_only: bool = True) -> None:
        for mark in image.boxes:
            if mark.label == "painted" or (counted_only and not mark.counted):
                continue
            cell = self.hits.setdefault((mark.label, bucket_of(mark.height)), [0, 0])
            cell[0] += found(mark, detections)
            cell[1] += 1
        for label, box in detections:
            cell = self.dets.setdefault(label, [0, 0])
            true = any((m.label == label or (m.label == "painted" and label == "plate"))
                       and iou(m.box, box) >= MATCH_IOU for m in image.boxes)
            cell[0] += true or any(iou(box, region) > 0.2 for region in image.ignore)
            cell[1] += 1

    def recall(self, label: str, min_height: float = 0, max_height: float = 1e9) -> tuple[int, int]:
        cells = [v for (lbl, b), v in self.hits.items() if lbl == label and _low(b) >= min_height
                 and _low(b) < max_height]
        return sum(c[0] for c in cells), sum(c[1] for c in cells)


def _low(bucket: str) -> float:
    return float(bucket.split("-")[0].split(">=")[-1].strip().split()[0])


def grey(image_bgr: np.ndarray) -> np.ndarray:
    return image_bgr.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)


def obscured_enough(before_bgr: np.ndarray, after_bgr: np.ndarray, box: Box, parts: int = 1
                    ) -> tuple[bool, float, float]:
    """(illegible, detail left as a share of the original, mean grey change) inside `box`; with `parts`,
    each of that many vertical strips must pass on its own (a plate half covered is still half legible),
    and the worst strip is reported."""
    if parts > 1:
        x0, y0, x1, y1 = box
        step = (x1 - x0) / parts
        strips = [_obscured_box(before_bgr, after_bgr, (x0 + k * step, y0, x0 + (k + 1) * step, y1))
                  for k in range(parts)]
        worst = max(strips, key=lambda s: (not s[0], s[1]))
        return all(s[0] for s in strips), worst[1], worst[2]
    return _obscured_box(before_bgr, after_bgr, box)


def _obscured_box(before_bgr: np.ndarray, after_bgr: np.ndarray, box: Box) -> tuple[bool, float, float]:
    import cv2

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    a, b = grey(before_bgr[y0:y1, x0:x1]), grey(after_bgr[y0:y1, x0:x1])
    if a.size == 0:
        return True, 0.0, 0.0
    # judged at 48 px high, the size at which plate characters and facial features are legible: at full
    # size the encoder's noise would pass for detail, at a smaller one a plate's characters merge
    size = (max(int(round(a.shape[1] * _DETAIL_PX / a.shape[0])), 4), _DETAIL_PX)
    change = float(np.abs(a - b).mean())
    a, b = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (a, b))
    detail_a = float(cv2.Laplacian(a, cv2.CV_32F).std())
    detail_b = float(cv2.Laplacian(b, cv2.CV_32F).std())
    share = detail_b / detail_a if detail_a > 1e-6 else 0.0
    return share <= 0.30 or change >= 25.0, share, change


def changed_outside(before_bgr: np.ndarray, after_bgr: np.ndarray, boxes: Iterable[Box], grow: float = 2.0
                    ) -> float:
    """Share of the pixels outside the (grown) boxes that changed by more than 8 grey levels."""
    height, width = before_bgr.shape[:2]
    outside = np.ones((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * grow / 2, (y1 - y0) * grow / 2
        outside[max(int(cy - hh), 0):int(np.ceil(cy + hh)), max(int(cx - hw), 0):int(np.ceil(cx + hw))] = False
    if not outside.any():
        return 0.0
    diff = np.abs(grey(before_bgr) - grey(after_bgr)) > 8
    return float(diff[outside].mean())


def first_frames(src: Path, dst: Path, count: int, crf: int = 12, preset: str = "ultrafast") -> Path:
    """The first `count` frames of a clip as a clip of its own (libx264 at `crf`), for evaluating and
    timing on a part of a long real clip; the same frames for every tool that reads it."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        ins = inp.streams.video[0]
        stream = out.add_stream("libx264", rate=ins.average_rate)
        stream.width, stream.height, stream.pix_fmt = ins.codec_context.width, ins.codec_context.height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for index, frame in enumerate(inp.decode(ins)):
            if index >= count:
                break
            # fresh, regular timestamps: deface (imageio) reads only 3 frames of a clip without them
            frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
            frame.pts, frame.time_base = index, 1 / ins.average_rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst
