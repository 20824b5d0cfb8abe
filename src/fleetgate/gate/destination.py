"""Where packages are published: a local folder (published by one rename) or an S3-compatible bucket
(published by a conditional put of the PUBLISHED marker).

Both stage the data first (`put_data`, hashing what was written), then write the package's metadata
and last the marker. A reader takes a package only once its marker is there, so a crash leaves
nothing that looks published, and a rerun finishes the same package exactly once.

Local copies go through `copy_file_range` (the kernel copies; reflinks where the filesystem can),
while a second thread hashes the bytes just written, chunk by chunk: what is checked is what the
package holds. Bucket uploads hash the stream they send and the store checks each request's
checksum. A workspace may require object lock on a destination bucket (`object_lock = true`): an
export to a bucket without it is refused before anything is written.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import hashlib
import mmap
import os
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Queue
from typing import BinaryIO

from fleetgate.errors import FleetgateError, StoreError, UsageError
from fleetgate.store.blobs import error_code, fsync_dir, precondition_failed, s3_options

PUBLISHED = "PUBLISHED"
CHUNK = 32 << 20
WRITEBACK = 16 << 20  # a copy asks the disk to start writing each time this much more is written


class ExportRefused(FleetgateError):
    """The gate refused to write something (a key, raw media, a hash mismatch, a changed destination)."""


class Destination(ABC):
    """A place packages are published to."""

    name: str
    url: str

    @abstractmethod
    def lock(self, package_id: str) -> contextmanager:
        """Exclusive, across processes, for one package; released if the holder dies."""

    @abstractmethod
    def published(self, package_id: str) -> bool: ...

    @abstractmethod
    def start(self, package_id: str) -> None:
        """Begin staging, dropping what an attempt that never committed left."""

    @abstractmethod
    def staged(self, package_id: str, files: list[str]) -> bool:
        """Whether every data file of a committed package is staged."""

    @abstractmethod
    def put_data(self, package_id: str, name: str, source: Callable[[], BinaryIO], sha256: str) -> None:
        """Stage one data file from `source`; its bytes, as written, must hash to `sha256`."""

    @abstractmethod
    def publish(self, package_id: str, files: dict[str, bytes]) -> str:
        """Write the package's metadata files, then its PUBLISHED marker (files[PUBLISHED]); returns where it is."""

    @abstractmethod
    def location(self, package_id: str) -> str: ...


def _mismatch(name: str) -> ExportRefused:
    return ExportRefused(f"asset {name.split('__')[0]}: stored bytes do not match the catalog sha256; not exported")


# ---- a local folder ------------------------------------------------------------------------------------
def copy_verified(src: BinaryIO, target: Path) -> str:
    """Copy an open file to `target` and return the SHA-256 of the bytes written, fsynced.

    With a real file descriptor the kernel copies (copy_file_range) while this thread's helper hashes
    each chunk of the target just written (mmap, no copy into Python); otherwise read, hash and write."""
    chunks = getattr(src, "plaintext_chunks", None)  # a sealed blob: decrypted chunk by chunk
    try:
        fd = src.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    with open(target, "w+b") as out:  # read back too: the hash is of what was written
        if chunks is not None:
            digest = _hashed_copy(chunks(), out)
        elif fd is None:
            digest = hashlib.sha256()
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        else:
            digest = _kernel_copy(fd, out.fileno())
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _hashed_copy(chunks: Iterator[bytes], out: BinaryIO) -> hashlib._Hash:
    """Write each chunk while a second thread hashes it: the writes and the hashing (both outside
    the GIL) overlap, and the chunks are never copied into a buffer. Every WRITEBACK bytes the disk
    is asked to start writing what came before, so the fsync that follows waits for the last few
    chunks rather than for the whole file (the kernel would otherwise hold it all as dirty pages),
    and the range before that, on disk by then, leaves the page cache."""
    digest = hashlib.sha256()
    pending: Queue[bytes | None] = Queue(maxsize=8)
    hasher = threading.Thread(target=_hash_all, args=(pending, digest), daemon=True)
    hasher.start()
    written = started = previous = 0
    try:
        for chunk in chunks:
            pending.put(chunk)
            out.write(chunk)
            written += len(chunk)
            if written - started >= WRITEBACK:
                out.flush()
                start_writeback(out.fileno(), started, written - started)
                # the range before, written out by now: its pages are dropped, so the copy frees its
                # own page cache rather than make the kernel reclaim someone else's (CPU time, here)
                if started > previous:  # (a length of 0 would mean the whole file)
                    _drop_cached(out.fileno(), previous, started - previous)
                previous, started = started, written
    finally:
        pending.put(None)
        hasher.join()
    return digest


def _sync_file_range() -> Callable[[int, int, int], None]:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writing a range to disk, without waiting.
    Elsewhere (or where libc lacks it) a no-op: the fsync after the copy still makes it durable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    write = 2  # SYNC_FILE_RANGE_WRITE

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, write)  # a failure here is the fsync's to report

    return start


def _drop_cached(fd: int, offset: int, length: int) -> None:
    """Advice only: where the system lacks it or refuses it, the copy is the same, just slower."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass


start_writeback = _sync_file_range()


def _hash_all(pending: Queue[bytes | None], digest: hashlib._Hash) -> None:
    while (chunk := pending.get()) is not None:
        digest.update(chunk)


def _kernel_copy(src: int, dst: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    done: Queue[tuple[int, int] | None] = Queue(maxsize=4)
    failure: list[BaseException] = []

    def hasher() -> None:
        try:
            while (span := done.get()) is not None:
                offset, length = span
                with mmap.mmap(dst, length, prot=mmap.PROT_READ, offset=offset) as view:
                    digest.update(view)  # hashlib releases the GIL: this overlaps the next chunk's copy
        except BaseException as exc:  # noqa: BLE001 - reported by the copying thread
            failure.append(exc)
            while done.get() is not None:
                pass

    worker = threading.Thread(target=hasher, daemon=True)
    worker.start()
    offset = 0
    try:
        size = os.fstat(src).st_size
        while offset < size:
            copied = os.copy_file_range(src, dst, min(CHUNK, size - offset), offset, offset)
            if copied == 0:
                break
            done.put((offset, copied))
            start_writeback(dst, offset, copied)  # as in _hashed_copy: the fsync then waits for little
            offset += copied
    finally:
        done.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return digest


class FolderDestination(Destination):
    """<root>/<package>, staged in <root>/.staging/<package> and published by one rename."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root, self.url = name, Path(root), str(root)

    @contextmanager
    def lock(self, package_id: str) -> Iterator[None]:
        (self.root / ".staging").mkdir(parents=True, exist_ok=True)
        with open(self.root / ".staging" / f"{package_id}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _staging(self, package_id: str) -> Path:
        return self.root / ".staging" / package_id

    def published(self, package_id: str) -> bool:
        return (self.root / package_id / PUBLISHED).exists()

    def start(self, package_id: str) -> None:
        shutil.rmtree(self._staging(package_id), ignore_errors=True)
        (self._staging(package_id) / "data").mkdir(parents=True)

    def staged(self, package_id: str, files: list[str]) -> bool:
        data = self._staging(package_id) / "data"
        return data.is_dir() and all((data / f).is_file() for f in files)

    def put_data(self, package_id: str, name: str, source: Callable[[], BinaryIO], sha256: str) -> None:
        target = self._staging(package_id) / "data" / name
        with source() as src:
            written = copy_verified(src, target)
        if written != sha256:
            target.unlink(missing_ok=True)
            raise _mismatch(name)

    def publish(self, package_id: str, files: dict[str, bytes]) -> str:
        staging, final = self._staging(package_id), self.root / package_id
        fsync_dir(staging / "data")
        for name, data in sorted(files.items(), key=lambda kv: kv[0] == PUBLISHED):  # the marker last
            with open(staging / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        fsync_dir(staging)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)  # the publication: one atomic rename
        fsync_dir(final.parent)
        return str(final)

    def location(self, package_id: str) -> str:
        return str(self.root / package_id)


# ---- an S3-compatible bucket ---------------------------------------------------------------------------
class BucketDestination(Destination):
    """s3://bucket/prefix/<package>/…: data and metadata objects, then PUBLISHED with If-None-Match: *."""

    def __init__(self, name: str, url: str, lock_folder: Path, require_object_lock: bool,
                 s3_endpoint_url: str | None = None) -> None:
        try:
            import fsspec

            self.fs, self.base = fsspec.core.url_to_fs(url.rstrip("/"), **s3_options(url, s3_endpoint_url))
        except ImportError as exc:
            raise UsageError(f"destination '{name}': {url} needs s3fs: pip install 'fleetgate[s3]'") from exc
        self.name, self.url, self.lock_folder = name, url.rstrip("/"), Path(lock_folder)
        if require_object_lock:
            self._require_object_lock()

    def _require_object_lock(self) -> None:
        bucket = self.base.split("/", 1)[0]
        try:
            config = self.fs.call_s3("get_object_lock_configuration", Bucket=bucket)
            enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except Exception as exc:  # a bucket without a lock configuration answers with an error code
            if not (error_code(exc) or "").startswith("ObjectLockConfigurationNotFound"):
                raise StoreError(f"destination '{self.name}': cannot read bucket {bucket}'s object lock: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
            enabled = False
        if not enabled:
            raise ExportRefused(f"destination '{self.name}': bucket {bucket} has no object lock, and the workspace "
                                f"asks for it (destinations.{self.name}.object_lock); nothing was written")

    def _key(self, package_id: str, *parts: str) -> str:
        return "/".join([self.base, package_id, *parts])

    @contextmanager
    def lock(self, package_id: str) -> Iterator[None]:
        # one gate writes a package at a time; the lock lives with the workspace that runs the gate
        self.lock_folder.mkdir(parents=True, exist_ok=True)
        with open(self.lock_folder / f"{package_id}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _call(self, what: str, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except ExportRefused:
            raise
        except Exception as exc:
            raise StoreError(f"destination '{self.name}': {what}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc

    def published(self, package_id: str) -> bool:
        return bool(self._call("cannot list", lambda: self.fs.exists(self._key(package_id, PUBLISHED))))

    def start(self, package_id: str) -> None:
        return None  # objects are written whole or not at all; a rerun writes the same keys again

    def staged(self, package_id: str, files: list[str]) -> bool:
        return all(self._call("cannot list", lambda f=f: self.fs.exists(self._key(package_id, "data", f)))
                   for f in files)

    def put_data(self, package_id: str, name: str, source: Callable[[], BinaryIO], sha256: str) -> None:
        key = self._key(package_id, "data", name)

        def upload() -> str:
            digest = hashlib.sha256()
            with source() as src, self.fs.open(key, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            return digest.hexdigest()

        if self._call(f"cannot write {name}", upload) != sha256:
            self._call(f"cannot remove {name}", lambda: self.fs.rm_file(key))
            raise _mismatch(name)

    def publish(self, package_id: str, files: dict[str, bytes]) -> str:
        for name, data in sorted(files.items()):
            if name != PUBLISHED:
                key = self._key(package_id, name)
                self._call(f"cannot write {name}", lambda k=key, d=data: self.fs.pipe_file(k, d))
        try:
            self.fs.pipe_file(self._key(package_id, PUBLISHED), files[PUBLISHED], mode="create")
        except Exception as exc:
            if not precondition_failed(exc):  # 412: a concurrent run published it first, which is the same package
                raise StoreError(f"destination '{self.name}': cannot publish {package_id}: {exc}") from exc
        return self.location(package_id)

    def location(self, package_id: str) -> str:
        return f"{self.url}/{package_id}"
