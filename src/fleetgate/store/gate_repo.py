"""The SQL of the export gate's records: signed approvals and export records."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetgate.store.catalog import Catalog, _row_dict
from fleetgate.store.schema import export_approvals, exports


class GateRecords:
    """Approvals and exports of one region's catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def add_approval(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(sa.insert(export_approvals).values(**row))

    def approvals(self, plan_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(export_approvals).order_by(export_approvals.c.log_index)
        if plan_id is not None:
            query = query.where(export_approvals.c.plan_id == plan_id)
        with self.catalog.connect() as conn:
            return [_row_dict(r) for r in conn.execute(query)]

    def export(self, package_id: str, conn: Connection | None = None) -> dict[str, Any] | None:
        query = sa.select(exports).where(exports.c.package_id == package_id)
        if conn is not None:
            row = conn.execute(query).first()
        else:
            with self.catalog.connect() as own:
                row = own.execute(query).first()
        return _row_dict(row) if row else None

    def add_export(self, conn: Connection, row: dict[str, Any]) -> None:
        conn.execute(sa.insert(exports).values(**row))

    def mark_published(self, conn: Connection, package_id: str, at: Any, index: int) -> None:
        conn.execute(sa.update(exports).where(exports.c.package_id == package_id)
                     .values(status="published", published_at=at, publish_index=index))

    def exports(self) -> list[dict[str, Any]]:
        with self.catalog.connect() as conn:
            return [_row_dict(r) for r in conn.execute(sa.select(exports).order_by(exports.c.created_at))]
