"""The SQL of the transparency log: entries (canonical JSON, leaf hash, type), tiles and signed checkpoints."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from fleetgate.errors import StoreError
from fleetgate.store.catalog import Catalog, ConflictError, utcnow
from fleetgate.store.schema import log_checkpoints, log_entries, log_tiles


class LogRepository:
    """Rows of `log_entries` and `log_checkpoints` in one region's catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- entries -----------------------------------------------------------------------------------
    def last(self, conn: Connection) -> tuple[int, str] | None:
        """(index, leaf hash) of the last entry, inside the caller's transaction."""
        row = conn.execute(sa.select(log_entries.c.idx, log_entries.c.leaf_hash)
                           .order_by(log_entries.c.idx.desc()).limit(1)).first()
        return (int(row[0]), row[1]) if row else None

    def insert(self, conn: Connection, rows: Sequence[dict]) -> None:
        """Insert entry rows ({idx, entry, leaf_hash, kind}); a taken index fails the transaction (ConflictError)."""
        conn.execute(sa.insert(log_entries), list(rows))

    def of_kind(self, kind: str | None, limit: int | None = None) -> list[str]:
        """Entry texts of one type (all when None), oldest first; the last `limit` when given."""
        query = sa.select(log_entries.c.entry)
        if kind:
            query = query.where(log_entries.c.kind == kind)
        query = query.order_by(log_entries.c.idx.desc() if limit else log_entries.c.idx)
        if limit:
            query = query.limit(limit)
        with self.catalog.connect() as conn:
            texts = list(conn.execute(query).scalars())
        return texts[::-1] if limit else texts

    # -- tiles -------------------------------------------------------------------------------------
    def tile(self, conn: Connection, level: int, index: int) -> bytes:
        """The stored hashes of one tile (level >= 1), empty when the tile does not exist yet."""
        blob = conn.execute(sa.select(log_tiles.c.hashes).where(log_tiles.c.level == level,
                                                                log_tiles.c.idx == index)).scalar_one_or_none()
        return bytes(blob) if blob is not None else b""

    def put_tiles(self, conn: Connection, rows: Sequence[dict]) -> None:
        """Insert or replace tiles ({level, idx, hashes}) inside the caller's transaction."""
        if not rows:
            return
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(log_tiles)
        conn.execute(insert.on_conflict_do_update(index_elements=["level", "idx"],
                                                  set_={"hashes": insert.excluded.hashes}), list(rows))

    def all_tiles(self, conn: Connection | None = None) -> list[tuple[int, int, bytes]]:
        """(level, index, hashes) of every stored tile, for verification."""
        query = sa.select(log_tiles.c.level, log_tiles.c.idx, log_tiles.c.hashes).order_by(log_tiles.c.level,
                                                                                          log_tiles.c.idx)
        if conn is None:
            with self.catalog.connect() as own:
                return [(int(level), int(i), bytes(h)) for level, i, h in own.execute(query)]
        return [(int(level), int(i), bytes(h)) for level, i, h in conn.execute(query)]

    def count(self, conn: Connection | None = None) -> int:
        """The log's size: one more than its last index (the indexes have no gaps, verify checks it)."""
        query = sa.select(sa.func.max(log_entries.c.idx))
        if conn is None:
            with self.catalog.connect() as own:
                last = own.execute(query).scalar_one()
        else:
            last = conn.execute(query).scalar_one()
        return 0 if last is None else int(last) + 1

    def entry_text(self, index: int, conn: Connection | None = None) -> str | None:
        query = sa.select(log_entries.c.entry).where(log_entries.c.idx == index)
        if conn is not None:
            return conn.execute(query).scalar_one_or_none()
        with self.catalog.connect() as own:
            return own.execute(query).scalar_one_or_none()

    def texts(self, indexes: Sequence[int]) -> dict[int, str]:
        """The entries at these indexes."""
        out: dict[int, str] = {}
        wanted = sorted(set(indexes))
        with self.catalog.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = sa.select(log_entries.c.idx, log_entries.c.entry).where(
                    log_entries.c.idx.in_(wanted[start:start + 500]))
                out.update({int(i): t for i, t in conn.execute(query)})
        return out

    def leaf_hashes(self, indexes: Sequence[int]) -> dict[int, bytes]:
        """The leaf hashes of the entries at these indexes (never the whole log)."""
        out: dict[int, bytes] = {}
        wanted = sorted(set(indexes))
        with self.catalog.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = sa.select(log_entries.c.idx, log_entries.c.leaf_hash).where(
                    log_entries.c.idx.in_(wanted[start:start + 500]))
                out.update({int(i): bytes.fromhex(h) for i, h in conn.execute(query)})
        return out

    def iter_raw_rows(self, conn: Connection | None = None, batch: int = 20000) -> Iterator[tuple[int, str, str, str]]:
        """(index, entry text, leaf hash, kind) in index order, through the driver's own cursor:
        verify reads every entry, and a million SQLAlchemy rows cost more than the hashing they feed."""
        if conn is None:
            with self.catalog.connect() as own:
                yield from self.iter_raw_rows(own, batch)
            return
        cursor = conn.connection.cursor()
        try:
            cursor.execute("SELECT idx, entry, leaf_hash, kind FROM log_entries ORDER BY idx")
            while rows := cursor.fetchmany(batch):
                yield from rows
        except conn.dialect.loaded_dbapi.Error as exc:  # the driver's own errors, as one line like the rest
            raise StoreError(f"catalog {self.catalog.name}: {type(exc).__name__}: {str(exc).splitlines()[0]}") \
                from exc
        finally:
            cursor.close()

    # -- checkpoints -------------------------------------------------------------------------------
    def add_checkpoint(self, size: int, root_hex: str, note: str) -> str:
        """Store a checkpoint note for `size` unless one exists; returns the note stored for that size."""
        try:
            with self.catalog.transaction() as conn:
                exists = conn.execute(sa.select(log_checkpoints.c.note).where(log_checkpoints.c.size == size)).first()
                if exists:
                    return exists[0]
                conn.execute(sa.insert(log_checkpoints).values(size=size, root=root_hex, note=note,
                                                               created_at=utcnow()))
                return note
        except ConflictError:  # another process checkpointed the same size first: use theirs
            return self.checkpoint_note(size) or note

    def checkpoint_note(self, size: int) -> str | None:
        with self.catalog.connect() as conn:
            return conn.execute(sa.select(log_checkpoints.c.note)
                                .where(log_checkpoints.c.size == size)).scalar_one_or_none()

    def latest_checkpoint_note(self) -> str | None:
        with self.catalog.connect() as conn:
            row = conn.execute(sa.select(log_checkpoints.c.note).order_by(log_checkpoints.c.size.desc())).first()
        return row[0] if row else None

    def checkpoint_rows(self, conn: Connection | None = None) -> list[tuple[int, str, str]]:
        """(size, root hex, note) of every checkpoint, smallest first."""
        query = sa.select(log_checkpoints.c.size, log_checkpoints.c.root, log_checkpoints.c.note) \
            .order_by(log_checkpoints.c.size)
        if conn is not None:
            rows = conn.execute(query).all()
        else:
            with self.catalog.connect() as own:
                rows = own.execute(query).all()
        return [(int(s), r, n) for s, r, n in rows]

    def replace_checkpoint_note(self, size: int, note: str) -> None:
        with self.catalog.transaction() as conn:
            conn.execute(sa.update(log_checkpoints).where(log_checkpoints.c.size == size).values(note=note))
