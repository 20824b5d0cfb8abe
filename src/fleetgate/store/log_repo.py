"""The SQL of the transparency log: entries (canonical JSON and leaf hash) and signed checkpoints."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetgate.store.catalog import Catalog, ConflictError, utcnow
from fleetgate.store.schema import log_checkpoints, log_entries


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
        """Insert entry rows ({idx, entry, leaf_hash}); a taken index fails the transaction (ConflictError)."""
        conn.execute(sa.insert(log_entries), list(rows))

    def count(self) -> int:
        with self.catalog.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(log_entries)).scalar_one())

    def entry_text(self, index: int, conn: Connection | None = None) -> str | None:
        query = sa.select(log_entries.c.entry).where(log_entries.c.idx == index)
        if conn is not None:
            return conn.execute(query).scalar_one_or_none()
        with self.catalog.engine.connect() as own:
            return own.execute(query).scalar_one_or_none()

    def texts(self, indexes: Sequence[int]) -> dict[int, str]:
        """The entries at these indexes."""
        out: dict[int, str] = {}
        wanted = sorted(set(indexes))
        with self.catalog.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = sa.select(log_entries.c.idx, log_entries.c.entry).where(
                    log_entries.c.idx.in_(wanted[start:start + 500]))
                out.update({int(i): t for i, t in conn.execute(query)})
        return out

    def iter_rows(self, batch: int = 20000) -> Iterator[tuple[int, str, str]]:
        """(index, entry text, stored leaf hash) in index order, streamed."""
        query = sa.select(log_entries.c.idx, log_entries.c.entry, log_entries.c.leaf_hash).order_by(log_entries.c.idx)
        with self.catalog.engine.connect() as conn:
            yield from conn.execution_options(yield_per=batch).execute(query)

    def iter_raw_rows(self, conn: Connection | None = None, batch: int = 20000) -> Iterator[tuple[int, str, str]]:
        """Like iter_rows, through the driver's own cursor: verify reads every entry, and a
        million SQLAlchemy rows cost more than the hashing they feed."""
        if conn is None:
            with self.catalog.engine.connect() as own:
                yield from self.iter_raw_rows(own, batch)
            return
        cursor = conn.connection.cursor()
        try:
            cursor.execute("SELECT idx, entry, leaf_hash FROM log_entries ORDER BY idx")
            while rows := cursor.fetchmany(batch):
                yield from rows
        finally:
            cursor.close()

    def iter_texts(self, start: int = 0, batch: int = 20000) -> Iterator[str]:
        query = (sa.select(log_entries.c.entry).where(log_entries.c.idx >= start).order_by(log_entries.c.idx))
        with self.catalog.engine.connect() as conn:
            for (text,) in conn.execution_options(yield_per=batch).execute(query):
                yield text

    def leaf_hashes(self, size: int | None = None) -> list[bytes]:
        query = sa.select(log_entries.c.leaf_hash).order_by(log_entries.c.idx)
        if size is not None:
            query = query.where(log_entries.c.idx < size)
        with self.catalog.engine.connect() as conn:
            return [bytes.fromhex(r[0]) for r in conn.execute(query)]

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
        with self.catalog.engine.connect() as conn:
            return conn.execute(sa.select(log_checkpoints.c.note)
                                .where(log_checkpoints.c.size == size)).scalar_one_or_none()

    def latest_checkpoint_note(self) -> str | None:
        with self.catalog.engine.connect() as conn:
            row = conn.execute(sa.select(log_checkpoints.c.note).order_by(log_checkpoints.c.size.desc())).first()
        return row[0] if row else None

    def checkpoint_rows(self, conn: Connection | None = None) -> list[tuple[int, str, str]]:
        """(size, root hex, note) of every checkpoint, smallest first."""
        query = sa.select(log_checkpoints.c.size, log_checkpoints.c.root, log_checkpoints.c.note) \
            .order_by(log_checkpoints.c.size)
        if conn is not None:
            rows = conn.execute(query).all()
        else:
            with self.catalog.engine.connect() as own:
                rows = own.execute(query).all()
        return [(int(s), r, n) for s, r, n in rows]

    def replace_checkpoint_note(self, size: int, note: str) -> None:
        with self.catalog.transaction() as conn:
            conn.execute(sa.update(log_checkpoints).where(log_checkpoints.c.size == size).values(note=note))
