"""The SQL of what people browse: assets with their outcome, paged and filtered; quarantine; log pages.

Read-only queries for the service layer's `Inventory` and `Audit` (the API and the dashboard), kept
to one query per page so that many readers stay cheap. Each read runs in a deferred (snapshot)
transaction, so readers never queue behind a writer's `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from fleetgate.store.catalog import Catalog, _row_dict
from fleetgate.store.schema import assets, classifications, exports, ledger_subjects, log_entries, quarantine

ASSET_COLUMNS = (assets.c.id, assets.c.kind, assets.c.region, assets.c.sha256, assets.c.bytes, assets.c.file_format,
                 assets.c.vehicle, assets.c.clip_id, assets.c.t_start, assets.c.t_end, assets.c.source_drop,
                 assets.c.source_path, assets.c.parent_id, assets.c.created_at)


class Browse:
    """Paged, filtered reads of one region's catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def _asset_filter(self, query: sa.Select, region: str | None, kind: str | None, vehicle: str | None,
                      outcome: str | None, drop: str | None) -> sa.Select:
        if region:
            query = query.where(assets.c.region == region)
        if kind:
            query = query.where(assets.c.kind == kind)
        if vehicle:
            query = query.where(assets.c.vehicle == vehicle)
        if drop:
            query = query.where(assets.c.source_drop == drop)
        if outcome == "unclassified":
            query = query.where(classifications.c.asset_id.is_(None))
        elif outcome:
            query = query.where(classifications.c.outcome == outcome)
        return query

    def assets(self, *, region: str | None = None, kind: str | None = None, vehicle: str | None = None,
               outcome: str | None = None, drop: str | None = None, limit: int = 50,
               offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """(total matching, one page of assets with their outcome), oldest first."""
        joined = assets.outerjoin(classifications, classifications.c.asset_id == assets.c.id)
        rows = self._asset_filter(sa.select(*ASSET_COLUMNS, classifications.c.outcome, classifications.c.policy_kind,
                                            classifications.c.anonymized).select_from(joined),
                                  region, kind, vehicle, outcome, drop)
        rows = rows.order_by(assets.c.created_at, assets.c.id).limit(limit).offset(offset)
        count = self._asset_filter(sa.select(sa.func.count()).select_from(joined), region, kind, vehicle, outcome,
                                   drop)
        with self.catalog.snapshot() as conn:
            total = conn.execute(count).scalar_one()
            return total, [_row_dict(r) for r in conn.execute(rows)]

    def asset(self, asset_id: str) -> dict[str, Any] | None:
        """One asset (all columns) by id or unique id prefix, with its classification row under "classification"."""
        with self.catalog.snapshot() as conn:
            row = conn.execute(sa.select(assets).where(assets.c.id == asset_id)).first()
            if row is None and len(asset_id) >= 6:
                rows = conn.execute(sa.select(assets).where(assets.c.id.like(f"{asset_id}%")).limit(2)).all()
                row = rows[0] if len(rows) == 1 else None
            if row is None:
                return None
            cls = conn.execute(sa.select(classifications).where(classifications.c.asset_id == row.id)).first()
        return _row_dict(row) | {"classification": _row_dict(cls) if cls else None}

    def export_count(self) -> int:
        with self.catalog.snapshot() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(exports)).scalar_one()

    def children(self, asset_id: str) -> list[dict[str, Any]]:
        """Assets derived from `asset_id` (de-identified copies, checkpoints)."""
        joined = assets.outerjoin(classifications, classifications.c.asset_id == assets.c.id)
        query = (sa.select(*ASSET_COLUMNS, classifications.c.outcome, classifications.c.policy_kind,
                           classifications.c.anonymized).select_from(joined)
                 .where(assets.c.parent_id == asset_id).order_by(assets.c.created_at))
        with self.catalog.snapshot() as conn:
            return [_row_dict(r) for r in conn.execute(query)]

    def outcomes(self, region: str | None = None) -> dict[str, int]:
        """Assets per outcome (decided alone); `unclassified` for those never classified."""
        joined = assets.outerjoin(classifications, classifications.c.asset_id == assets.c.id)
        query = sa.select(classifications.c.outcome, sa.func.count()).select_from(joined)
        if region:
            query = query.where(assets.c.region == region)
        with self.catalog.snapshot() as conn:
            return {(o or "unclassified"): n for o, n in conn.execute(query.group_by(classifications.c.outcome))}

    def quarantine(self, *, region: str | None = None, limit: int = 50,
                   offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        query = sa.select(quarantine)
        count = sa.select(sa.func.count()).select_from(quarantine)
        if region:
            query, count = query.where(quarantine.c.region == region), count.where(quarantine.c.region == region)
        query = query.order_by(quarantine.c.created_at.desc(), quarantine.c.id).limit(limit).offset(offset)
        with self.catalog.snapshot() as conn:
            return conn.execute(count).scalar_one(), [_row_dict(r) for r in conn.execute(query)]

    def ledger_years(self) -> list[dict[str, Any]]:
        """Distinct people exported per exporter, year and category (pi / spi)."""
        query = (sa.select(ledger_subjects.c.exporter, ledger_subjects.c.year, ledger_subjects.c.category,
                           sa.func.count().label("subjects"))
                 .group_by(ledger_subjects.c.exporter, ledger_subjects.c.year, ledger_subjects.c.category)
                 .order_by(ledger_subjects.c.year, ledger_subjects.c.exporter))
        with self.catalog.snapshot() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def version(self) -> int:
        """The index of the log's last entry (-1 when empty): every fact row is written in the same transaction
        as its log entry, so a view of the fact tables is current exactly as long as this does not change."""
        with self.catalog.snapshot() as conn:
            value = conn.execute(sa.select(sa.func.max(log_entries.c.idx))).scalar_one()
        return -1 if value is None else int(value)

    def log_size(self) -> int:
        with self.catalog.snapshot() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(log_entries)).scalar_one()

    def log_page(self, *, start: int, limit: int) -> list[tuple[int, str]]:
        """Entries start .. start+limit-1 as (index, canonical text)."""
        query = (sa.select(log_entries.c.idx, log_entries.c.entry)
                 .where(log_entries.c.idx >= start, log_entries.c.idx < start + limit).order_by(log_entries.c.idx))
        with self.catalog.snapshot() as conn:
            return [(int(i), t) for i, t in conn.execute(query)]

    def log_of_type(self, kind: str, *, limit: int) -> list[tuple[int, str]]:
        """The latest `limit` entries of one type, newest first (canonical JSON starts with sorted keys)."""
        pattern = f'%"type":"{kind}"%'
        query = (sa.select(log_entries.c.idx, log_entries.c.entry).where(log_entries.c.entry.like(pattern))
                 .order_by(log_entries.c.idx.desc()).limit(limit))
        with self.catalog.snapshot() as conn:
            return [(int(i), t) for i, t in conn.execute(query)]
