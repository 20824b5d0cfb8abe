"""Tables beside the catalog: classifications, per-asset subjects and the data-subject ledger.

The ledger counts distinct people exported per exporter and calendar year, split into PI and
SPI. People are identified by keyed pseudonyms (never raw identifiers), so a person exported
twice counts once, and a rerun of the same export adds nothing. Inserts ignore rows that are
already present, so concurrent exports can only add, never lose, a count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from fleetgate.store.catalog import Catalog, _row_dict, utcnow
from fleetgate.store.schema import asset_subjects, assets, classifications, ledger_subjects


def _insert_ignore(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dialect = conn.dialect.name
    if dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - other databases are not supported
        raise NotImplementedError(dialect)
    total = 0
    for start in range(0, len(rows), 5000):
        total += conn.execute(stmt, list(rows[start : start + 5000])).rowcount or 0
    return total


SUMMARY_COLUMNS = ("asset_id", "policy_kind", "features", "subjects", "anonymized", "pseudonymized")


class Ledger:
    """The data-subject ledger and classification records of one region's catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- ledger ------------------------------------------------------------------------------
    def counts(self, exporter: str, year: int, conn: Connection | None = None) -> dict[str, int]:
        """Distinct people exported by `exporter` in `year`: {"pi": n, "spi": m}."""
        query = (sa.select(ledger_subjects.c.category, sa.func.count())
                 .where(ledger_subjects.c.exporter == exporter, ledger_subjects.c.year == year)
                 .group_by(ledger_subjects.c.category))
        if conn is None:
            with self.catalog.connect() as own:
                rows = own.execute(query).all()
        else:
            rows = conn.execute(query).all()
        out = {"pi": 0, "spi": 0}
        out.update({category: int(n) for category, n in rows})
        return out

    def record(self, conn: Connection, exporter: str, year: int, export_id: str,
               subjects: Iterable[tuple[str, str]], at: datetime | None = None) -> dict[str, int]:
        """Add (subject_key, category) pairs; returns how many people were new per category."""
        at = at or utcnow()
        rows = [{"exporter": exporter, "year": year, "category": category, "subject_key": key,
                 "export_id": export_id, "recorded_at": at} for key, category in set(subjects)]
        delta = {"pi": 0, "spi": 0}
        for category in delta:
            delta[category] = _insert_ignore(conn, ledger_subjects, [r for r in rows if r["category"] == category])
        return delta

    def rows_of_export(self, conn: Connection, export_id: str) -> list[dict[str, Any]]:
        """The ledger rows one export added (the people it was the first to export that year)."""
        query = sa.select(ledger_subjects).where(ledger_subjects.c.export_id == export_id)
        return [dict(r._mapping) for r in conn.execute(query)]

    # -- classification ----------------------------------------------------------------------
    def save_classifications(self, conn: Connection,
                             batch: Sequence[tuple[dict[str, Any], Iterable[tuple[str, str]]]]) -> None:
        """Replace the classifications and subject keys of a batch of assets (a few statements per batch,
        not per asset). An asset twice in the batch keeps its last classification."""
        batch = list({row["asset_id"]: (row, subjects) for row, subjects in batch}.values())
        ids = [row["asset_id"] for row, _ in batch]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            conn.execute(sa.delete(asset_subjects).where(asset_subjects.c.asset_id.in_(chunk)))
            conn.execute(sa.delete(classifications).where(classifications.c.asset_id.in_(chunk)))
        if batch:
            conn.execute(sa.insert(classifications), [row for row, _ in batch])
        _insert_ignore(conn, asset_subjects, [{"asset_id": row["asset_id"], "subject_key": k, "category": c}
                                              for row, subjects in batch for k, c in set(subjects)])

    def unclassified_assets(self, region: str, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Assets of a region without a classification, oldest first (an anti-join in SQL); among `ids` only
        when given, looked up by primary key (the region checked here: an index on it would make the
        database read every asset), so classifying what one ingest landed costs the same in any catalog."""
        unclassified = (sa.select(assets).outerjoin(classifications, classifications.c.asset_id == assets.c.id)
                        .where(classifications.c.asset_id.is_(None)))
        with self.catalog.connect() as conn:
            if ids is None:
                query = unclassified.where(assets.c.region == region).order_by(assets.c.created_at,
                                                                              assets.c.source_path)
                return [_row_dict(r) for r in conn.execute(query)]
            wanted, out = sorted(set(ids)), []
            for start in range(0, len(wanted), 500):
                chunk = unclassified.where(assets.c.id.in_(wanted[start:start + 500]))
                out += [_row_dict(r) for r in conn.execute(chunk)]
        return sorted((a for a in out if a["region"] == region), key=lambda a: (a["created_at"], a["source_path"]))

    def classification(self, asset_id: str) -> dict[str, Any] | None:
        with self.catalog.connect() as conn:
            row = conn.execute(sa.select(classifications).where(classifications.c.asset_id == asset_id)).first()
        return dict(row._mapping) if row else None

    def classifications(self) -> list[dict[str, Any]]:
        with self.catalog.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(classifications))]

    def classification_summaries(self) -> list[dict[str, Any]]:
        """What the gate decides on (kind, features, flags, subject count), without the evidence and
        the decision each classification stores: a plan over every asset reads nothing more."""
        columns = [classifications.c[name] for name in SUMMARY_COLUMNS]
        with self.catalog.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(*columns))]

    def subjects_of(self, asset_ids: Iterable[str]) -> list[tuple[str, str]]:
        """(subject_key, category) of the given assets, across them (duplicates removed)."""
        ids = list(asset_ids)
        out: set[tuple[str, str]] = set()
        with self.catalog.connect() as conn:
            for start in range(0, len(ids), 500):
                query = sa.select(asset_subjects.c.subject_key, asset_subjects.c.category).where(
                    asset_subjects.c.asset_id.in_(ids[start : start + 500]))
                out.update((k, c) for k, c in conn.execute(query))
        return sorted(out)
