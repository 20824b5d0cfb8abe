"""The region's keyring: per-person keys and per-blob data keys, the one store where deleting is real.

Every sealed blob (`store.sealed`) has its own AES-256 data key. A blob that holds one person's data
(their vehicle's clips, tracks, CAN, cabin media, and what is derived from them) has that data key
wrapped (AES key wrap, RFC 3394) under the person's subject key; a blob of many people (a table) or of
nobody has its data key stored alone. Destroying a blob's data key makes every copy of that blob
unreadable (replicas, object versions, backups of the blob store); destroying a person's subject key
does the same for every blob of theirs at once, including data keys that survive in an old copy of
this keyring. The subject key also keys the person's digests in the transparency log
(`audit.facts`), so once it is gone those digests no longer link to anyone.

The keyring is its own SQLite database in the region's key folder (`keys/<region>/keyring.db`),
never inside the catalog and never in the catalog's or the blob store's backups. Deleted rows are
zeroed (`secure_delete`) and the write-ahead log is checkpointed and truncated after every
destruction, so no page of a destroyed key is left in either file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from fleetgate.errors import StoreError
from fleetgate.keys import KeyStore
from fleetgate.keys.region_keys import pseudonym
from fleetgate.store.catalog import utcnow
from fleetgate.store.schema import blob_keys, keyring_metadata, subject_keys

KEYRING_FILE = "keyring.db"


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a data key lost to a power cut is a blob lost for good
    cursor.execute("PRAGMA secure_delete=ON")  # deleted keys are overwritten with zeros, not just unlinked
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _mac(key: bytes, *parts: str) -> str:
    return hmac.new(key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class BlobKey:
    """A blob's data key as the keyring holds it; `data_key` is None when its holder was destroyed."""

    kid: str
    namespace: str
    sha256: str
    holder: str | None
    data_key: bytes | None
    stored_as: str | None
    bytes: int | None


# Reads go through one plain sqlite3 connection per thread, in autocommit: each lookup sees what is
# committed now (a destroyed key is gone at once) and costs a few microseconds, where a pooled
# SQLAlchemy connection with its transaction cost more than the blob read it served.
_BLOB_NAMES = ("kid", "namespace", "sha256", "holder", "data_key", "stored_as", "bytes")
_BLOB_COLUMNS = ", ".join(_BLOB_NAMES)


class Keyring:
    """The keyring of one region."""

    _open: dict[Path, Keyring] = {}
    _lock = threading.Lock()

    def __init__(self, path: Path, region_key: bytes) -> None:
        self.path = Path(path)
        self._region_key = region_key
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self.engine = sa.create_engine(f"sqlite:///{self.path}", future=True)
            sa.event.listen(self.engine, "connect", _pragmas)
            sa.event.listen(self.engine, "begin", _begin)
            keyring_metadata.create_all(self.engine)
            os.chmod(self.path, 0o600)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise StoreError(f"keyring {self.path}: cannot open: {type(exc).__name__}: {exc}") from exc
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of one read, on this thread's own connection (made on first use, again after a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout=10000")
            except sqlite3.Error as exc:
                raise StoreError(f"keyring {self.path}: cannot open: {type(exc).__name__}: {exc}") from exc
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._readers_lock:
                self._readers.append(conn)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"keyring {self.path}: cannot read: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._local = threading.local()
        self.engine.dispose()

    @classmethod
    def of(cls, keys: KeyStore) -> Keyring:
        """The keyring beside a region's keys (one per process and path)."""
        path = (keys.folder / KEYRING_FILE).resolve()
        with cls._lock:
            ring = cls._open.get(path)
            if ring is None or not path.exists():
                ring = cls._open[path] = cls(path, keys.pseudonym_key())
            return ring

    @classmethod
    def forget(cls) -> None:
        """Close every open keyring (tests that copy workspaces between processes)."""
        with cls._lock:
            rings = list(cls._open.values())
            cls._open.clear()
        for ring in rings:
            ring.close()

    # -- ids ---------------------------------------------------------------------------------------
    def vehicle_pseudonym(self, vin: str) -> str:
        """The keyed pseudonym of a VIN, as classification and the ledger record it."""
        return pseudonym(self._region_key, vin, "vin")

    def _subject_slot(self, subject_pseudonym: str) -> str:
        return _mac(self._region_key, "keyring/subject", subject_pseudonym)

    def _blob_slot(self, namespace: str, sha256: str, holder: str | None) -> str:
        return _mac(self._region_key, "keyring/blob", namespace, sha256, holder or "")

    @staticmethod
    def new_kid(kind: str) -> str:
        return f"{kind}_" + os.urandom(16).hex()

    # -- subject keys ---------------------------------------------------------------------------------
    def subject_key(self, subject_pseudonym: str, create: bool) -> tuple[str, bytes] | None:
        """(key id, secret) of a person's key; made on first use when `create`, None when absent."""
        return self.subject_keys([subject_pseudonym], create).get(subject_pseudonym)

    def subject_kid(self, subject_pseudonym: str, create: bool = False) -> str | None:
        found = self.subject_key(subject_pseudonym, create)
        return None if found is None else found[0]

    def subject_keys(self, subject_pseudonyms: list[str], create: bool) -> dict[str, tuple[str, bytes]]:
        """`subject_key` for many people in one read (and one write for the keys still to make)."""
        slots = {self._subject_slot(p): p for p in set(subject_pseudonyms)}
        if not slots:
            return {}
        found = self._by_slot(list(slots))
        missing = [slot for slot in slots if slot not in found]
        if missing and create:
            with self.engine.begin() as conn:
                conn.execute(sqlite.insert(subject_keys).on_conflict_do_nothing(),
                             [{"kid": self.new_kid("s"), "slot": slot, "secret": os.urandom(32),
                               "created_at": utcnow()} for slot in missing])
            found = self._by_slot(list(slots))
        return {slots[slot]: value for slot, value in found.items()}

    def _by_slot(self, slots: list[str]) -> dict[str, tuple[str, bytes]]:
        out: dict[str, tuple[str, bytes]] = {}
        for start in range(0, len(slots), 500):
            chunk = tuple(slots[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = self._query(f"SELECT slot, kid, secret FROM subject_keys WHERE slot IN ({marks})", chunk)
            out.update({slot: (kid, secret) for slot, kid, secret in rows})
        return out

    @staticmethod
    def _derive(secret: bytes, purpose: bytes) -> bytes:
        return hmac.new(secret, purpose, hashlib.sha256).digest()

    def fact_key(self, subject_pseudonym: str, create: bool) -> bytes | None:
        """The key that digests a person's values in the log (derived from their subject key)."""
        return self.fact_keys([subject_pseudonym], create).get(subject_pseudonym)

    def fact_keys(self, subject_pseudonyms: list[str], create: bool) -> dict[str, bytes | None]:
        keys = self.subject_keys(subject_pseudonyms, create)
        return {p: (self._derive(keys[p][1], b"fleetgate/facts") if p in keys else None)
                for p in set(subject_pseudonyms)}

    def _wrapping_key(self, holder: str | None) -> bytes | None:
        """The key that wraps data keys of `holder` (a subject key id); b"" for none, None if destroyed."""
        if holder is None:
            return b""
        rows = self._query("SELECT secret FROM subject_keys WHERE kid = ?", (holder,))
        secret = rows[0][0] if rows else None
        return None if secret is None else self._derive(secret, b"fleetgate/wrap")

    # -- blob keys ------------------------------------------------------------------------------------
    def blob_key(self, namespace: str, sha256: str, holder: str | None) -> BlobKey | None:
        """The data key of these plaintext bytes for this holder, if one was recorded."""
        rows = self._blob_rows("slot = ?", (self._blob_slot(namespace, sha256, holder),))
        return rows[0] if rows else None

    def add_blob_key(self, kid: str, namespace: str, sha256: str, holder: str | None, data_key: bytes,
                     stored_as: str, size: int) -> BlobKey:
        """Record the data key a blob was sealed with, in one durable write; if a key for the same bytes
        and holder was recorded first, that one stands and is returned."""
        wrapping = self._wrapping_key(holder)
        if wrapping is None:
            raise StoreError(f"keyring {self.path}: the holder's key {holder} is destroyed; nothing is sealed for it")
        stored = aes_key_wrap(wrapping, data_key) if holder else data_key
        slot = self._blob_slot(namespace, sha256, holder)
        with self.engine.begin() as conn:
            conn.execute(sqlite.insert(blob_keys).on_conflict_do_nothing(), [{
                "kid": kid, "slot": slot, "namespace": namespace, "sha256": sha256, "holder": holder,
                "data_key": stored, "stored_as": stored_as, "bytes": size, "created_at": utcnow()}])
        return self._blob_rows("slot = ?", (slot,))[0]

    def replace_blob_key(self, old_kid: str, kid: str, holder: str | None, data_key: bytes, stored_as: str,
                         size: int) -> None:
        """A data key whose stored copy is gone (a crash, a lost file) gives way to the copy just stored."""
        wrapping = self._wrapping_key(holder)
        assert wrapping is not None
        stored = aes_key_wrap(wrapping, data_key) if holder else data_key
        with self.engine.begin() as conn:
            conn.execute(sa.update(blob_keys).where(blob_keys.c.kid == old_kid)
                         .values(kid=kid, data_key=stored, stored_as=stored_as, bytes=size))

    def blob_keys_of(self, namespace: str, sha256: str) -> list[BlobKey]:
        """Every data key for these plaintext bytes (one per holder), readable ones first."""
        rows = self._blob_rows("namespace = ? AND sha256 = ?", (namespace, sha256))
        return sorted(rows, key=lambda k: k.data_key is None)

    def _blob_rows(self, where: str, params: tuple[Any, ...]) -> list[BlobKey]:
        """The data keys the condition selects, unwrapped."""
        rows = [dict(zip(_BLOB_NAMES, r, strict=True))
                for r in self._query(f"SELECT {_BLOB_COLUMNS} FROM blob_keys WHERE {where}", params)]
        out = []
        for r in rows:
            wrapping = self._wrapping_key(r["holder"])
            dek: bytes | None
            if wrapping is None:
                dek = None  # the person's key is destroyed: this data key can never be unwrapped again
            elif r["holder"]:
                try:
                    dek = aes_key_unwrap(wrapping, r["data_key"])
                except InvalidUnwrap:
                    raise StoreError(f"keyring {self.path}: data key {r['kid']} does not unwrap under its "
                                     "holder's key; the keyring was changed outside fleetgate") from None
            else:
                dek = r["data_key"]
            out.append(BlobKey(r["kid"], r["namespace"], r["sha256"], r["holder"], dek, r["stored_as"], r["bytes"]))
        return out

    def data_key(self, kid: str) -> bytes | None:
        """The data key with this id, or None when it (or the subject key wrapping it) was destroyed."""
        rows = self._blob_rows("kid = ?", (kid,))
        return rows[0].data_key if rows else None

    def keys_held_by(self, holder: str) -> list[BlobKey]:
        return self._blob_rows("holder = ?", (holder,))

    # -- destruction ------------------------------------------------------------------------------------
    def destroy(self, kids: list[str]) -> list[str]:
        """Destroy keys (subject keys take the data keys they wrap with them); returns the ids that existed.

        The rows are zeroed on delete and the write-ahead log is truncated afterwards, so neither
        file keeps a page of a destroyed key."""
        kids = sorted(set(kids))
        if not kids:
            return []
        with self.engine.begin() as conn:
            present = set(conn.execute(sa.select(subject_keys.c.kid).where(subject_keys.c.kid.in_(kids))).scalars())
            present |= set(conn.execute(sa.select(blob_keys.c.kid).where(blob_keys.c.kid.in_(kids))).scalars())
            conn.execute(sa.delete(blob_keys).where(blob_keys.c.kid.in_(kids) | blob_keys.c.holder.in_(kids)))
            conn.execute(sa.delete(subject_keys).where(subject_keys.c.kid.in_(kids)))
        self.checkpoint()
        return sorted(present)

    def present(self, kids: list[str]) -> set[str]:
        """Which of these key ids the keyring still holds."""
        kids = sorted(set(kids))
        with self.engine.connect() as conn:
            found = set(conn.execute(sa.select(subject_keys.c.kid).where(subject_keys.c.kid.in_(kids))).scalars())
            found |= set(conn.execute(sa.select(blob_keys.c.kid).where(blob_keys.c.kid.in_(kids))).scalars())
        return found

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database and truncate it to zero bytes."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.close()
        finally:
            raw.close()


def _forget_in_child() -> None:
    # a forked child must not share the parent's SQLite connections
    for ring in Keyring._open.values():
        ring.engine.dispose(close=False)
    Keyring._open.clear()


os.register_at_fork(after_in_child=_forget_in_child)
