"""Blob stores (one contract for the local and fsspec backends) and the catalog."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from fleetgate.store import BlobStore, Catalog, FsspecBlobStore, LocalBlobStore, open_blob_store


@pytest.fixture(params=["local", "fsspec-memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return FsspecBlobStore(f"memory://fleetgate-test-{uuid.uuid4().hex}")


def test_put_is_content_addressed(store: BlobStore, tmp_path: Path) -> None:
    data = b"front camera bytes" * 1000
    src = tmp_path / "a.bin"
    src.write_bytes(data)
    first = store.put_file(src)
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert first.size == len(data) and first.created
    assert store.read_bytes(first.sha256) == data
    assert store.verify(first.sha256)


def test_second_put_of_same_bytes_creates_nothing(store: BlobStore) -> None:
    a = store.put_bytes(b"same")
    b = store.put_bytes(b"same")
    assert a.sha256 == b.sha256 and a.created and not b.created


def test_large_stream_hash_matches_across_chunks(store: BlobStore) -> None:
    data = bytes(range(256)) * (5 * 1024 * 16 + 7)  # ~21 MB, not a multiple of the chunk size
    put = store.put_stream(io.BytesIO(data))
    assert put.sha256 == hashlib.sha256(data).hexdigest() and put.size == len(data)


def test_namespaces_are_separate(store: BlobStore) -> None:
    put = store.put_bytes(b"bad file", namespace="quarantine")
    assert store.exists(put.sha256, "quarantine")
    assert not store.exists(put.sha256, "blobs")


def test_local_store_never_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    put = store.put_bytes(b"original")
    path = store.path_of(put.sha256)
    mtime = path.stat().st_mtime_ns
    store.put_bytes(b"original")
    assert path.stat().st_mtime_ns == mtime
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_open_blob_store_picks_backend(tmp_path: Path) -> None:
    assert isinstance(open_blob_store(str(tmp_path / "x")), LocalBlobStore)
    assert isinstance(open_blob_store("memory://bucket-x"), FsspecBlobStore)


def test_sqlite_catalog_runs_in_wal_mode(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    catalog.close()


def test_a_process_pinned_to_a_region_cannot_act_for_another(monkeypatch) -> None:
    from fleetgate.store.residency import ACTING_ENV, ResidencyError, acting_for, acting_region

    monkeypatch.setenv(ACTING_ENV, "cn-shanghai")
    with acting_for("cn-shanghai"):
        assert acting_region() == "cn-shanghai"
    with pytest.raises(ResidencyError, match="pinned to region cn-shanghai"), acting_for("eu-frankfurt"):
        pass
