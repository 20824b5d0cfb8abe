"""Sealed blobs: envelope encryption over any blob store, so destroying a key destroys every copy.

`SealedBlobStore` wraps a region's blob store the way `residency.ResidentBlobStore` does: callers
still put and open blobs by the SHA-256 of their plaintext (what the catalog records, what `audit
verify`, the export gate's copy check and export manifests use), but the inner store only ever sees
ciphertext:

    stored bytes   MAGIC ‖ chunk 0 ‖ chunk 1 ‖ … ‖ data-key id    AES-256-GCM, 1 MiB per chunk
    chunk i        nonce = 0³ ‖ i (8 bytes) ‖ last (1 byte); MAGIC is the associated data
    inner key      SHA-256 of the ciphertext

One pass reads, hashes, seals and hands the ciphertext to the inner store; the keyring then records
the data key under a slot keyed by (namespace, plaintext digest, holder), which is how a second put
of the same bytes finds the first copy.

Each blob's data key is its own (the keyring, `store.keyring`), wrapped under the subject key of the
person whose data it is when the blob holds one person's data (code that stores a vehicle's files
says so with `sealed_for(vin)`), stored alone otherwise. One data key seals exactly one plaintext,
so the chunk nonces never repeat under a key, and the same bytes for the same holder give the same
ciphertext: deduplication still works, but the store's names are keyed digests of the content,
never its plain SHA-256, and the same file of two people is two blobs.

Blobs written before sealing (no data key in the keyring) are still read as they are.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetgate.errors import IntegrityError, StoreError
from fleetgate.store.blobs import BlobStore, FsspecBlobStore, PutResult, fsync_dir
from fleetgate.store.keyring import BlobKey, Keyring

MAGIC = b"FGSEAL1\n"
KID_LEN = 34  # "b_" + 32 hex
HEADER_LEN = len(MAGIC)
CHUNK = 1 << 20  # 1 MiB: AES-GCM per call costs tens of µs; a probe of a few bytes decrypts one chunk
TAG = 16
SEALED_CHUNK = CHUNK + TAG

class SealError(IntegrityError):
    """Sealed bytes that fail their authentication: the stored blob was altered, truncated or replaced."""


_holder_vin: ContextVar[str | None] = ContextVar("fleetgate_sealed_for", default=None)


@contextmanager
def sealed_for(vin: str | None) -> Iterator[None]:
    """Blobs put inside this block hold the data of the vehicle `vin` (its owner) and no one else's."""
    token = _holder_vin.set(vin or None)
    try:
        yield
    finally:
        _holder_vin.reset(token)


def _nonce(index: int, last: bool) -> bytes:
    return b"\x00\x00\x00" + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def _trailer(kid: str) -> bytes:
    data = kid.encode("ascii")
    if len(data) != KID_LEN:
        raise ValueError(kid)
    return data


class _Encrypting(io.RawIOBase):
    """Ciphertext of a plaintext stream, read the way the blob stores read (readinto), hashing the
    plaintext on the way; each byte is copied once, from the sealed chunk into the caller's buffer.
    The trailer names the data key (a random id, so a destroyed key's id never returns)."""

    def __init__(self, source: BinaryIO, data_key: bytes, trailer: bytes) -> None:
        self._source = source
        self._aead = AESGCM(data_key)
        self._trailer = trailer
        self._chunk = memoryview(MAGIC)
        self._index = 0
        self._next = source.read(CHUNK)
        self._plain = hashlib.sha256()
        # the plaintext is hashed on a thread of its own (hashlib releases the GIL), beside the sealing
        # and the inner store's hashing of the ciphertext: three passes over the bytes on two cores
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleetgate-seal-hash")
        self.size = 0
        self._state = "chunks"  # chunks -> trailer -> done

    def readable(self) -> bool:
        return True

    @property
    def sha256(self) -> str:
        self._hasher.shutdown(wait=True)  # every chunk hashed, in order (one worker)
        return self._plain.hexdigest()

    def close(self) -> None:
        self._hasher.shutdown(wait=True)
        super().close()

    def _fill(self) -> None:
        if self._state == "trailer":
            self._chunk = memoryview(self._trailer)
            self._state = "done"
            return
        current, self._next = self._next, self._source.read(CHUNK) if len(self._next) == CHUNK else b""
        last = not self._next
        self._hasher.submit(self._plain.update, current)
        self.size += len(current)
        self._chunk = memoryview(self._aead.encrypt(_nonce(self._index, last), current, MAGIC))
        self._index += 1
        if last:
            self._state = "trailer"

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view):
            if not self._chunk:
                if self._state == "done":
                    break
                self._fill()
            n = min(len(self._chunk), len(view) - written)
            view[written:written + n] = self._chunk[:n]
            self._chunk = self._chunk[n:]
            written += n
        return written


class _Decrypting(io.RawIOBase):
    """The plaintext of a sealed blob, seekable (video probes seek), each chunk checked as it is read."""

    def __init__(self, inner: BinaryIO, data_key: bytes, kid: str, name: str) -> None:
        self._inner = inner
        self._aead = AESGCM(data_key)
        self._name = name
        end = inner.seek(0, io.SEEK_END)
        inner.seek(max(0, end - KID_LEN))
        if end < HEADER_LEN + KID_LEN or inner.read(KID_LEN) != _trailer(kid):
            inner.close()
            raise SealError(f"sealed blob {name}: its trailer does not name its data key; the blob was replaced")
        inner.seek(0)
        if inner.read(HEADER_LEN) != MAGIC:
            inner.close()
            raise SealError(f"sealed blob {name}: not sealed bytes; the blob was replaced")
        total = end - HEADER_LEN - KID_LEN
        self._total = total
        self._chunks = max(1, -(-total // SEALED_CHUNK))
        self.size = total - TAG * self._chunks
        if self.size < 0:
            inner.close()
            raise SealError(f"sealed blob {name}: truncated")
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _chunk(self, index: int) -> bytes:
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        plain = self._read_chunk(index)
        self._cached = (index, plain)
        return plain

    def _read_chunk(self, index: int) -> bytes:
        """Chunk `index` read from the stored bytes, decrypted and checked."""
        self._inner.seek(HEADER_LEN + index * SEALED_CHUNK)
        sealed = self._inner.read(min(SEALED_CHUNK, self._total - index * SEALED_CHUNK))
        try:
            return self._aead.decrypt(_nonce(index, index == self._chunks - 1), sealed, MAGIC)
        except InvalidTag:
            raise SealError(f"sealed blob {self._name}: chunk {index} fails its authentication tag "
                            "(altered or truncated)") from None

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._pos < self.size:
            index, offset = divmod(self._pos, CHUNK)
            plain = memoryview(self._chunk(index))  # slices of a view copy nothing until the one below
            n = min(len(plain) - offset, len(view) - written)
            view[written:written + n] = plain[offset:offset + n]
            written += n
            self._pos += n
        return written

    def chunks(self) -> Iterator[bytes]:
        """Every chunk's plaintext in order, each checked, from the start (for copies of the whole blob:
        no buffer between the cipher and the writer)."""
        for index in range(self._chunks):
            yield self._read_chunk(index)
        self._pos = self.size

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class SealedReader(io.BufferedReader):
    """A sealed blob opened for reading: a buffered, seekable file of its plaintext."""

    def __init__(self, raw: _Decrypting, buffer_size: int) -> None:
        super().__init__(raw, buffer_size)
        self._decrypting = raw

    def plaintext_chunks(self) -> Iterator[bytes]:
        """The whole plaintext as its checked chunks, for a copy (which then needs no buffer)."""
        if self.tell() != 0:
            raise ValueError("plaintext_chunks reads the whole blob: open it afresh")
        return self._decrypting.chunks()


@dataclass(frozen=True)
class StoredCopy:
    """Where one sealed copy of a plaintext lives: its data key and the inner store's key."""

    kid: str
    holder: str | None
    stored_as: str | None


class SealedBlobStore(BlobStore):
    """A blob store whose bytes are sealed under per-blob data keys held in the region's keyring."""

    def __init__(self, inner: BlobStore, keyring: Keyring) -> None:
        self.inner = inner
        self.keyring = keyring
        self.url = inner.url

    # -- writing ---------------------------------------------------------------------------------------
    def _holder(self) -> str | None:
        vin = _holder_vin.get()
        return self.keyring.subject_kid(self.keyring.vehicle_pseudonym(vin), create=True) if vin else None

    def _seal(self, source: BinaryIO, namespace: str, expect: tuple[str, int] | None = None) -> PutResult:
        """One pass: read, hash, seal and store; then record the data key (or keep the copy stored before)."""
        holder = self._holder()
        if expect is not None:  # the digest is known already (bytes in memory): a stored copy needs no work
            known = self.keyring.blob_key(namespace, expect[0], holder)
            if known is not None and known.data_key is not None and self.inner.exists(known.stored_as, namespace):
                return PutResult(expect[0], expect[1], created=False)
        kid, data_key = self.keyring.new_kid("b"), os.urandom(32)
        reader = _Encrypting(source, data_key, _trailer(kid))
        result = self.inner.put_stream(reader, namespace)
        sha, size = reader.sha256, reader.size
        recorded = self.keyring.add_blob_key(kid, namespace, sha, holder, data_key, result.sha256, size)
        if recorded.kid == kid:
            return PutResult(sha, size, created=result.created)
        remove_inner(self.inner, result.sha256, namespace)  # a copy was recorded before (a rerun, a racing writer)
        if recorded.data_key is not None and self.inner.exists(recorded.stored_as, namespace):
            return PutResult(sha, size, created=False)
        self._store_again(recorded, kid, holder, data_key, reader, source, namespace)  # its stored copy was lost
        return PutResult(sha, size, created=True)

    def _store_again(self, recorded: BlobKey, kid: str, holder: str | None, data_key: bytes, reader: _Encrypting,
                     source: BinaryIO, namespace: str) -> None:
        source.seek(0)
        again = self.inner.put_stream(_Encrypting(source, data_key, _trailer(kid)), namespace)
        self.keyring.replace_blob_key(recorded.kid, kid, holder, data_key, again.sha256, reader.size)

    def put_file(self, path: Path, namespace: str = "blobs") -> PutResult:
        with open(path, "rb") as fh:
            return self._seal(fh, namespace)

    def put_bytes(self, data: bytes, namespace: str = "blobs") -> PutResult:
        return self._seal(io.BytesIO(data), namespace, (hashlib.sha256(data).hexdigest(), len(data)))

    def put_stream(self, stream: BinaryIO, namespace: str = "blobs") -> PutResult:
        if isinstance(stream, io.BytesIO):  # put_bytes through a wrapper: the digest first saves the work
            return self.put_bytes(stream.getvalue(), namespace)
        return self._seal(stream, namespace)  # plaintext never touches a temporary file

    # -- reading ---------------------------------------------------------------------------------------
    def open(self, sha256: str, namespace: str = "blobs") -> BinaryIO:
        keys = self.keyring.blob_keys_of(namespace, sha256)
        for key in keys:
            if key.data_key is not None and key.stored_as:
                try:
                    inner = self.inner.open(key.stored_as, namespace)
                except StoreError:
                    continue
                return SealedReader(_Decrypting(inner, key.data_key, key.kid, sha256[:12]), CHUNK)
        if keys:
            raise StoreError(f"blob {sha256[:12]}… is unreadable: its data key was destroyed (erased)")
        try:
            return self.inner.open(sha256, namespace)  # stored before sealing
        except StoreError:
            raise StoreError(f"blob {sha256[:12]}… is missing, or its data key was destroyed (erased)") from None

    def exists(self, sha256: str, namespace: str = "blobs") -> bool:
        keys = self.keyring.blob_keys_of(namespace, sha256)
        if any(k.data_key is not None and k.stored_as and self.inner.exists(k.stored_as, namespace) for k in keys):
            return True
        return not keys and self.inner.exists(sha256, namespace)

    # -- destruction -----------------------------------------------------------------------------------
    def copies(self, sha256: str, namespace: str = "blobs") -> list[StoredCopy]:
        """Every stored copy of a plaintext (what an erasure records before it destroys anything)."""
        return [StoredCopy(k.kid, k.holder, k.stored_as) for k in self.keyring.blob_keys_of(namespace, sha256)]

    def held_by(self, holder_kid: str) -> list[BlobKey]:
        return self.keyring.keys_held_by(holder_kid)

    def stored_path(self, sha256: str, namespace: str = "blobs") -> Path | None:
        """The local file holding a sealed copy of these bytes (ciphertext), for tools that compare
        copying the stored files; None for a store that is not a local folder."""
        path_of = getattr(self.inner, "path_of", None)
        copy = next((c for c in self.copies(sha256, namespace) if c.stored_as), None)
        key = copy.stored_as if copy is not None else sha256
        return Path(path_of(key, namespace)) if path_of else None

    def stored_size(self, key: str, namespace: str = "blobs") -> int:
        """Bytes the inner store holds under `key` (0 when absent or unknown)."""
        path_of = getattr(self.inner, "path_of", None)
        try:
            return Path(path_of(key, namespace)).stat().st_size if path_of else 0
        except OSError:
            return 0

    def temporary_folder(self) -> Path | None:
        """Where a local inner store writes before it links (leftovers of a crash stay there)."""
        root = getattr(self.inner, "root", None)
        return Path(root) / "tmp" if root is not None else None

    def remove_stored(self, key: str, namespace: str = "blobs") -> bool:
        """Delete the inner store's bytes under `key` (ciphertext, or a blob from before sealing)."""
        return remove_inner(self.inner, key, namespace)


def unseal(data: bytes, keyring: Keyring) -> bytes | None:
    """The plaintext of sealed bytes as stored (for audits that read the store's files directly), or
    None when no recorded data key opens them (destroyed, or never recorded). Bytes that are not
    sealed are returned as they are."""
    if not data.startswith(MAGIC):
        return data
    kid = data[-KID_LEN:].decode("ascii", errors="replace")
    key = keyring.data_key(kid)
    if key is None:
        return None
    try:
        with _Decrypting(io.BytesIO(data), key, kid, kid) as reader:
            return reader.read()
    except SealError:  # not the recorded copy: one whose key died with a put killed before recording it
        return None


def remove_inner(store: BlobStore, key: str, namespace: str) -> bool:
    """Delete one blob from a local folder or an fsspec store; True when something was there.

    Blob stores are write-once and have no delete of their own; erasure and retention are the
    only callers (after the key that opened the bytes is already destroyed)."""
    path_of = getattr(store, "path_of", None)
    if path_of is not None:
        path = Path(path_of(key, namespace))
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True
    if isinstance(store, FsspecBlobStore):
        target = store._key(key, namespace)  # noqa: SLF001 - the store's own layout
        if not store.fs.exists(target):
            return False
        store.fs.rm(target)
        return True
    raise StoreError(f"blob store {store.url}: cannot delete blobs from a {type(store).__name__}")
