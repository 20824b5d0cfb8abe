"""Content decides the kind: do a blob's bytes hold what its catalogued kind promises?

A catalog row can be relabelled; the bytes cannot pretend. The quick check reads the first and
last bytes (container magic: MP4 `ftyp`, RIFF/WAVE, PNG, JPEG, Parquet `PAR1` at both ends, ZIP,
JSON); the deep check opens the container (a video or audio stream for media, the kind's required
columns for a table, a decodable image). `audit verify` runs the quick check on every asset, the
export gate the deep one on everything it plans or copies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from fleetgate.formats.drop_layout import TABLE_KINDS_BY_NAME, TABLE_SCHEMAS

# The container each kind's bytes must be in.
KIND_CONTAINERS: dict[str, tuple[str, ...]] = {
    "exterior_video": ("mp4",), "cabin_video": ("mp4",), "cabin_audio": ("wav",),
    "exterior_image": ("png", "jpeg"), "model_checkpoint": ("zip",),
    "clip_manifest": ("json",), "drop_manifest": ("json",), "annotation": ("json",),
}
KIND_TABLES: dict[str, str] = {kind: name for name, kind in TABLE_KINDS_BY_NAME.items()} | {
    "can_telemetry": "can", "gnss_trajectory": "gnss"}
HEAD = 64
TAIL = 8


def sniff(head: bytes, tail: bytes) -> str:
    """The container the first and last bytes say a blob is in ('unknown' when none matches)."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] == b"PAR1" and tail[-4:] == b"PAR1":
        return "parquet"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "unknown"


def expected_containers(kind: str) -> tuple[str, ...] | None:
    """The containers a kind may be in; None for kinds fleetgate does not know (they stay local anyway)."""
    if kind in KIND_TABLES:
        return ("parquet",)
    return KIND_CONTAINERS.get(kind)


def quick_problem(kind: str, head: bytes, tail: bytes) -> str | None:
    """Why the bytes cannot be this kind by their container, or None."""
    expected = expected_containers(kind)
    found = sniff(head, tail)
    if expected is not None and found not in expected:
        return f"the bytes are {found}, not the {' or '.join(expected)} a {kind} asset holds"
    return None


def read_ends(fh: BinaryIO) -> tuple[bytes, bytes]:
    head = fh.read(HEAD)
    try:
        fh.seek(-TAIL, 2)
        tail = fh.read(TAIL)
    except OSError:  # shorter than TAIL bytes
        tail = head[-TAIL:]
    return head, tail


def content_problem(kind: str, open_blob: Callable[[], BinaryIO], deep: bool = True) -> str | None:
    """Why a blob's bytes are not what its kind promises, or None. `open_blob` opens it (seekable);
    it is opened once, for the quick check and the deep one."""
    with open_blob() as fh:
        head, tail = read_ends(fh)
        problem = quick_problem(kind, head, tail)
        if problem or not deep:
            return problem
        fh.seek(0)
        if kind in KIND_TABLES:
            return _table_problem(KIND_TABLES[kind], fh)
        container = sniff(head, tail)
        if container in ("mp4", "wav"):
            return _media_problem(kind, "audio" if container == "wav" else "video", fh)
        if container in ("png", "jpeg"):
            return _image_problem(fh)
        return None


def _table_problem(table: str, fh: BinaryIO) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = set(pq.ParquetFile(fh).schema_arrow.names)
    except (pa.ArrowException, OSError) as exc:
        return f"not a readable Parquet file ({type(exc).__name__})"
    missing = sorted(set(TABLE_SCHEMAS[table]) - names)
    if missing:
        return f"the table lacks the columns of a {table} table ({', '.join(missing)})"
    return None


def _media_problem(kind: str, stream: str, fh: BinaryIO) -> str | None:
    import av

    try:
        with av.open(fh) as container:
            streams = container.streams.video if stream == "video" else container.streams.audio
            if not streams:
                return f"the container has no {stream} stream, as a {kind} asset must"
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        return f"the media does not open ({type(exc).__name__})"
    return None


def _image_problem(fh: BinaryIO) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(fh) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        return f"the image does not decode ({type(exc).__name__})"
    return None
