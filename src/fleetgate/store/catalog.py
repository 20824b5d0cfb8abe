"""The catalog: every asset of a region, its ingest runs and its quarantine, in SQLAlchemy Core.

SQLite (WAL mode) is the embedded default; the same tables work on PostgreSQL from a URL. The
schema comes from Alembic migrations run when a catalog is opened (`store.migrate`). Writers
are serialized (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock), so
the log's next index is read and taken by one writer at a time. Every database error reaches
the caller as one line without SQL: `ConflictError` or `StoreError`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from fleetgate.errors import StoreError
from fleetgate.store.migrate import WRITE_TRANSACTION, take_write_lock, upgrade
from fleetgate.store.schema import assets, ingest_runs, metadata, quarantine


class ConflictError(StoreError):
    """A concurrent writer inserted the same key first; the transaction rolled back and may be retried."""


def _first_line(exc: BaseException | None) -> str:
    # drivers put the failing statement on later lines; the user gets the reason only
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's one-line reason, without the statement SQLAlchemy appends ("[SQL: ...]")."""
    orig = getattr(exc, "orig", None)
    line = _first_line(orig) if orig is not None else _first_line(exc).split(" [SQL:")[0]
    return f"{type(orig or exc).__name__}: {line}"


def display_url(url: str) -> str:
    """A catalog URL fit for a message: the password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url.split("@")[-1]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random identifier with a readable prefix (`run_…`, `q_…`)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def quarantine_id(row: dict[str, Any]) -> str:
    """A quarantined item's id: one per region, drop, path and reason, as the catalog keeps them,
    so a rerun (or another engine) names the same item the same way."""
    key = "\0".join(str(row[k]) for k in ("region", "source_drop", "source_path", "reason"))
    return "q_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite starts transactions only before writes, so a "read transaction" would see each
    # statement's own moment; take BEGIN over (below) so a snapshot is one snapshot.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # the busy timeout first: switching a new database to WAL takes a lock another process may hold
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # a catalog of a million assets has index pages beyond SQLite's 2 MiB default cache: keep the hot ones
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything fleetgate stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row_dict(row: sa.Row) -> dict[str, Any]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = _aware(value)
    return out


def _sqlite_begin(conn: Connection) -> None:
    # Write transactions (Catalog.transaction) take the write lock up front (BEGIN IMMEDIATE): two
    # appenders then queue on the busy timeout instead of both reading the log's last index and one
    # failing at commit. Every other transaction, reads included, stays deferred and never waits.
    writer = conn.get_execution_options().get(WRITE_TRANSACTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


class Catalog:
    """A region's catalog of assets, ingest runs and quarantined items."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.name = display_url(url)
        try:
            self.engine = engine or sa.create_engine(url)
            if self.engine.dialect.name == "sqlite":
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
                sa.event.listen(self.engine, "begin", _sqlite_begin)
            # the one place the schema is created or upgraded; says so when it migrated an old catalog
            self.migration = upgrade(self.engine, self.name)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"catalog {self.name}: cannot open: {_reason(exc)}") from exc
        except ModuleNotFoundError as exc:  # a URL whose driver is not installed (postgresql+psycopg)
            raise StoreError(f"catalog {self.name}: cannot open: the driver {exc.name} is not installed "
                             "(pip install 'fleetgate[postgres]')") from exc

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.IntegrityError as exc:
            raise ConflictError(f"catalog {self.name}: {_first_line(exc.orig)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"catalog {self.name}: {_reason(exc)}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction; everything inside commits together or not at all.

        Writers queue for the catalog's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory
        lock). A database error reaches the caller as one line without SQL: `ConflictError` when a
        concurrent writer took the same key first (retry), `StoreError` otherwise."""
        with self._mapped(), self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_TRANSACTION: True})
            with conn.begin():
                take_write_lock(conn)
                yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads outside a transaction the caller holds; errors as one line."""
        with self._mapped(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction: every read through it sees the catalog as of one moment, so the
        log and the tables it vouches for are compared as they were together."""
        with self._mapped(), self.engine.connect() as conn:
            if self.engine.dialect.name != "sqlite":  # SQLite's deferred BEGIN is already a snapshot in WAL
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def rows(self, table: str, conn: Connection | None = None, batch: int = 5000) -> Iterator[dict[str, Any]]:
        """Every row of a table, streamed, with timezone-aware datetimes (for `audit verify`)."""
        query = sa.select(metadata.tables[table])
        if conn is not None:
            with self._mapped():
                for row in conn.execution_options(yield_per=batch).execute(query):
                    yield _row_dict(row)
            return
        with self.connect() as own:
            for row in own.execution_options(yield_per=batch).execute(query):
                yield _row_dict(row)

    # -- assets -------------------------------------------------------------------------------
    def existing_asset_ids(self, ids: Iterable[str], conn: Connection | None = None) -> set[str]:
        """The subset of `ids` already in the catalog (inside the caller's transaction when given)."""
        ids = sorted(set(ids))
        if conn is None:
            with self.connect() as own:
                return self.existing_asset_ids(ids, own)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found.update(conn.execute(sa.select(assets.c.id).where(assets.c.id.in_(chunk))).scalars())
        return found

    def insert_assets(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert asset rows inside a caller's transaction."""
        if rows:
            conn.execute(assets.insert(), list(rows))

    def get_asset(self, asset_id: str) -> dict[str, Any] | None:
        """One asset by id, or by a unique id prefix."""
        with self.connect() as conn:
            row = conn.execute(sa.select(assets).where(assets.c.id == asset_id)).first()
            if row is None:
                rows = conn.execute(sa.select(assets).where(assets.c.id.like(f"{asset_id}%")).limit(2)).all()
                row = rows[0] if len(rows) == 1 else None
        return _row_dict(row) if row else None

    def list_assets(
        self,
        region: str | None = None,
        kind: str | None = None,
        vehicle: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Assets, filtered, oldest first."""
        query = sa.select(assets).order_by(assets.c.created_at, assets.c.source_path)
        if region:
            query = query.where(assets.c.region == region)
        if kind:
            query = query.where(assets.c.kind == kind)
        if vehicle:
            query = query.where(assets.c.vehicle == vehicle)
        if limit:
            query = query.limit(limit)
        with self.connect() as conn:
            return [_row_dict(r) for r in conn.execute(query)]

    def stats(self, region: str | None = None) -> list[dict[str, Any]]:
        """Count and bytes of assets per region and kind."""
        query = (
            sa.select(
                assets.c.region,
                assets.c.kind,
                sa.func.count().label("assets"),
                sa.func.sum(assets.c.bytes).label("bytes"),
                sa.func.count(sa.distinct(assets.c.vehicle)).label("vehicles"),
            )
            .group_by(assets.c.region, assets.c.kind)
            .order_by(assets.c.region, assets.c.kind)
        )
        if region:
            query = query.where(assets.c.region == region)
        with self.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- runs and quarantine ------------------------------------------------------------------
    def start_run(self, region: str, source_drop: str, drop_path: str, at: datetime | None = None,
                  run_id: str | None = None) -> str:
        """Record the start of an ingest run and return its id (a new one unless given)."""
        run_id = run_id or new_id("run")
        with self.transaction() as conn:
            conn.execute(
                ingest_runs.insert().values(
                    id=run_id, region=region, source_drop=source_drop, drop_path=drop_path,
                    started_at=at or utcnow(), status="running",
                )
            )
        return run_id

    def finish_run(self, conn: Connection, run_id: str, at: datetime | None = None, **counts: Any) -> None:
        """Close an ingest run with its counts, inside the caller's transaction."""
        conn.execute(
            ingest_runs.update().where(ingest_runs.c.id == run_id).values(finished_at=at or utcnow(), **counts)
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One ingest run by id, or None."""
        with self.connect() as conn:
            row = conn.execute(sa.select(ingest_runs).where(ingest_runs.c.id == run_id)).first()
        return _row_dict(row) if row else None

    def has_run_of(self, region: str, source_drop: str) -> bool:
        """Whether any ingest run of this drop was started in the region (a rerun resumes it)."""
        query = sa.select(ingest_runs.c.id).where(ingest_runs.c.region == region,
                                                  ingest_runs.c.source_drop == source_drop).limit(1)
        with self.connect() as conn:
            return conn.execute(query).first() is not None

    def run_landed(self, run_id: str) -> tuple[int, int]:
        """(assets, bytes) that ingest run `run_id` catalogued, over all its attempts."""
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(assets.c.bytes), 0)).where(
            assets.c.ingest_run == run_id)
        with self.connect() as conn:
            count, size = conn.execute(query).one()
        return int(count), int(size)

    def run_quarantine(self, run_id: str) -> list[dict[str, Any]]:
        """The items ingest run `run_id` quarantined."""
        query = sa.select(quarantine).where(quarantine.c.ingest_run == run_id).order_by(quarantine.c.source_path)
        with self.connect() as conn:
            return [_row_dict(r) for r in conn.execute(query)]

    def list_runs(self, region: str | None = None) -> list[dict[str, Any]]:
        """Ingest runs, newest first."""
        query = sa.select(ingest_runs).order_by(ingest_runs.c.started_at.desc())
        if region:
            query = query.where(ingest_runs.c.region == region)
        with self.connect() as conn:
            return [_row_dict(r) for r in conn.execute(query)]

    def add_quarantine(self, conn: Connection, rows: Sequence[dict[str, Any]],
                       at: datetime | None = None) -> list[dict[str, Any]]:
        """Record quarantined items; an item already recorded for the same drop and reason is skipped.

        Returns the rows inserted, with their ids and times, so the caller can log them."""
        added: list[dict[str, Any]] = []
        at = at or utcnow()
        for row in rows:
            exists = conn.execute(
                sa.select(quarantine.c.id).where(
                    quarantine.c.region == row["region"],
                    quarantine.c.source_drop == row["source_drop"],
                    quarantine.c.source_path == row["source_path"],
                    quarantine.c.reason == row["reason"],
                )
            ).first()
            if exists is None:
                full = {"id": quarantine_id(row), "created_at": at, **row}
                conn.execute(quarantine.insert().values(**full))
                added.append(full)
        return added

    def list_quarantine(self, region: str | None = None) -> list[dict[str, Any]]:
        """Quarantined items, oldest first."""
        query = sa.select(quarantine).order_by(quarantine.c.created_at, quarantine.c.source_path)
        if region:
            query = query.where(quarantine.c.region == region)
        with self.connect() as conn:
            return [_row_dict(r) for r in conn.execute(query)]

