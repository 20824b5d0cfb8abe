"""What changed in a catalog since the last look: commits by anyone, and the types of the new log entries.

A server that keeps rendered views must know on every request whether a commit since a view was
computed could have changed it, commits of other processes included (the ingest worker, the CLI).
SQLite answers "has any other connection committed?" with `PRAGMA data_version` on a connection of
our own: a read of the WAL index in shared memory, a few microseconds. Only when it moved are the new
log entries' types read, by index range from the last one seen. Every fact row is written in the same
transaction as its log entry, so the types appended say which tables can have changed. Other
databases have no such counter: there each look reads the new entries and counts as a commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from fleetgate.errors import StoreError
from fleetgate.store.catalog import Catalog
from fleetgate.store.schema import log_checkpoints, log_entries

NO_TYPE = ""  # entries of logs written before the `kind` column: their type is unknown


@dataclass(frozen=True)
class Changes:
    """The catalog as of one look: `commits` moves with every commit seen; `last` is each entry type's last
    index; `checkpoint` the size and note length of the latest stored checkpoint (a row no entry records; a
    witness's cosignature lengthens its note)."""

    commits: int
    size: int
    last: dict[str, int] = field(default_factory=dict)
    checkpoint: tuple[int, int] = (-1, 0)

    def version(self, unaffected: frozenset[str] = frozenset()) -> int:
        """The index of the last entry whose type is not in `unaffected` (-1 if none): a view that only
        entries of other types can change is current as long as this is."""
        return max((i for kind, i in self.last.items() if kind not in unaffected), default=-1)

    def last_of(self, kinds: frozenset[str]) -> int:
        """The index of the last entry of one of these types (-1 if none)."""
        return max((self.last.get(kind, -1) for kind in kinds), default=-1)


class ChangeFeed:
    """Follows one catalog; `poll()` is cheap enough to call on every request."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._sqlite = catalog.engine.dialect.name == "sqlite"
        self._raw = None  # our own DBAPI connection (SQLite): data_version counts the commits of the others
        self._data_version: int | None = None
        self._changes = Changes(commits=0, size=0)

    def poll(self) -> Changes:
        with self._lock:
            if self._sqlite:
                version = self._pragma_data_version()
                if version == self._data_version:
                    return self._changes
                self._data_version = version
            self._changes = self._read_new(self._changes)
            return self._changes

    def _pragma_data_version(self) -> int:
        if self._raw is None:
            pooled = self.catalog.engine.raw_connection()  # made as the catalog makes them (its pragmas)
            self._raw = pooled.driver_connection
            pooled.detach()  # out of the pool: it stays ours
        return int(self._raw.execute("PRAGMA data_version").fetchone()[0])

    def _read_new(self, before: Changes) -> Changes:
        if not self._sqlite:
            with self.catalog.snapshot() as conn:
                return _advance(before, lambda name, *args: conn.execute(_STATEMENTS[name](*args)).all())
        raw = self._raw  # SQL text on our own connection: a few microseconds, where SQLAlchemy takes hundreds
        try:
            raw.execute("BEGIN")  # one snapshot for the size and the rows
            try:
                return _advance(before, lambda name, *args: raw.execute(_SQLITE[name], args).fetchall())
            finally:
                raw.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"catalog {self.catalog.name}: {type(exc).__name__}: {str(exc).splitlines()[0]}") \
                from exc

    def close(self) -> None:
        with self._lock:
            if self._raw is not None:
                self._raw.close()
                self._raw = None


_STATEMENTS = {
    "size": lambda: sa.select(sa.func.max(log_entries.c.idx)),
    "all": lambda: sa.select(log_entries.c.kind, sa.func.max(log_entries.c.idx)).group_by(log_entries.c.kind),
    "range": lambda start, end: sa.select(log_entries.c.kind, log_entries.c.idx).where(
        log_entries.c.idx >= start, log_entries.c.idx < end).order_by(log_entries.c.idx),
    "checkpoint": lambda: sa.select(log_checkpoints.c.size, sa.func.length(log_checkpoints.c.note))
    .order_by(log_checkpoints.c.size.desc()).limit(1),
}
_T, _IDX, _KIND = log_entries.name, log_entries.c.idx.name, log_entries.c.kind.name
_SQLITE = {
    "size": f"SELECT max({_IDX}) FROM {_T}",
    "all": f"SELECT {_KIND}, max({_IDX}) FROM {_T} GROUP BY {_KIND}",
    "range": f"SELECT {_KIND}, {_IDX} FROM {_T} WHERE {_IDX} >= ? AND {_IDX} < ? ORDER BY {_IDX}",
    "checkpoint": f"SELECT size, length(note) FROM {log_checkpoints.name} ORDER BY size DESC LIMIT 1",
}


def _advance(before: Changes, query: Callable[..., list]) -> Changes:
    """`before` moved on by the entries appended since (read with `query`, inside one snapshot)."""
    (last_index,), = query("size")
    latest = query("checkpoint")
    checkpoint = (int(latest[0][0]), int(latest[0][1])) if latest else (-1, 0)
    size = 0 if last_index is None else int(last_index) + 1
    if size < before.size:  # a smaller log (a catalog restored from a backup): start over
        before = Changes(commits=before.commits, size=0)
    if size == before.size:
        return Changes(commits=before.commits + 1, size=size, last=before.last, checkpoint=checkpoint)
    # the first look: one pass in SQL, not a row per entry
    rows = query("all") if before.size == 0 else query("range", before.size, size)
    last = dict(before.last)
    for kind, index in rows:
        last[kind or NO_TYPE] = max(int(index), last.get(kind or NO_TYPE, -1))
    return Changes(commits=before.commits + 1, size=size, last=last, checkpoint=checkpoint)
