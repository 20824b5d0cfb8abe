"""The SQL of data-subject rights: requests, erasure records, legal holds, and removing a person's rows.

Removal runs with SQLite's `secure_delete` on, so a deleted row's bytes are overwritten in its page,
and the write-ahead log is checkpointed and truncated afterwards (`scrub_wal`), so neither the
database file nor its WAL keeps a copy of what was erased.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetgate.store.catalog import Catalog, _row_dict
from fleetgate.store.schema import (
    asset_subjects,
    assets,
    classifications,
    erasures,
    exports,
    ledger_subjects,
    legal_holds,
    quarantine,
    subject_requests,
)

TOMBSTONE = "erased:"


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[list[str]]:
    values = sorted(set(values))
    for start in range(0, len(values), size):
        yield values[start:start + size]


class SubjectRecords:
    """Requests, erasures and holds of one region's catalog, and the row removals of an erasure."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def _all(self, query: Any, conn: Connection | None = None) -> list[dict[str, Any]]:
        if conn is not None:  # inside the caller's transaction (a second connection would wait on it)
            return [_row_dict(r) for r in conn.execute(query)]
        with self.catalog.engine.connect() as own:
            return [_row_dict(r) for r in own.execute(query)]

    # -- requests ------------------------------------------------------------------------------------
    def add_request(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(sa.insert(subject_requests).values(**row))

    def requests(self, ref: str | None = None, status: str | None = None,
                 conn: Connection | None = None) -> list[dict[str, Any]]:
        query = sa.select(subject_requests).order_by(subject_requests.c.received_at)
        if ref is not None:
            query = query.where(subject_requests.c.ref == ref)
        if status is not None:
            query = query.where(subject_requests.c.status == status)
        return self._all(query, conn)

    def finish_request(self, conn: Connection, request_id: str, result: dict[str, Any], at: datetime,
                       wipe_salt: bool = False) -> None:
        values: dict[str, Any] = {"status": "done", "result": result, "finished_at": at}
        if wipe_salt:
            values["identifier_salt"] = None
        conn.execute(sa.update(subject_requests).where(subject_requests.c.id == request_id).values(**values))

    def wipe_salts(self, conn: Connection, request_ids: Iterable[str]) -> None:
        for chunk in _chunks(list(request_ids)):
            conn.execute(sa.update(subject_requests).where(subject_requests.c.id.in_(chunk))
                         .values(identifier_salt=None))

    # -- erasures ------------------------------------------------------------------------------------
    def add_erasure(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(sa.insert(erasures).values(**row))

    def erasure(self, erasure_id: str) -> dict[str, Any] | None:
        rows = self._all(sa.select(erasures).where(erasures.c.id == erasure_id))
        return rows[0] if rows else None

    def erasures(self, status: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(erasures).order_by(erasures.c.created_at)
        if status is not None:
            query = query.where(erasures.c.status == status)
        return self._all(query)

    def finish_erasure(self, conn: Connection, erasure_id: str, index: int, at: datetime) -> None:
        # the plan named blobs and keys to destroy; once they are gone it says nothing anyone needs
        conn.execute(sa.update(erasures).where(erasures.c.id == erasure_id)
                     .values(status="done", done_index=index, finished_at=at, plan={}))

    # -- legal holds ---------------------------------------------------------------------------------
    def add_holds(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        conn.execute(sa.insert(legal_holds), list(rows))

    def release_hold(self, conn: Connection, hold_id: str, by: str, index: int) -> None:
        conn.execute(sa.update(legal_holds).where(legal_holds.c.id == hold_id)
                     .values(released_by=by, released_index=index))

    def holds(self, active_only: bool = True) -> list[dict[str, Any]]:
        query = sa.select(legal_holds).order_by(legal_holds.c.placed_index)
        if active_only:
            query = query.where(legal_holds.c.released_index.is_(None))
        return self._all(query)

    # -- what an erasure reads -----------------------------------------------------------------------
    def exports_with(self) -> list[dict[str, Any]]:
        """Every export record (the packages that already left)."""
        return self._all(sa.select(exports).order_by(exports.c.created_at))

    def ledger_rows(self, subject_keys: Iterable[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for chunk in _chunks(list(subject_keys)):
            out += self._all(sa.select(ledger_subjects).where(ledger_subjects.c.subject_key.in_(chunk)))
        return out

    def ledger_rows_of(self, conn: Connection, export_id: str) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(ledger_subjects).where(ledger_subjects.c.export_id == export_id))]

    # -- removal (inside the erasure's transaction) --------------------------------------------------------
    @staticmethod
    def secure_delete(conn: Connection) -> None:
        """Overwrite deleted rows with zeros in this connection (SQLite); other databases ignore it."""
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA secure_delete=ON")

    def remove_assets(self, conn: Connection, asset_ids: Sequence[str]) -> int:
        """Delete assets with their classifications and subject rows; children before their parents."""
        removed = 0
        ids = list(asset_ids)
        for chunk in _chunks(ids):
            conn.execute(sa.delete(asset_subjects).where(asset_subjects.c.asset_id.in_(chunk)))
            conn.execute(sa.delete(classifications).where(classifications.c.asset_id.in_(chunk)))
        # one statement for the whole set: SQLite checks the parent_id references at its end
        for chunk in [sorted(set(ids))]:
            removed += conn.execute(sa.delete(assets).where(assets.c.id.in_(chunk))).rowcount or 0
        return removed

    def remove_quarantine(self, conn: Connection, ids: Sequence[str]) -> int:
        removed = 0
        for chunk in _chunks(list(ids)):
            removed += conn.execute(sa.delete(quarantine).where(quarantine.c.id.in_(chunk))).rowcount or 0
        return removed

    def tombstone_ledger(self, conn: Connection, subject_keys: Iterable[str]) -> list[str]:
        """Replace erased people in the ledger with random tombstones (the yearly counts stay right);
        returns the exports whose rows changed."""
        changed: set[str] = set()
        for chunk in _chunks(list(subject_keys)):
            rows = conn.execute(sa.select(ledger_subjects).where(ledger_subjects.c.subject_key.in_(chunk))).all()
            for r in rows:
                row = dict(r._mapping)
                conn.execute(sa.update(ledger_subjects).where(
                    ledger_subjects.c.exporter == row["exporter"], ledger_subjects.c.year == row["year"],
                    ledger_subjects.c.category == row["category"], ledger_subjects.c.subject_key == row["subject_key"],
                ).values(subject_key=TOMBSTONE + secrets.token_hex(16)))
                changed.add(row["export_id"])
        return sorted(changed)

    def scrub_wal(self) -> None:
        """Checkpoint the write-ahead log into the database and truncate it (SQLite)."""
        if self.catalog.engine.dialect.name != "sqlite":
            return
        raw = self.catalog.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.close()
        finally:
            raw.close()
