"""The SQL of the `principals` table: a cache of the people the log registers, rebuilt and checked from it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetgate.store.catalog import Catalog
from fleetgate.store.schema import principals


class PrincipalRepository:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def insert(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(sa.insert(principals).values(**row))

    def mark_removed(self, conn: Connection, keyid: str, index: int, by: str) -> None:
        conn.execute(sa.update(principals).where(principals.c.keyid == keyid)
                     .values(removed_index=index, removed_by=by))

    def all(self) -> list[dict[str, Any]]:
        with self.catalog.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(principals).order_by(principals.c.added_index))]
