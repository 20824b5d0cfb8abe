"""Data-subject rights (issue 17): subject requests, erasure records and legal holds.

A catalog made by a fleetgate that had these tables but not migrations keeps them: only missing
tables are created. (The keyring is a database of its own in the region's key folder.)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

rights = sa.MetaData()

subject_requests = sa.Table(
    "subject_requests",
    rights,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("ref", sa.String(128), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("identifier_kind", sa.String(16), nullable=False),
    sa.Column("identifier_salt", sa.LargeBinary),
    sa.Column("identifier_digest", sa.String(80), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_by", sa.Date, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("log_index", sa.BigInteger, nullable=False),
    sa.Column("result", sa.JSON, nullable=False, default=dict),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

erasures = sa.Table(
    "erasures",
    rights,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("cause", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(40)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("log_index", sa.BigInteger, nullable=False),
    sa.Column("done_index", sa.BigInteger),
    sa.Column("plan", sa.JSON, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

legal_holds = sa.Table(
    "legal_holds",
    rights,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("asset_id", sa.String(40), nullable=False, index=True),
    sa.Column("ref", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("placed_by", sa.String(128), nullable=False),
    sa.Column("placed_index", sa.BigInteger, nullable=False),
    sa.Column("released_by", sa.String(128)),
    sa.Column("released_index", sa.BigInteger),
)


def upgrade() -> None:
    rights.create_all(op.get_bind(), checkfirst=True)
