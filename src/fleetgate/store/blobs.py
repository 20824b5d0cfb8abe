"""Content-addressed blob stores: a local folder by default, any fsspec filesystem (S3) when configured.

A blob's key is the sha256 of its bytes, so a blob is written once and never overwritten: a second
put of the same bytes is a no-op. Writes are atomic: bytes go to a temporary name, are flushed to
disk, then linked to their final name, so a reader never sees half a blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import pyarrow as pa
from urllib.parse import urlparse

from fleetgate.errors import StoreError

CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class PutResult:
    """What a put stored: the digest, the size, and whether the bytes were new to the store."""

    sha256: str
    size: int
    created: bool


def blob_key(sha256: str, namespace: str = "blobs") -> str:
    """Relative key of a blob: two levels of fan-out keep directories small."""
    return f"{namespace}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class BlobStore(ABC):
    """A content-addressed, write-once store of byte blobs."""

    url: str

    @abstractmethod
    def put_file(self, path: Path, namespace: str = "blobs") -> PutResult:
        """Store the bytes of a local file under their sha256."""

    @abstractmethod
    def put_stream(self, stream: BinaryIO, namespace: str = "blobs") -> PutResult:
        """Store the bytes read from `stream` under their sha256."""

    @abstractmethod
    def exists(self, sha256: str, namespace: str = "blobs") -> bool:
        """True when the blob is present."""

    @abstractmethod
    def open(self, sha256: str, namespace: str = "blobs") -> BinaryIO:
        """Open a blob for reading."""

    def put_bytes(self, data: bytes, namespace: str = "blobs") -> PutResult:
        """Store an in-memory byte string."""
        import io

        return self.put_stream(io.BytesIO(data), namespace)

    def read_bytes(self, sha256: str, namespace: str = "blobs") -> bytes:
        """Read a whole blob into memory."""
        with self.open(sha256, namespace) as fh:
            return fh.read()

    def read_table(self, sha256: str, columns: list[str] | None = None) -> pa.Table:
        """Read a Parquet blob (the columns named, or all) into an Arrow table."""
        import io

        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(self.read_bytes(sha256)), columns=columns)

    def verify(self, sha256: str, namespace: str = "blobs") -> bool:
        """Re-hash a stored blob and compare it with its key."""
        digest = hashlib.sha256()
        with self.open(sha256, namespace) as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest() == sha256


def _hash_and_write(reader: BinaryIO, writer: BinaryIO) -> tuple[str, int]:
    """Copy reader to writer while hashing, with hashing on a second thread.

    hashlib releases the GIL on large buffers, so hashing chunk N overlaps writing chunk N on two
    cores; the write of a chunk and its hash both finish before the buffer is reused.
    """
    digest = hashlib.sha256()
    todo: Queue[memoryview | None] = Queue(maxsize=4)
    done: Queue[None] = Queue()

    def hasher() -> None:
        while (view := todo.get()) is not None:
            digest.update(view)
            done.put(None)

    worker = threading.Thread(target=hasher, daemon=True)
    worker.start()
    buffers = [bytearray(CHUNK), bytearray(CHUNK), bytearray(CHUNK)]
    in_flight = 0
    size = 0
    index = 0
    try:
        while True:
            buf = buffers[index % len(buffers)]
            if in_flight == len(buffers) - 1:
                done.get()
                in_flight -= 1
            n = reader.readinto(buf)  # type: ignore[attr-defined]
            if not n:
                break
            view = memoryview(buf)[:n]
            todo.put(view)
            in_flight += 1
            writer.write(view)
            size += n
            index += 1
    finally:
        todo.put(None)
        worker.join()
    return digest.hexdigest(), size


class LocalBlobStore(BlobStore):
    """Blobs in a local folder, fan-out by digest prefix."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = self.root.as_uri() if self.root.is_absolute() else str(self.root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str, namespace: str = "blobs") -> Path:
        """Local path of a blob (for tools that need a file, such as video decoders)."""
        return self.root / blob_key(sha256, namespace)

    def put_file(self, path: Path, namespace: str = "blobs") -> PutResult:
        with open(path, "rb", buffering=0) as reader:
            return self.put_stream(reader, namespace)

    def put_stream(self, stream: BinaryIO, namespace: str = "blobs") -> PutResult:
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp", prefix="put-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb", buffering=0) as writer:
                sha, size = _hash_and_write(stream, writer)
                os.fsync(writer.fileno())
            final = self.path_of(sha, namespace)
            if final.exists():
                return PutResult(sha, size, created=False)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                # link() fails if the name exists: two writers racing can never overwrite a blob.
                os.link(tmp, final)
            except FileExistsError:
                return PutResult(sha, size, created=False)
            fsync_dir(final.parent)
            return PutResult(sha, size, created=True)
        except OSError as exc:
            raise StoreError(f"blob store {self.root}: cannot store blob: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def exists(self, sha256: str, namespace: str = "blobs") -> bool:
        return self.path_of(sha256, namespace).is_file()

    def open(self, sha256: str, namespace: str = "blobs") -> BinaryIO:
        try:
            return open(self.path_of(sha256, namespace), "rb")
        except FileNotFoundError as exc:
            raise StoreError(f"blob store {self.root}: blob {sha256} is missing") from exc


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a new or renamed name) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """`path` holds `data` or what it held before, never a part: a temporary file of this process,
    fsync, rename, fsync of the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def error_code(exc: BaseException) -> str | None:
    """The S3 error code (`PreconditionFailed`, `NoSuchKey`, ...) behind an exception fsspec translated, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
        seen = seen.__cause__ or seen.__context__
    return None


def precondition_failed(exc: BaseException) -> bool:
    """Whether an object store refused a conditional write because the key exists (HTTP 412)."""
    if error_code(exc) in ("PreconditionFailed", "412"):
        return True
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, FileExistsError) or "pre-condition" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_MEMORY_CREATE_LOCK = threading.Lock()


class FsspecBlobStore(BlobStore):
    """Blobs on any fsspec filesystem: s3:// (S3, SeaweedFS, MinIO, OSS), gs://, memory:// for tests.

    Object stores have no rename; a PUT is atomic per object, so the blob is hashed into a local
    spool file first and uploaded under its final key with a conditional write (If-None-Match: *):
    of two writers racing, one creates the object and the other learns it exists, so a blob is
    never overwritten. S3 credentials and endpoint come from the standard AWS variables
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 for a store that is not AWS).
    """

    def __init__(self, url: str, **storage_options: object) -> None:
        try:
            import fsspec

            self.url = url.rstrip("/")
            self.fs, self.base = fsspec.core.url_to_fs(self.url, **storage_options)
            # fsspec's memory filesystem checks, then creates (the file appears when it is closed), so two
            # threads could both create one blob; it lives in this process only (one store for every
            # memory:// URL), where one lock makes the create exclusive. Object stores' conditional writes
            # already are.
            protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
            self._create_lock = _MEMORY_CREATE_LOCK if "memory" in protocols else contextlib.nullcontext()
        except ImportError as exc:
            raise StoreError(f"blob store {url}: {exc}; install fleetgate[s3] for s3:// URLs") from exc

    def _key(self, sha256: str, namespace: str) -> str:
        return f"{self.base}/{blob_key(sha256, namespace)}"

    def put_file(self, path: Path, namespace: str = "blobs") -> PutResult:
        with open(path, "rb", buffering=0) as reader:
            return self.put_stream(reader, namespace)

    def put_stream(self, stream: BinaryIO, namespace: str = "blobs") -> PutResult:
        with tempfile.NamedTemporaryFile(prefix="fleetgate-spool-") as spool:
            sha, size = _hash_and_write(stream, spool)
            spool.flush()
            key = self._key(sha, namespace)
            with self._create_lock:
                try:
                    if self.fs.exists(key):
                        return PutResult(sha, size, created=False)
                    self.fs.put_file(spool.name, key, mode="create")
                except Exception as exc:  # fsspec backends raise their own error types
                    if precondition_failed(exc):
                        return PutResult(sha, size, created=False)  # another writer stored the same bytes first
                    raise StoreError(f"blob store {self.url}: cannot store blob {sha}: {_one_line(exc)}") from exc
            return PutResult(sha, size, created=True)

    def exists(self, sha256: str, namespace: str = "blobs") -> bool:
        try:
            return bool(self.fs.exists(self._key(sha256, namespace)))
        except Exception as exc:
            raise StoreError(f"blob store {self.url}: {_one_line(exc)}") from exc

    def open(self, sha256: str, namespace: str = "blobs") -> BinaryIO:
        try:
            return self.fs.open(self._key(sha256, namespace), "rb")
        except FileNotFoundError as exc:
            raise StoreError(f"blob store {self.url}: blob {sha256} is missing") from exc
        except Exception as exc:
            raise StoreError(f"blob store {self.url}: cannot read blob {sha256}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def open_blob_store(url: str, base_dir: Path | None = None, s3_endpoint_url: str | None = None) -> BlobStore:
    """Open a blob store from a URL: a path or file:// URL is local, anything else goes to fsspec
    (an s3:// URL at `s3_endpoint_url` when given, else where the AWS variables say)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else url)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return LocalBlobStore(path)
    return FsspecBlobStore(url, **s3_options(url, s3_endpoint_url))


def s3_options(url: str, endpoint_url: str | None) -> dict[str, object]:
    """fsspec options for `url`: the S3 endpoint, for s3:// URLs only."""
    return {"endpoint_url": endpoint_url} if endpoint_url and urlparse(url).scheme in ("s3", "s3a") else {}

