"""Sealed blobs and the keyring: what destroying a key does to every copy, and what the store's names reveal."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetgate.errors import StoreError
from fleetgate.gate.destination import copy_verified
from fleetgate.keys import KeyStore
from fleetgate.store import LocalBlobStore
from fleetgate.store.keyring import KEYRING_FILE, Keyring
from fleetgate.store.sealed import CHUNK, SealedBlobStore, SealError, sealed_for, unseal

VIN_A, VIN_B = "LSVAB2BM5TA123456", "LFV3A23C8T3012345"


def _store(root: Path) -> SealedBlobStore:
    keys = KeyStore(root / "keys", "cn-test")
    return SealedBlobStore(LocalBlobStore(root / "blobs"), Keyring.of(keys))


def _stored_files(root: Path) -> list[Path]:
    return [p for p in (root / "blobs" / "blobs").rglob("*") if p.is_file()]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3 * CHUNK + 7), st.integers(0, 2**32 - 1))
def test_round_trip_and_seek(tmp_path_factory: pytest.TempPathFactory, size: int, seed: int) -> None:
    store = _store(tmp_path_factory.mktemp("seal"))
    data = random_bytes(size, seed)
    put = store.put_bytes(data)
    assert put.sha256 == hashlib.sha256(data).hexdigest() and put.size == size
    assert store.read_bytes(put.sha256) == data and store.verify(put.sha256)
    offset = seed % (size + 1)
    with store.open(put.sha256) as fh:
        fh.seek(offset)
        assert fh.read(CHUNK + 3) == data[offset:offset + CHUNK + 3]
        fh.seek(-min(size, 9), os.SEEK_END)
        assert fh.read() == data[size - min(size, 9):]
    target = tmp_path_factory.mktemp("copy") / "out"
    with store.open(put.sha256) as fh:  # the export's copy: whole chunks, hashed as written
        assert copy_verified(fh, target) == put.sha256 and target.read_bytes() == data


def random_bytes(size: int, seed: int) -> bytes:
    return hashlib.shake_256(seed.to_bytes(8, "big")).digest(size) if size else b""


def test_the_store_never_names_or_holds_the_plaintext(tmp_path: Path) -> None:
    store = _store(tmp_path)
    data = b"LSVAB2BM5TA123456," * 5000
    plain = hashlib.sha256(data).hexdigest()
    with sealed_for(VIN_A):
        first = store.put_bytes(data)
        again = store.put_bytes(data)
    assert first.created and not again.created  # deduplicated per holder
    with sealed_for(VIN_B):
        other = store.put_bytes(data)  # the same bytes of another person: their own copy, their own key
    files = _stored_files(tmp_path)
    assert other.created and len(files) == 2
    assert all(f.name != plain and b"LSVAB2BM5TA123456" not in f.read_bytes() for f in files)


def test_a_tampered_blob_fails_its_tag(tmp_path: Path) -> None:
    store = _store(tmp_path)
    put = store.put_bytes(os.urandom(CHUNK * 2 + 5))
    stored = _stored_files(tmp_path)[0]
    original = stored.read_bytes()
    stored.chmod(0o644)
    for where, message in ((len(original) // 2, "authentication tag"), (len(original) - 5, "name its data key")):
        data = bytearray(original)
        data[where] ^= 1
        stored.write_bytes(bytes(data))
        with pytest.raises(SealError, match=message):
            store.read_bytes(put.sha256)
        with pytest.raises(SealError, match=message), store.open(put.sha256) as fh:
            copy_verified(fh, tmp_path / "copied")


def test_destroying_a_persons_key_makes_every_copy_unreadable(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with sealed_for(VIN_A):
        mine = store.put_bytes(b"cabin audio of A")
    with sealed_for(VIN_B):
        theirs = store.put_bytes(b"cabin audio of B")
    backup = {p.name: p.read_bytes() for p in _stored_files(tmp_path)}  # a copy of the store, taken before
    ring = store.keyring
    kid_a, secret = ring.subject_key(ring.vehicle_pseudonym(VIN_A), create=False)
    with ThreadPoolExecutor(1) as reader:  # a thread that read the key before keeps its own connection
        assert reader.submit(store.read_bytes, mine.sha256).result() == b"cabin audio of A"
        assert ring.destroy([kid_a]) == [kid_a]
        with pytest.raises(StoreError, match="data key was destroyed"):
            reader.submit(store.read_bytes, mine.sha256).result()
    with pytest.raises(StoreError, match="data key was destroyed"):
        store.read_bytes(mine.sha256)
    assert store.read_bytes(theirs.sha256) == b"cabin audio of B"
    readable = [unseal(blob, ring) for blob in backup.values()]
    assert sorted(r for r in readable if r is not None) == [b"cabin audio of B"]  # A's copy: gone for good
    # the keyring's database and its write-ahead log keep no page of the destroyed key
    for suffix in ("", "-wal"):
        path = ring.path.with_name(KEYRING_FILE + suffix)
        assert not path.exists() or secret not in path.read_bytes()


@pytest.mark.parametrize("advice_fails", [False, True])
def test_the_export_copy_starts_writeback_and_drops_only_what_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, advice_fails: bool) -> None:
    """Every WRITEBACK bytes the copy starts the disk on the range just written and drops the range
    before it from the page cache: contiguous ranges in order, never a length of 0 (the whole file),
    and a system that refuses the advice still gets an exact, verified copy."""
    from fleetgate.gate import destination

    store = _store(tmp_path)
    data = random_bytes(5 * CHUNK + 3, 7)
    put = store.put_bytes(data)
    started, dropped = [], []
    monkeypatch.setattr(destination, "WRITEBACK", CHUNK)
    monkeypatch.setattr(destination, "start_writeback", lambda fd, offset, length: started.append((offset, length)))

    def advice(fd: int, offset: int, length: int, what: int) -> None:
        dropped.append((offset, length))
        if advice_fails:
            raise OSError(22, "Invalid argument")

    monkeypatch.setattr(destination.os, "posix_fadvise", advice)
    with store.open(put.sha256) as fh:
        assert copy_verified(fh, tmp_path / "out") == put.sha256
    assert (tmp_path / "out").read_bytes() == data
    assert started == [(i * CHUNK, CHUNK) for i in range(5)]
    assert dropped == [(i * CHUNK, CHUNK) for i in range(4)]
