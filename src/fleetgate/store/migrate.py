"""The one place a catalog's schema is created or upgraded: Alembic migrations under a lock.

Opening a catalog checks its revision; only when it is behind does it take the catalog's write
lock (SQLite: the BEGIN IMMEDIATE of every writer; PostgreSQL: the advisory lock every writer
takes) and run the migrations in that one transaction. Two processes opening a new or an old
catalog at once therefore queue: the first migrates, the second finds the schema current. A
catalog made before migrations existed (tables, no `alembic_version`) is upgraded in place and
says so once, on the `fleetgate.store` logger (the CLI prints it as a note).
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("fleetgate.store")

MIGRATIONS = Path(__file__).with_name("migrations")
# Every write transaction on PostgreSQL takes this transaction-scoped advisory lock first, the
# counterpart of SQLite's BEGIN IMMEDIATE: writers (and migrations) queue instead of racing.
WRITE_LOCK_KEY = 0x666C6774  # "flgt"
# The execution option that marks a write transaction: on SQLite its BEGIN is BEGIN IMMEDIATE
# (store.catalog's begin hook), so the write lock is taken up front; other transactions stay deferred.
WRITE_TRANSACTION = "fleetgate_write_transaction"


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    """The revision the code expects."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def take_write_lock(conn: Connection) -> None:
    """Serialize writers on PostgreSQL (SQLite writers already hold the write lock from BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})


def upgrade(engine: Engine, name: str) -> str | None:
    """Bring the catalog to the head revision; returns what was done (None when it was current)."""
    head = head_revision()
    with engine.connect() as conn:
        if current_revision(conn) == head:
            return None
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_TRANSACTION: True})
        with conn.begin():
            take_write_lock(conn)
            before = current_revision(conn)  # again, under the lock: another process may have migrated
            if before == head:
                return None
            legacy = before is None and sa.inspect(conn).has_table("assets")
            command.upgrade(_config(conn), "head")
    if before is None and not legacy:
        return None  # a new catalog: nothing to tell
    what = (f"catalog {name}: migrated a catalog made before schema migrations to revision {head}"
            if legacy else f"catalog {name}: migrated the schema from revision {before} to {head}")
    log.warning(what)
    return what
