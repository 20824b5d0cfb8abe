"""De-identification on real footage, against boxes marked by hand (tests/fixtures/real_boxes/).

Asserts, per image, that every legible Chinese plate and every face at least 24 px high is found, the
recall targets over the set (plates >= 16 px: 98 %; faces >= 24 px: 98 %), that every found box is left
illegible while at most 5 % of the pixels outside change, that the independent verifier catches plates
and faces left in the output, and that the real clips come out with every marked face obscured.
The photos and clips are read from ../shared/fixtures/real; without them these tests are skipped.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageOps

from fleetgate.deid import evaluate
from fleetgate.deid.detectors import IMAGE, VIDEO, build_detectors
from fleetgate.deid.obscure import ObscureSettings, obscure
from fleetgate.deid.verify import build_verifier
from fleetgate.deid.video import VideoSettings, anonymize_video

REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
BOXES = Path(__file__).parent / "fixtures" / "real_boxes"
CN = evaluate.load_marked(BOXES / "cn_plates.json")
STILLS = evaluate.load_marked(BOXES / "egoblur_stills.json")
CLIPS = evaluate.load_marked(BOXES / "clips.json")

pytestmark = pytest.mark.skipif(not (REAL / "cn_plates").is_dir(),
                                reason=f"the real photos and clips are not at {REAL} (../shared/fixtures/real)")


def load(name: str) -> np.ndarray:
    folder = REAL / "cn_plates" if name.startswith("cn_plate") else REAL
    with Image.open(folder / name) as opened:
        return np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))[:, :, ::-1].copy()


@cache
def image_detectors() -> list:
    return build_detectors(provider="cpu", profile=IMAGE)


@cache
def detections(name: str) -> tuple[tuple[str, tuple], ...]:
    """What `deid image` finds in one photo (computed once per test session)."""
    frame = load(name)
    return tuple((d.label, d.box) for det in image_detectors() for d in det.detect(frame))


def counted(image: evaluate.MarkedImage) -> list[evaluate.Marked]:
    return [m for m in image.boxes if m.counted and (m.label == "plate" or m.height >= 24)]


@pytest.mark.parametrize("image", CN + STILLS, ids=lambda i: i.name)
def test_every_legible_plate_and_face_is_found(image: evaluate.MarkedImage) -> None:
    found = detections(image.name)
    missed = [(m.label, m.box) for m in counted(image) if not evaluate.found(m, found)]
    assert not missed, f"{image.name}: missed {missed}"


def test_recall_targets_over_the_hand_marked_set() -> None:
    tally = evaluate.Tally()
    for image in CN + STILLS:
        tally.add(image, detections(image.name))
    plates, faces = tally.recall("plate", 16), tally.recall("face", 24)
    assert plates[1] >= 20 and plates[0] / plates[1] >= 0.98, plates
    assert faces[1] >= 2 and faces[0] / faces[1] >= 0.98, faces
    small = tally.recall("plate", 12, 16)
    # the only 12-16 px plate in the set cannot be read (marked legible: false), so it is not counted
    assert small == (0, 0), small


def test_the_video_profile_finds_every_legible_plate_and_face_of_the_photos_too() -> None:
    """What `deid video` runs (the int8 copies of the models, plates on the whole frame, no tiles)
    on the real photos: every legible Chinese plate and every face of 24 px or more, as the float models at the
    stills' settings do. Guards video's int8 copies against the real set."""
    detectors = build_detectors(provider="cpu", profile=VIDEO)
    assert VIDEO.precision == "int8" and all(d.model_id.endswith("+int8") or "+int8+" in d.model_id
                                            for d in detectors)
    missed = []
    for image in CN + STILLS:
        frame = load(image.name)
        found = [(d.label, d.box) for det in detectors for d in det.detect(frame)]
        missed += [(image.name, m.label, m.box) for m in counted(image) if not evaluate.found(m, found)]
    # the one exception: a 24 px face in cn_plate_17's 2976x3968 photo is 9 px at video's 1440 px long side,
    # below what CenterFace sees at any precision (stills run tiles for that: the test above)
    assert missed == [("cn_plate_17.jpg", "face", (190.0, 1229.0, 209.0, 1253.0))], missed


@pytest.mark.parametrize("image", CN + STILLS, ids=lambda i: i.name)
def test_found_boxes_are_illegible_and_the_rest_is_left(image: evaluate.MarkedImage) -> None:
    before = load(image.name)
    found = detections(image.name)
    after = obscure(before.copy(), found, ObscureSettings())
    for mark in image.boxes:
        if mark.label != "painted" and evaluate.found(mark, found):
            ok, detail, change = evaluate.obscured_enough(before, after, mark.box, 3 if mark.label == "plate" else 1)
            assert ok, f"{image.name} {mark.label} {mark.box}: detail {detail:.0%}, change {change:.0f}"
    assert evaluate.changed_outside(before, after, [box for _, box in found]) <= 0.05


@pytest.fixture(scope="module")
def image_verifier():
    return build_verifier(IMAGE, provider="cpu")


@pytest.mark.parametrize("name", ["cn_plate_03.jpg", "cn_plate_12.jpg", "cn_plate_16.jpg"])
def test_the_verifier_catches_what_was_left_and_passes_what_was_obscured(name: str, image_verifier) -> None:
    image = next(i for i in CN if i.name == name)
    frame = load(name)
    left = image_verifier.check(frame)  # nothing obscured: every legible plate must come back as a residual
    legible = [m for m in image.boxes if m.counted and m.label == "plate"]
    caught = [m for m in legible if any(f.reason == "plate-legible" and evaluate.iou(m.box, f.box) >= 0.3
                                        for f in left)]
    assert caught == legible, f"{name}: the verifier did not read {[m.box for m in legible if m not in caught]}"
    found = detections(name)
    assert image_verifier.check(obscure(frame.copy(), found, ObscureSettings()), found) == []


def clip_frames(name: str, limit: int | None = None) -> list[np.ndarray]:
    with av.open(str(REAL / name)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if limit and len(frames) >= limit:
                break
    return frames


@pytest.mark.parametrize("clip", ["face_indoor_fisheye.mp4", "person_portrait.mp4"])
def test_real_clips_come_out_with_every_marked_face_obscured(clip: str, tmp_path: Path) -> None:
    marked = {int(i.name.split("#")[1]): i for i in CLIPS if i.name.startswith(clip)}
    count = max(marked) + 1
    src = REAL / clip if clip.startswith("face") else evaluate.first_frames(REAL / clip, tmp_path / "in.mp4", count)
    report = anonymize_video(src, tmp_path / "out.mp4", build_detectors(provider="cpu", profile=VIDEO),
                             VideoSettings(), verifier=build_verifier(VIDEO, provider="cpu"))
    assert report.anonymized, report.residuals
    before, after = clip_frames(str(src) if src.is_absolute() else clip, count), clip_frames(
        str(tmp_path / "out.mp4"), count)
    for index, image in marked.items():
        for mark in image.boxes:
            ok, detail, change = evaluate.obscured_enough(before[index], after[index], mark.box)
            assert ok, f"{clip} frame {index}: face {mark.box} detail {detail:.0%}, change {change:.0f}"


def test_the_demo_shows_a_real_photo_before_and_after() -> None:
    from fleetgate.deid.showcase import real_photo_before_after

    shown = real_photo_before_after(REAL)
    assert shown is not None and shown.png.startswith(b"\x89PNG") and "verified" in shown.caption


@pytest.mark.xfail(strict=True, reason="the parking clip's plates are US plates: the Chinese plate detectors find none "
                                       "of them and the verifier's plate-text check does not read them (docs/deid.md)")
def test_the_parking_clip_plates_are_obscured_or_the_clip_is_not_passed(tmp_path: Path) -> None:
    """Every legible plate marked on the parking clip is obscured in the output, or the verifier says the clip
    still holds one (a plate that survives is a leak, whatever its country)."""
    clip = "plates_parking_fisheye.mp4"
    marked = {int(i.name.split("#")[1]): i for i in CLIPS if i.name.startswith(clip)}
    assert len(marked) == 24 and all(m.foreign for i in marked.values() for m in i.boxes)
    report = anonymize_video(REAL / clip, tmp_path / "out.mp4", build_detectors(provider="cpu", profile=VIDEO),
                             VideoSettings(), verifier=build_verifier(VIDEO, provider="cpu"))
    before, after = clip_frames(clip), clip_frames(str(tmp_path / "out.mp4"))
    left = [(index, mark.box) for index, image in marked.items() for mark in image.boxes
            if mark.legible and not evaluate.obscured_enough(before[index], after[index], mark.box, 3)[0]]
    assert not left or not report.anonymized, f"readable plates left in a clip reported anonymized: {left[:3]}"
