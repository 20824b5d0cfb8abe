"""Carry boxes across frames so that a one-frame miss, or a frame between detections, never leaks.

Detections arrive on key frames (every `stride` frames). Each is linked to a track of the same
label by overlap or by centre distance (fast objects move further than they overlap). A frame then
gets, for every track:
- *detected*: the track's own box on that frame;
- *interpolated*: linear between the track's observations before and after it;
- *held*: the last box, for up to `hold` frames after the track was last seen;
- *backfilled*: the first box, for up to `hold` frames (at least back to the key frame before) before a
  track was first seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetgate.deid.detectors import Detection

Box = tuple[float, float, float, float]


@dataclass
class Track:
    track_id: int
    label: str
    observations: list[tuple[int, Detection]] = field(default_factory=list)
    best: float = 0.0  # the highest score it was seen at, kept when old observations are dropped

    def seen(self, frame: int, detection: Detection) -> None:
        self.observations.append((frame, detection))
        self.best = max(self.best, detection.score)

    @property
    def last(self) -> tuple[int, Detection]:
        return self.observations[-1]


def iou(a: Box, b: Box) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _affinity(a: Box, b: Box) -> float:
    overlap = iou(a, b)
    if overlap > 0:
        return 1.0 + overlap
    # no overlap: near centres of similar size still belong together
    ca, cb = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2), ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1.0)
    distance = ((ca[0] - cb[0]) ** 2 + (ca[1] - cb[1]) ** 2) ** 0.5 / size
    return 1.0 - distance if distance < 1.0 else 0.0


@dataclass(frozen=True)
class FrameBox:
    label: str
    box: Box
    score: float
    source: str  # detected | interpolated | held | backfilled
    track_id: int
    model: str


class Tracker:
    def __init__(self, hold: int, stride: int) -> None:
        self.hold = hold
        self.stride = stride
        self.tracks: list[Track] = []
        self._next_id = 0
        self._keys: list[int] = []  # the key frames observed, last two kept

    def observe(self, frame: int, detections: list[Detection]) -> None:
        """Link a key frame's detections to tracks (greedy, best affinity first)."""
        self._keys = [*self._keys[-1:], frame]
        horizon = frame - self.hold - 2 * self.stride
        live = [t for t in self.tracks if t.last[0] >= horizon and t.last[0] < frame]
        pairs = sorted(((_affinity(t.last[1].box, d.box), ti, di) for ti, t in enumerate(live)
                        for di, d in enumerate(detections) if t.label == d.label), reverse=True)
        used_tracks, used_dets = set(), set()
        for score, ti, di in pairs:
            if score <= 0 or ti in used_tracks or di in used_dets:
                continue
            used_tracks.add(ti)
            used_dets.add(di)
            live[ti].seen(frame, detections[di])
        for di, det in enumerate(detections):
            if di not in used_dets:
                track = Track(self._next_id, det.label)
                track.seen(frame, det)
                self.tracks.append(track)
                self._next_id += 1

    def steady(self, frame: int, motion: float = 0.5, confident: float = 0.5) -> bool:
        """Whether key frame `frame` saw what the key frame before it saw: no track begun, none lost, and none
        moved by more than `motion` of its size in between (an empty scene twice running is steady too).

        A track never seen at `confident` or more (a detection at the edge of the threshold, which comes
        and goes from one key frame to the next) neither begins nor loses anything: it is obscured like the
        rest, but alone it kept a head-worn camera's scene from ever counting as steady. Its motion counts."""
        before = self._keys[-2] if len(self._keys) >= 2 and self._keys[-1] == frame else None
        if before is None:
            return False
        for track in self.tracks:
            seen = [f for f, _ in track.observations]
            lost = seen[-1] == before
            begun = seen[-1] == frame and (len(seen) < 2 or seen[-2] != before)  # or found again after a gap
            if lost or begun:
                if track.best >= confident:
                    return False
                continue
            if seen[-1] != frame:
                continue
            a, b = track.observations[-2][1].box, track.observations[-1][1].box
            size = max(a[2] - a[0], a[3] - a[1], 1.0)
            shift = max(abs((a[0] + a[2]) - (b[0] + b[2])), abs((a[1] + a[3]) - (b[1] + b[3]))) / 2
            if shift > motion * size:
                return False
        return True

    def boxes_at(self, frame: int) -> list[FrameBox]:
        """Every track's box on `frame`, using observations up to the last key frame seen."""
        out = []
        for track in self.tracks:
            before = after = None
            for seen, det in track.observations:
                if seen <= frame:
                    before = (seen, det)
                elif after is None:
                    after = (seen, det)
                    break
            if before and before[0] == frame:
                d = before[1]
                out.append(FrameBox(d.label, d.box, d.score, "detected", track.track_id, d.model))
            elif before and after and after[0] - before[0] <= self.hold + self.stride:
                w = (frame - before[0]) / (after[0] - before[0])
                box = tuple(b + (a - b) * w for b, a in zip(before[1].box, after[1].box, strict=True))
                out.append(FrameBox(track.label, box, min(before[1].score, after[1].score), "interpolated",
                                    track.track_id, before[1].model))
            elif before and frame - before[0] <= self.hold:
                d = before[1]
                out.append(FrameBox(d.label, d.box, d.score, "held", track.track_id, d.model))
            elif after and not before and after[0] - frame <= max(self.hold, self.stride):
                d = after[1]
                out.append(FrameBox(d.label, d.box, d.score, "backfilled", track.track_id, d.model))
        return out

    def forget_before(self, frame: int) -> None:
        """Drop tracks that can no longer give a box at or after `frame` (bounded memory)."""
        keep_from = frame - self.hold - 2 * self.stride
        self.tracks = [t for t in self.tracks if t.last[0] >= keep_from]
        for track in self.tracks:
            while len(track.observations) > 2 and track.observations[1][0] < keep_from:
                track.observations.pop(0)
