"""The SQL of the `credentials` table: API tokens and dashboard passwords, as argon2 hashes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetgate.store.catalog import Catalog, _row_dict
from fleetgate.store.schema import credentials, principals


class CredentialRepository:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def insert(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(sa.insert(credentials).values(**row))

    def mark_revoked(self, conn: Connection, credential_id: str, index: int, by: str) -> None:
        conn.execute(sa.update(credentials).where(credentials.c.id == credential_id)
                     .values(revoked_index=index, revoked_by=by))

    def get(self, credential_id: str) -> dict[str, Any] | None:
        with self.catalog.snapshot() as conn:
            row = conn.execute(sa.select(credentials).where(credentials.c.id == credential_id)).first()
        return _row_dict(row) if row else None

    def with_principal(self, credential_id: str) -> dict[str, Any] | None:
        """A live credential and the principal it belongs to (name, role, removed), in one query."""
        query = (sa.select(credentials.c.id, credentials.c.kind, credentials.c.hash, credentials.c.keyid,
                           credentials.c.revoked_index, principals.c.name, principals.c.role,
                           principals.c.removed_index.label("principal_removed"))
                 .join(principals, principals.c.keyid == credentials.c.keyid)
                 .where(credentials.c.id == credential_id))
        with self.catalog.snapshot() as conn:
            row = conn.execute(query).first()
        return dict(row._mapping) if row else None

    def passwords_of(self, name: str) -> list[dict[str, Any]]:
        """The live password credentials of the principal called `name`."""
        query = (sa.select(credentials).where(credentials.c.name == name, credentials.c.kind == "password",
                                              credentials.c.revoked_index.is_(None))
                 .order_by(credentials.c.issued_index.desc()))
        with self.catalog.snapshot() as conn:
            return [_row_dict(r) for r in conn.execute(query)]

    def all(self) -> list[dict[str, Any]]:
        with self.catalog.snapshot() as conn:
            return [_row_dict(r) for r in conn.execute(sa.select(credentials).order_by(credentials.c.issued_index))]
