"""The SQL of the `plans` table: plans made over HTTP, as drafts and once their author signed them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetgate.store.catalog import Catalog, _row_dict
from fleetgate.store.schema import plans


class PlanRepository:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def save_draft(self, row: dict[str, Any]) -> None:
        """A draft replaces an earlier draft of the same plan id (the same body), never a signed plan."""
        with self.catalog.transaction() as conn:
            existing = conn.execute(sa.select(plans.c.status).where(plans.c.plan_id == row["plan_id"])).first()
            if existing is None:
                conn.execute(sa.insert(plans).values(**row, status="draft"))

    def mark_signed(self, conn: Connection, plan_id: str, body: str, statement: str, index: int) -> None:
        conn.execute(sa.update(plans).where(plans.c.plan_id == plan_id)
                     .values(status="signed", body=body, statement=statement, log_index=index))

    def bodies(self) -> list[tuple[str, str]]:
        """(plan id, body) of every plan: what an erasure scans for a person's files."""
        with self.catalog.snapshot() as conn:
            return [(r.plan_id, r.body) for r in conn.execute(sa.select(plans.c.plan_id, plans.c.body))]

    def remove(self, conn: Connection, plan_ids: list[str]) -> int:
        """Withdraw plans (an erasure of a person they list); their decisions stay in the log."""
        if not plan_ids:
            return 0
        return conn.execute(sa.delete(plans).where(plans.c.plan_id.in_(plan_ids))).rowcount

    def get(self, plan_id: str) -> dict[str, Any] | None:
        with self.catalog.snapshot() as conn:
            row = conn.execute(sa.select(plans).where(plans.c.plan_id == plan_id)).first()
        return _row_dict(row) if row else None

    def page(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        query = (sa.select(plans.c.plan_id, plans.c.status, plans.c.author, plans.c.destination, plans.c.log_index,
                           plans.c.created_at).order_by(plans.c.created_at.desc()).limit(limit).offset(offset))
        with self.catalog.snapshot() as conn:
            return [_row_dict(r) for r in conn.execute(query)]
