"""Blob stores: one contract, subclassed per backend (local folder, fsspec memory, S3 on a real SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from fleetgate.errors import StoreError
from fleetgate.store import BlobStore, Catalog, FsspecBlobStore, LocalBlobStore, open_blob_store


class BlobStoreContract:
    """What every BlobStore promises; a backend's test class subclasses this and provides `store`."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        raise NotImplementedError

    def test_put_is_content_addressed(self, store: BlobStore, tmp_path: Path) -> None:
        data = b"front camera bytes" * 1000
        src = tmp_path / "a.bin"
        src.write_bytes(data)
        first = store.put_file(src)
        assert first.sha256 == hashlib.sha256(data).hexdigest()
        assert first.size == len(data) and first.created
        assert store.read_bytes(first.sha256) == data
        assert store.verify(first.sha256)

    def test_second_put_of_same_bytes_creates_nothing(self, store: BlobStore) -> None:
        a = store.put_bytes(b"same")
        b = store.put_bytes(b"same")
        assert a.sha256 == b.sha256 and a.created and not b.created

    def test_racing_puts_of_the_same_bytes_create_it_once(self, store: BlobStore) -> None:
        data = uuid.uuid4().bytes * 4096
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: store.put_bytes(data), range(8)))
        assert sum(r.created for r in results) == 1
        assert {r.sha256 for r in results} == {hashlib.sha256(data).hexdigest()}
        assert store.read_bytes(results[0].sha256) == data

    def test_large_stream_hash_matches_across_chunks(self, store: BlobStore) -> None:
        data = bytes(range(256)) * (5 * 1024 * 16 + 7)  # ~21 MB, not a multiple of the chunk size
        put = store.put_stream(io.BytesIO(data))
        assert put.sha256 == hashlib.sha256(data).hexdigest() and put.size == len(data)
        with store.open(put.sha256) as fh:
            fh.seek(len(data) - 10)  # decoders seek: every backend's reader must
            assert fh.read() == data[-10:]

    def test_namespaces_are_separate(self, store: BlobStore) -> None:
        put = store.put_bytes(b"bad file", namespace="quarantine")
        assert store.exists(put.sha256, "quarantine")
        assert not store.exists(put.sha256, "blobs")

    def test_a_missing_blob_is_one_line_naming_it(self, store: BlobStore) -> None:
        missing = "ab" * 32
        assert not store.exists(missing)
        with pytest.raises(StoreError) as info:
            store.read_bytes(missing)
        assert missing[:12] in info.value.message and "\n" not in info.value.message  # named (maybe shortened)

    def test_read_table_reads_the_columns_asked_for(self, store: BlobStore) -> None:
        buf = io.BytesIO()
        pq.write_table(pa.table({"lat": [31.2, 31.3], "lon": [121.4, 121.5], "speed": [3.0, 4.0]}), buf)
        put = store.put_bytes(buf.getvalue())
        table = store.read_table(put.sha256, columns=["lat", "lon"])
        assert table.column_names == ["lat", "lon"] and table.num_rows == 2


class TestLocalBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        return LocalBlobStore(tmp_path / "blobs")

    def test_never_overwrites_and_leaves_no_temp_files(self, tmp_path: Path) -> None:
        store = LocalBlobStore(tmp_path / "blobs")
        put = store.put_bytes(b"original")
        path = store.path_of(put.sha256)
        mtime = path.stat().st_mtime_ns
        store.put_bytes(b"original")
        assert path.stat().st_mtime_ns == mtime
        assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


class TestMemoryBlobStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        return FsspecBlobStore(f"memory://fleetgate-test-{uuid.uuid4().hex}")


@pytest.mark.s3
class TestS3BlobStore(BlobStoreContract):
    """The same contract against a real S3 server (SeaweedFS on loopback, a versioned bucket)."""

    @pytest.fixture
    def store(self, s3_env, tmp_path: Path) -> BlobStore:
        self.server = s3_env
        self.bucket = s3_env.bucket()
        store = open_blob_store(f"s3://{self.bucket}/region-a")
        assert isinstance(store, FsspecBlobStore)
        return store

    def test_a_second_put_writes_no_new_version(self, store: BlobStore) -> None:
        put = store.put_bytes(b"write once")
        store.put_bytes(b"write once")
        versions = self.server.client().list_object_versions(Bucket=self.bucket, Prefix="region-a/")
        keys = [v["Key"] for v in versions.get("Versions", [])]
        assert keys == [f"region-a/blobs/{put.sha256[:2]}/{put.sha256[2:4]}/{put.sha256}"]

    def test_an_unreachable_store_is_one_line(self, store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens on the discard port
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        store = FsspecBlobStore(f"s3://{self.bucket}/elsewhere", config_kwargs={"connect_timeout": 1,
                                                                                  "retries": {"max_attempts": 1}})
        with pytest.raises(StoreError) as info:
            store.put_bytes(b"nowhere")
        assert "\n" not in info.value.message and info.value.message.startswith(f"blob store s3://{self.bucket}")


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


@pytest.mark.s3
class TestSealedS3BlobStore(BlobStoreContract):
    """Issue 17's sealed store over the S3 store: the same contract, ciphertext only in the bucket, and
    erasure's delete reaches the bucket."""

    @pytest.fixture
    def store(self, s3_env, tmp_path: Path) -> BlobStore:
        from fleetgate.keys import KeyStore
        from fleetgate.store.keyring import Keyring
        from fleetgate.store.sealed import SealedBlobStore

        self.server, self.bucket = s3_env, s3_env.bucket()
        return SealedBlobStore(open_blob_store(f"s3://{self.bucket}/region-a"),
                               Keyring.of(KeyStore(tmp_path / "keys", "cn-test")))

    def _objects(self) -> list[str]:
        listed = self.server.client().list_objects_v2(Bucket=self.bucket, Prefix="region-a/blobs/")
        return [o["Key"] for o in listed.get("Contents", [])]

    def test_the_bucket_holds_ciphertext_and_erasure_deletes_it(self, store: BlobStore) -> None:
        from fleetgate.store.sealed import remove_inner, sealed_for

        data = b"LSVAB2BM5TA123456,13800138000\n" * 2000
        with sealed_for("LSVAB2BM5TA123456"):
            put = store.put_bytes(data)
        [key] = self._objects()
        body = self.server.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        assert b"13800138000" not in body and put.sha256 not in key
        assert store.read_bytes(put.sha256) == data
        assert remove_inner(store.inner, key.rsplit("/", 1)[-1], "blobs")
        assert self._objects() == [] and not store.exists(put.sha256)
