"""Catalog tables of the export gate: approvals and exports."""

from __future__ import annotations

import sqlalchemy as sa

from fleetgate.store.catalog import metadata

export_approvals = sa.Table(
    "export_approvals",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("plan_id", sa.String(64), nullable=False),
    sa.Column("ref", sa.String(128), nullable=False),  # the filing number (CAC assessment, SCC filing)
    sa.Column("approved_by", sa.String(128), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("destination_country", sa.String(2), nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("kinds", sa.JSON, nullable=False),
    sa.Column("outcomes", sa.JSON, nullable=False),
    sa.Column("max_subjects", sa.BigInteger, nullable=False),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_until", sa.Date, nullable=False),
    sa.Column("log_index", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

exports = sa.Table(
    "exports",
    metadata,
    sa.Column("package_id", sa.String(64), primary_key=True),
    sa.Column("plan_id", sa.String(64), nullable=False),
    sa.Column("region", sa.String(64), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # committed | published
    sa.Column("log_index", sa.BigInteger, nullable=False),
    sa.Column("entry", sa.Text, nullable=False),  # the canonical export log entry
    sa.Column("assets", sa.JSON, nullable=False),
    sa.Column("approvals", sa.JSON, nullable=False),
    sa.Column("approval_subjects", sa.JSON, nullable=False),  # {approval id: subjects used}
    sa.Column("ledger_delta", sa.JSON, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
)

GATE_TABLES = [export_approvals, exports]
