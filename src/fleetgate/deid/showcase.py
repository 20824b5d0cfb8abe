"""A real photo before and after de-identification, for the demo report, when one is at hand.

The demo runs on a fresh machine without ../shared; where the real test photos are present
(../shared/fixtures/real/cn_plates, HyperLPR test images, Apache-2.0), it also shows one street photo
with several Chinese plates before and after `deid image`, with what the verifier said.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

PHOTO = "cn_plate_12.jpg"  # a street with three cars and their plates


@dataclass(frozen=True)
class Showcase:
    png: bytes
    caption: str


def real_fixtures() -> Path | None:
    """../shared/fixtures/real beside the checkout (or $FLEETGATE_REAL_FIXTURES), when present."""
    candidates = [os.environ.get("FLEETGATE_REAL_FIXTURES"), Path.cwd().parent / "shared" / "fixtures" / "real",
                  Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "real"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "cn_plates" / PHOTO).is_file():
            return Path(candidate)
    return None


def real_photo_before_after(folder: Path | None = None, work: Path | None = None,
                            provider: str = "cpu") -> Showcase | None:
    """`deid image` on the real street photo: both side by side, or None when the photo is absent."""
    import tempfile

    from PIL import Image

    from fleetgate.deid.detectors import IMAGE, build_detectors
    from fleetgate.deid.verify import build_verifier
    from fleetgate.deid.video import anonymize_image

    folder = folder or real_fixtures()
    if folder is None or not (folder / "cn_plates" / PHOTO).is_file():
        return None
    src = folder / "cn_plates" / PHOTO
    with tempfile.TemporaryDirectory(prefix="fleetgate-showcase-", dir=work) as tmp:
        out = Path(tmp) / "after.png"
        report = anonymize_image(src, out, build_detectors(provider=provider, profile=IMAGE), verifier=build_verifier(
            IMAGE, provider))
        with Image.open(src) as before, Image.open(out) as after:
            width = 640
            size = (width, int(before.height * width / before.width))
            pair = Image.new("RGB", (2 * width + 10, size[1]), "white")
            pair.paste(before.convert("RGB").resize(size), (0, 0))
            pair.paste(after.convert("RGB").resize(size), (width + 10, 0))
    buffer = io.BytesIO()
    pair.save(buffer, format="PNG")
    plates = sum(1 for label in report.labels if label == "plate")
    state = "verified: no face and no legible plate left" if report.anonymized else \
        f"NOT anonymized: {len(report.residuals)} residual(s)"
    caption = (f"a real street photo ({PHOTO}, HyperLPR test images, Apache-2.0) before (left) and after (right) "
               f"`deid image`: {report.boxes.get('detected', 0)} boxes"
               f"{' with plates' if plates else ''}; {state}")
    return Showcase(buffer.getvalue(), caption)
