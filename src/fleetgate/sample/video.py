"""Front-camera video: a road scene with real faces and rendered Chinese plates, and true boxes.

Faces are crops of public-domain photographs shipped by scikit-image (NASA's astronaut portrait
of Eileen Collins, and the CC0 "cameraman"). Plates are rendered in the GA 36 colours with a CJK
font from the system packages. Every drawn face and plate is written to labels.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from fleetgate.errors import UsageError

# (crop box in the source photo, face box inside that crop)
_FACE_SOURCES = {
    "astronaut": ((150, 10, 305, 200), (22, 52, 130, 180)),
    "camera": ((150, 60, 275, 205), (28, 32, 112, 140)),
}
_FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
]
PLATE_STYLES = {
    # background, text colour, size in mm (GA 36-2018)
    "blue": ((16, 72, 186), (255, 255, 255), (440, 140)),
    "yellow": ((250, 190, 0), (10, 10, 10), (440, 140)),
    "green": ((120, 205, 120), (10, 10, 10), (480, 140)),
}


@cache
def cjk_font_path() -> str:
    """Path of a CJK font: $FLEETGATE_CJK_FONT, a known system font, or fontconfig's answer."""
    env = os.environ.get("FLEETGATE_CJK_FONT")
    if env and Path(env).is_file():
        return env
    for candidate in _FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    try:
        import subprocess

        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            path = line.split(":")[0].strip()
            if path and Path(path).is_file():
                return path
    except (OSError, subprocess.SubprocessError):
        pass
    raise UsageError("no CJK font found for the sample's Chinese plates: run `make setup` "
                     "(installs fonts-wqy-zenhei) or set FLEETGATE_CJK_FONT=/path/to/font.ttc")


@cache
def face_sprites() -> list[tuple[Image.Image, tuple[int, int, int, int]]]:
    """Head crops of real faces, with the face box inside each crop."""
    from skimage import data

    out = []
    for name, (crop, face_box) in _FACE_SOURCES.items():
        pixels = getattr(data, name)()
        image = Image.fromarray(pixels).convert("RGB")
        out.append((image.crop(crop), face_box))
    return out


def render_plate(text: str, color: str, height_px: int = 140) -> Image.Image:
    """A plate image: coloured background, border, province character, then letters and digits."""
    background, ink, (w_mm, h_mm) = PLATE_STYLES[color]
    width = int(height_px * w_mm / h_mm)
    plate = Image.new("RGB", (width, height_px), background)
    draw = ImageDraw.Draw(plate)
    if color == "green":
        # new-energy plates fade from white at the top to green at the bottom
        top = np.array([235, 250, 235], float)
        bottom = np.array(background, float)
        for row in range(height_px):
            mix = row / max(height_px - 1, 1)
            draw.line([(0, row), (width, row)], fill=tuple(int(v) for v in top * (1 - mix) + bottom * mix))
    draw.rounded_rectangle([3, 3, width - 4, height_px - 4], radius=height_px // 10, outline=ink, width=3)
    chars = list(text[:2]) + ["·"] + list(text[2:])
    slot = (width - 0.12 * width) / len(chars)
    size = int(height_px * 0.62)
    base_font = ImageFont.truetype(cjk_font_path(), size)
    for i, ch in enumerate(chars):
        font = base_font
        box = draw.textbbox((0, 0), ch, font=font)
        if box[2] - box[0] > 0.92 * slot:  # a Han character is wider than a digit: shrink it to its slot
            font = ImageFont.truetype(cjk_font_path(), int(size * 0.92 * slot / (box[2] - box[0])))
            box = draw.textbbox((0, 0), ch, font=font)
        cx = 0.06 * width + slot * (i + 0.5)
        draw.text((cx - (box[2] - box[0]) / 2 - box[0], height_px * 0.5 - (box[3] - box[1]) / 2 - box[1]),
                  ch, font=font, fill=ink)
    return plate


@dataclass
class Actor:
    """Something in the scene that moves: a car (with a plate) or a pedestrian (with a face)."""

    sprite: Image.Image
    target_box: tuple[float, float, float, float]  # face or plate box inside the sprite, in pixels
    label: dict
    start: tuple[float, float, float]  # x centre, y bottom, height at frame 0
    end: tuple[float, float, float]


def car_sprite(rng: np.random.Generator, plate_img: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The rear of a car with its plate; returns the sprite and the plate box inside it."""
    w, h = 400, 300
    body = tuple(int(v) for v in rng.integers(30, 230, 3))
    car = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(car)
    d.rounded_rectangle([20, 20, w - 20, h - 10], radius=40, fill=body + (255,))
    d.rounded_rectangle([60, 30, w - 60, 120], radius=20, fill=(40, 50, 60, 255))
    d.rectangle([30, 140, 90, 170], fill=(200, 20, 20, 255))
    d.rectangle([w - 90, 140, w - 30, 170], fill=(200, 20, 20, 255))
    pw = 150
    ph = int(pw * plate_img.height / plate_img.width)
    px, py = (w - pw) // 2, 200
    car.paste(plate_img.resize((pw, ph), Image.LANCZOS), (px, py))
    return car, (px, py, px + pw, py + ph)


def pedestrian_sprite(rng: np.random.Generator) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A person: a real head crop over a clothed body; returns the sprite and the face box."""
    heads = face_sprites()
    head, face = heads[int(rng.integers(0, len(heads)))]
    if rng.random() < 0.5:
        head = head.transpose(Image.FLIP_LEFT_RIGHT)
        face = (head.width - face[2], face[1], head.width - face[0], face[3])
    head = ImageEnhance.Brightness(head).enhance(float(rng.uniform(0.8, 1.15)))
    hw, hh = head.size
    w, h = hw * 2, hh * 4
    person = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(person)
    coat = tuple(int(v) for v in rng.integers(20, 200, 3)) + (255,)
    d.rounded_rectangle([w * 0.15, hh * 0.9, w * 0.85, hh * 2.7], radius=30, fill=coat)
    d.rectangle([w * 0.25, hh * 2.6, w * 0.45, h - 1], fill=(40, 40, 60, 255))
    d.rectangle([w * 0.55, hh * 2.6, w * 0.75, h - 1], fill=(40, 40, 60, 255))
    ox = (w - hw) // 2
    person.paste(head, (ox, 0))
    return person, (face[0] + ox, face[1], face[2] + ox, face[3])


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    img = Image.new("RGB", (width, height))
    d = ImageDraw.Draw(img)
    horizon = int(height * 0.45)
    for row in range(horizon):
        shade = 170 + int(60 * row / horizon)
        d.line([(0, row), (width, row)], fill=(shade - 40, shade - 10, min(shade + 20, 255)))
    x = 0
    while x < width:
        bw = int(rng.integers(60, 180))
        bh = int(rng.integers(horizon // 4, horizon))
        tone = int(rng.integers(90, 190))
        d.rectangle([x, horizon - bh, x + bw, horizon], fill=(tone, tone - 5, tone - 15))
        for wy in range(horizon - bh + 10, horizon - 10, 22):
            for wx in range(x + 8, x + bw - 12, 20):
                d.rectangle([wx, wy, wx + 9, wy + 12], fill=(60, 80, 110))
        x += bw + int(rng.integers(0, 30))
    d.rectangle([0, horizon, width, height], fill=(85, 95, 90))
    d.polygon([(width * 0.42, horizon), (width * 0.58, horizon), (width * 1.1, height), (-width * 0.1, height)],
              fill=(70, 70, 74))
    return np.asarray(img).copy()


def _draw_lanes(frame: np.ndarray, travelled_m: float) -> None:
    height, width = frame.shape[:2]
    horizon = int(height * 0.45)
    for row in range(horizon + 2, height, 2):
        depth = (row - horizon) / (height - horizon)  # 0 at the horizon, 1 at the bottom
        distance = 2.0 / max(depth, 1e-3)  # metres ahead, pinhole-like
        if (distance + travelled_m) % 9.0 < 4.5:
            half = max(int(4 * depth), 1)
            cx = width // 2
            frame[row : row + 2, cx - half : cx + half] = (235, 235, 235)


def render_clip(rng: np.random.Generator, width: int, height: int, fps: float, frames: int,
                speeds: np.ndarray, plates: list[tuple[str, str]],
                n_people: int) -> tuple[list[np.ndarray], list[dict]]:
    """Render frames and per-frame labels: moving cars with plates and pedestrians with faces."""
    background = _background(width, height, rng)
    horizon = height * 0.45
    actors: list[Actor] = []
    for text, color in plates:
        sprite, box = car_sprite(rng, render_plate(text, color))
        lane = float(rng.choice([-0.22, 0.0, 0.22]))
        h0, h1 = float(rng.uniform(0.08, 0.3)) * height, float(rng.uniform(0.15, 0.5)) * height
        start = (width * (0.5 + lane * h0 / height * 3), horizon + h0 * 0.6, h0)
        end = (width * (0.5 + lane * h1 / height * 3), horizon + h1 * 0.6, h1)
        actors.append(Actor(sprite, box, {"type": "plate", "text": text, "color": color}, start, end))
    for _ in range(n_people):
        sprite, box = pedestrian_sprite(rng)
        side = float(rng.choice([0.12, 0.88]))
        h0 = float(rng.uniform(0.18, 0.5)) * height
        x0 = width * (side + float(rng.uniform(-0.06, 0.06)))
        drift = float(rng.uniform(-0.08, 0.08)) * width
        y0 = float(rng.uniform(0.8, 1.0)) * height
        actors.append(Actor(sprite, box, {"type": "face"}, (x0, y0, h0), (x0 + drift, y0, h0 * 1.15)))
    actors.sort(key=lambda a: a.start[2])  # far ones first so near ones cover them
    out_frames, labels = [], []
    travelled = 0.0
    for index in range(frames):
        alpha = index / max(frames - 1, 1)
        frame = background.copy()
        travelled += float(speeds[min(index, len(speeds) - 1)]) / fps
        _draw_lanes(frame, travelled)
        canvas = Image.fromarray(frame)
        owner = np.full((height, width), -1, np.int16)  # which actor a pixel shows, for occlusion
        placed = []
        for k, actor in enumerate(actors):
            cx, bottom, h = (s + (e - s) * alpha for s, e in zip(actor.start, actor.end, strict=True))
            scale = h / actor.sprite.height
            w = max(int(actor.sprite.width * scale), 2)
            hh = max(int(h), 2)
            left, top = int(cx - w / 2), int(bottom - hh)
            sprite = actor.sprite.resize((w, hh), Image.BILINEAR)
            canvas.paste(sprite, (left, top), actor.sprite.resize((w, hh)))
            opaque = np.asarray(actor.sprite.resize((w, hh)))[:, :, 3] > 0
            sx0, sy0 = max(left, 0), max(top, 0)
            sx1, sy1 = min(left + w, width), min(top + hh, height)
            if sx1 > sx0 and sy1 > sy0:
                region = owner[sy0:sy1, sx0:sx1]
                region[opaque[sy0 - top:sy1 - top, sx0 - left:sx1 - left]] = k
            x1, y1, x2, y2 = actor.target_box
            placed.append((k, actor, [left + x1 * scale, top + y1 * scale, left + x2 * scale, top + y2 * scale]))
        boxes = []
        for k, actor, box in placed:
            clipped = [max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height)]
            if clipped[2] - clipped[0] >= 2 and clipped[3] - clipped[1] >= 2:
                cells = owner[int(clipped[1]):int(np.ceil(clipped[3])), int(clipped[0]):int(np.ceil(clipped[2]))]
                # share of the box not hidden by a nearer car or person
                visible = float((cells == k).mean()) if cells.size else 0.0
                boxes.append({**actor.label, "box": [round(v, 1) for v in clipped], "visible": round(visible, 2)})
        out_frames.append(np.asarray(canvas))
        labels.append({"frame": index, "boxes": boxes})
    return out_frames, labels


def encode_h264(path: Path, frames: list[np.ndarray], fps: int, crf: int = 23) -> None:
    """Encode RGB frames as H.264 in MP4 with PyAV (yuv420p, faststart-free, constant rate)."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
