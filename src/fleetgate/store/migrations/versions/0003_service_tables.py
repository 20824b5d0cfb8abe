"""The service's tables (issue 16): API credentials and plans made over HTTP.

A catalog made by a fleetgate that already had the service but not migrations (its `create_all`
made these two tables) keeps them: only missing tables are created.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

service = sa.MetaData()

credentials = sa.Table(
    "credentials",
    service,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("keyid", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("hash", sa.Text, nullable=False),
    sa.Column("issued_by", sa.String(128), nullable=False),
    sa.Column("issued_index", sa.BigInteger, nullable=False),
    sa.Column("revoked_index", sa.BigInteger),
    sa.Column("revoked_by", sa.String(128)),
)

plans = sa.Table(
    "plans",
    service,
    sa.Column("plan_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("statement", sa.Text, nullable=False),
    sa.Column("log_index", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def upgrade() -> None:
    service.create_all(op.get_bind(), checkfirst=True)
