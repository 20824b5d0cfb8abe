"""The catalog as it stood before migrations: every table `metadata.create_all` made.

Creates only the tables that are missing, so a workspace made by an older fleetgate (whose
catalog has some or all of them but no alembic_version) is brought to this baseline too.
The definitions are frozen here on purpose: later changes are later migrations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

baseline = sa.MetaData()

assets = sa.Table(
    "assets",
    baseline,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False, index=True),
    sa.Column("region", sa.String(64), nullable=False, index=True),
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("file_format", sa.String(16), nullable=False),
    sa.Column("vehicle", sa.String(17), index=True),
    sa.Column("clip_id", sa.String(128)),
    sa.Column("t_start", sa.DateTime(timezone=True)),
    sa.Column("t_end", sa.DateTime(timezone=True)),
    sa.Column("source_drop", sa.String(256)),
    sa.Column("source_path", sa.String(1024), nullable=False),
    sa.Column("parent_id", sa.String(40), sa.ForeignKey("assets.id"), nullable=True),
    sa.Column("ingest_run", sa.String(40)),
    sa.Column("tags", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The same logical file with the same bytes is one asset, whichever drop brought it.
    sa.UniqueConstraint("region", "source_path", "sha256", name="uq_asset_source"),
)

ingest_runs = sa.Table(
    "ingest_runs",
    baseline,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("region", sa.String(64), nullable=False),
    sa.Column("source_drop", sa.String(256), nullable=False),
    sa.Column("drop_path", sa.String(1024), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("files_seen", sa.Integer, nullable=False, default=0),
    sa.Column("landed", sa.Integer, nullable=False, default=0),
    sa.Column("already_present", sa.Integer, nullable=False, default=0),
    sa.Column("quarantined", sa.Integer, nullable=False, default=0),
    sa.Column("bytes_landed", sa.BigInteger, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    baseline,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("region", sa.String(64), nullable=False),
    sa.Column("ingest_run", sa.String(40), nullable=False),
    sa.Column("source_drop", sa.String(256), nullable=False),
    sa.Column("source_path", sa.String(1024), nullable=False),
    sa.Column("field", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("error_type", sa.String(64), nullable=False),
    # Digest of the quarantined bytes in the blob store's quarantine namespace; null when the item
    # had no bytes of its own to keep (a symlink pointing outside the drop).
    sa.Column("sha256", sa.String(64)),
    sa.Column("bytes", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("region", "source_drop", "source_path", "reason", name="uq_quarantine_item"),
)


classifications = sa.Table(
    "classifications",
    baseline,
    sa.Column("asset_id", sa.String(40), sa.ForeignKey("assets.id"), primary_key=True),
    sa.Column("policy_kind", sa.String(64)),  # None: the asset has no kind in the policy vocabulary
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("subjects", sa.Integer, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),  # why each feature was set: column, count, method
    sa.Column("anonymized", sa.Boolean, nullable=False, default=False),
    sa.Column("pseudonymized", sa.Boolean, nullable=False, default=False),
    sa.Column("packs", sa.JSON, nullable=False),  # {pack id: sha256:...} in force when classified
    sa.Column("outcome", sa.String(32)),  # the asset decided alone, for `explain` and the report
    sa.Column("decision", sa.JSON),
    sa.Column("classified_at", sa.DateTime(timezone=True), nullable=False),
)

asset_subjects = sa.Table(
    "asset_subjects",
    baseline,
    sa.Column("asset_id", sa.String(40), sa.ForeignKey("assets.id"), nullable=False, index=True),
    sa.Column("subject_key", sa.String(64), nullable=False),
    sa.Column("category", sa.String(8), nullable=False),  # pi | spi
    sa.PrimaryKeyConstraint("asset_id", "subject_key", "category"),
)

ledger_subjects = sa.Table(
    "ledger_subjects",
    baseline,
    sa.Column("exporter", sa.String(128), nullable=False),
    sa.Column("year", sa.Integer, nullable=False),
    sa.Column("category", sa.String(8), nullable=False),
    sa.Column("subject_key", sa.String(64), nullable=False),
    sa.Column("export_id", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("exporter", "year", "category", "subject_key"),
)

log_entries = sa.Table(
    "log_entries",
    baseline,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("entry", sa.Text, nullable=False),  # canonical JSON, the exact bytes hashed
    sa.Column("leaf_hash", sa.String(64), nullable=False),
)

log_checkpoints = sa.Table(
    "log_checkpoints",
    baseline,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.String(64), nullable=False),
    sa.Column("note", sa.Text, nullable=False),  # signed note, cosignatures appended
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

principals = sa.Table(
    "principals",
    baseline,
    sa.Column("keyid", sa.String(64), primary_key=True),  # securesystemslib key id of the public key
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("public_key", sa.Text, nullable=False),  # PEM
    sa.Column("added_index", sa.BigInteger, nullable=False),  # log entry of the signed registration
    sa.Column("added_by", sa.String(128), nullable=False),
    sa.Column("removed_index", sa.BigInteger),
    sa.Column("removed_by", sa.String(128)),
)

export_approvals = sa.Table(
    "export_approvals",
    baseline,
    # Everything here is read from the signed statement in `envelope`, logged whole at `log_index`.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("plan_id", sa.String(64), nullable=False, index=True),
    sa.Column("plan_digest", sa.String(80), nullable=False),
    sa.Column("approver", sa.String(128), nullable=False),
    sa.Column("keyid", sa.String(64), nullable=False),
    sa.Column("ref", sa.String(128), nullable=False),  # the filing number (CAC assessment, SCC filing)
    sa.Column("destination_country", sa.String(2), nullable=False),
    sa.Column("kinds", sa.JSON, nullable=False),
    sa.Column("outcomes", sa.JSON, nullable=False),
    sa.Column("max_subjects", sa.BigInteger, nullable=False),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_until", sa.Date, nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),
    sa.Column("log_index", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

exports = sa.Table(
    "exports",
    baseline,
    sa.Column("package_id", sa.String(64), primary_key=True),
    sa.Column("plan_id", sa.String(64), nullable=False),
    sa.Column("region", sa.String(64), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # committed | published
    sa.Column("log_index", sa.BigInteger, nullable=False),
    sa.Column("entry", sa.Text, nullable=False),  # the canonical export log entry
    sa.Column("assets", sa.JSON, nullable=False),
    sa.Column("approvals", sa.JSON, nullable=False),
    sa.Column("ledger_delta", sa.JSON, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column("publish_index", sa.BigInteger),  # the log entry that records the publication
)



def upgrade() -> None:
    baseline.create_all(op.get_bind(), checkfirst=True)
