"""The check on the written output, independent of the pass that made the boxes.

Re-running the obscuring detectors at their own settings confirms their own misses. The verifier
looks differently:
- faces: CenterFace at another scale (and tiles) than the obscuring pass; any face it finds at or
  above the face threshold is a residual;
- plates: the learned plate detector at another scale and tiling, and a plate-text check: every box
  the verifier's detector finds, and every plate box the obscuring pass covered, is read by the plate
  recogniser (`plate_text`); legible text is a residual: the plate can still be read. A plate the
  verifier finds that reads as nothing (too small or out of focus for any character) is no residual,
  and neither are plate-shaped burned-in timestamps, which are all digits.

What the verifier ran goes into the report and the sidecar (`describe()`). Residuals never carry the
text that was read: it is personal data; only its length and confidence are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from fleetgate.deid.detectors import (
    VIDEO,
    CenterFaceDetector,
    ClpPlateDetector,
    Detector,
    Profile,
    precision_on,
    side_by_side,
)
from fleetgate.deid.plate_text import PlateReader
from fleetgate.deid.tracking import iou

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Finding:
    label: str
    box: Box
    score: float
    reason: str  # face | plate-legible


class Verifier:
    def __init__(self, faces: Detector | None, plates: Detector | None, reader: PlateReader | None,
                 face_threshold: float = 0.5) -> None:
        self.faces = faces
        self.plates = plates
        self.reader = reader
        self.face_threshold = face_threshold

    @property
    def detectors(self) -> list[Detector]:
        """Its face and plate detectors (the plate reader, which runs only on plate boxes, is not one)."""
        return [d for d in (self.faces, self.plates) if d is not None]

    @property
    def model_ids(self) -> list[str]:
        found = [d.model_id for d in (self.faces, self.plates) if d is not None]
        return found + ([self.reader.model_id] if self.reader else [])

    def describe(self) -> dict:
        def settings(detector: Detector | None) -> dict | None:
            if detector is None:
                return None
            describe = getattr(detector, "describe", None)
            return describe() if describe else {"model": detector.model_id}

        return {"faces": settings(self.faces), "plates": settings(self.plates),
                "plate_text": self.reader.model_id if self.reader else None,
                "face_threshold": self.face_threshold,
                "rules": "a face >= face_threshold; legible plate text (>= 5 letters and digits, mean confidence "
                         ">= 0.6) in a plate box the verifier found or the obscuring pass covered"}

    def check(self, frame_bgr: np.ndarray, obscured: Sequence[tuple[str, Box]] = ()) -> list[Finding]:
        # the face and the plate model side by side, as the obscuring pass runs its detectors: the last frames
        # of a clip are checked after everything else is done, so this is the clip's tail
        faces, plates = side_by_side([lambda: self.faces.detect(frame_bgr) if self.faces else [],
                                      lambda: self.plates.detect(frame_bgr) if self.plates else []])
        out = [Finding("face", d.box, d.score, "face") for d in faces if d.score >= self.face_threshold]
        if self.plates is None and self.reader is None:
            return out
        covered = [box for label, box in obscured if label == "plate"]
        candidates = [(d.box, d.score) for d in plates]
        for box, score in candidates:
            if self.reader is not None and self.reader.read(frame_bgr, box).legible:
                out.append(Finding("plate", box, score, "plate-legible"))
        if self.reader is not None:
            seen = [f.box for f in out]
            for box in covered:
                if not any(iou(box, s) > 0.3 for s in seen) and self.reader.read(frame_bgr, box).legible:
                    out.append(Finding("plate", box, 1.0, "plate-legible"))
        return out


def verifier_profile(profile: Profile) -> Profile:
    """Other scales than `profile`. Video: faces at 2/3 of its size with the long side up to 960 (0.67 on
    720p and on a 608x1080 portrait, 0.5 on 1080p, 0.375 on 2560x1920, against 1.0/1.0/0.75/0.56: the
    obscuring pass is the one that looks hardest), plates at 0.8 of its scale (1536 px where it looks at
    1920, without the colour/shape stage). Stills: faces on a 3x3 grid at 960 px instead of 2x2 at 1280, plates at
    0.7 with tiles at 1.5 instead of 2. The colour/shape stage is off, so it cannot agree with itself."""
    plate = profile.plate
    if profile.face_scale:
        face = {"face_scale": profile.face_scale * 2 / 3, "face_width": profile.face_width,
                "face_tiles": 1, "face_max_side": int(profile.face_max_side * 2 / 3)}
    else:
        face = {"face_scale": None, "face_width": 960, "face_tiles": 3}
    share = 0.7 if plate.tile_scale else 0.8
    # the obscuring pass's precision (int8 on the CPU for video): what makes the check independent is where it
    # looks and the plate-text check, and the int8 copies find what the float models find on the real set
    return Profile(**face, plate=replace(plate, scale=plate.scale * share, max_side=int(plate.max_side * share),
                                         min_side=int(plate.min_side * share), scales=(),
                                         tile_scale=1.5 if plate.tile_scale else 0.0, proposals=False,
                                         colour=False), precision=profile.precision)


def build_verifier(profile: Profile = VIDEO, provider: str = "auto", labels: Sequence[str] = ("face", "plate"),
                   face_threshold: float = 0.5) -> Verifier:
    other = verifier_profile(profile)
    precision = precision_on(other.precision, provider)
    faces = CenterFaceDetector(0.3, other.face_width, other.face_tiles, provider, scale=other.face_scale,
                               max_side=other.face_max_side, precision=precision) if "face" in labels else None
    # a low bar for plate candidates: each is read, and only legible text counts
    plates = ClpPlateDetector(0.2, other.plate, provider, precision=precision) if "plate" in labels else None
    reader = PlateReader(provider) if "plate" in labels else None
    return Verifier(faces, plates, reader, face_threshold)
