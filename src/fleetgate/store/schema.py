"""Every table of a region's catalog database, in one place: the only module that defines schema.

    assets, ingest_runs, quarantine      what landed in the region and what was kept aside
    classifications, asset_subjects      what each asset is and whose data it holds (keyed pseudonyms)
    ledger_subjects                      distinct people exported per exporter and year
    log_entries, log_checkpoints         the transparency log and its signed checkpoints
    log_tiles                            the log's Merkle tree interior (C2SP tlog-tiles)
    principals                           the people who may act, their roles and public keys
    export_approvals, exports            signed approvals and export records of the gate
    credentials                          API tokens and dashboard passwords (argon2 hashes) of principals
    plans                                plans made over HTTP: drafts awaiting their author's signature, and
                                         signed plans (the body and the envelope, as a plan file holds them)
    subject_requests, erasures           data-subject requests (find, copy, erase) and erasure records
    legal_holds                          assets a compliance officer placed under legal hold

The region's keyring is a database of its own (`keyring_metadata`, in the region's key folder):
    subject_keys, blob_keys              per-person keys and per-blob data keys; deleting a row there
                                         is what makes every copy of a blob unreadable

Changes to these tables go through an Alembic migration in `store/migrations/versions/` (one
place creates and upgrades the schema: `store/migrate.py`); a test fails while the two differ.

Rows of every table the export gate reads are facts recorded in the transparency log when they
are written (`fleetgate.audit.facts`); `fleetgate audit verify` compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

assets = sa.Table(
    "assets",
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
    sa.Column("asset_id", sa.String(40), sa.ForeignKey("assets.id"), nullable=False, index=True),
    sa.Column("subject_key", sa.String(64), nullable=False),
    sa.Column("category", sa.String(8), nullable=False),  # pi | spi
    sa.PrimaryKeyConstraint("asset_id", "subject_key", "category"),
)

ledger_subjects = sa.Table(
    "ledger_subjects",
    metadata,
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
    metadata,
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("entry", sa.Text, nullable=False),  # canonical JSON, the exact bytes hashed
    sa.Column("leaf_hash", sa.String(64), nullable=False),
    # the entry's type, so `audit log --kind` filters in SQL; verify checks it against the entry
    sa.Column("kind", sa.String(32), index=True),
)

# The Merkle tree as C2SP tlog-tiles (height 8): tile `idx` of `level` L holds the hashes of the
# complete subtrees of height 8·L (level 0: the leaf hashes) at positions 256·idx.., 32 bytes each,
# a partial tile growing until it holds 256. Maintained on append in the same transaction, so a
# checkpoint or a proof reads O(log n) small rows, never every leaf (nor the large entry rows).
log_tiles = sa.Table(
    "log_tiles",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hashes", sa.LargeBinary, nullable=False),
)

log_checkpoints = sa.Table(
    "log_checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.String(64), nullable=False),
    sa.Column("note", sa.Text, nullable=False),  # signed note, cosignatures appended
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

principals = sa.Table(
    "principals",
    metadata,
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
    metadata,
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
    sa.Column("ledger_delta", sa.JSON, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column("publish_index", sa.BigInteger),  # the log entry that records the publication
)

credentials = sa.Table(
    "credentials",
    metadata,
    # Issued by a signed, logged statement (`credential` entry); the secret itself is never stored.
    sa.Column("id", sa.String(24), primary_key=True),  # tok-… or pwd-…: the public half of a token
    sa.Column("kind", sa.String(16), nullable=False),  # token | password
    sa.Column("keyid", sa.String(64), nullable=False, index=True),  # the principal's key id
    sa.Column("name", sa.String(128), nullable=False, index=True),
    sa.Column("hash", sa.Text, nullable=False),  # argon2id
    sa.Column("issued_by", sa.String(128), nullable=False),
    sa.Column("issued_index", sa.BigInteger, nullable=False),
    sa.Column("revoked_index", sa.BigInteger),
    sa.Column("revoked_by", sa.String(128)),
)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("plan_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # draft | signed
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("destination", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the Plan (draft) or the SignedPlan (signed), JSON
    sa.Column("statement", sa.Text, nullable=False),  # the PlanStatement to sign, canonical JSON
    sa.Column("log_index", sa.BigInteger),  # the signed plan's `decision` entry
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The tables whose rows are facts in the log; `audit verify` checks each against it.
FACT_TABLES = ("assets", "quarantine", "classifications", "asset_subjects", "ledger_subjects", "principals",
               "export_approvals", "exports")
# ... and those only the service writes (credentials for the API, plans made over HTTP); checked the same way.
SERVICE_FACT_TABLES = ("credentials", "plans")

subject_requests = sa.Table(
    "subject_requests",
    metadata,
    # A data-subject request (PIPL Arts 44-47): the identifier is never stored, only its HMAC under
    # a per-request salt, and the salt is wiped once the person is erased.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("ref", sa.String(128), nullable=False, index=True),  # the operator's ticket (DSR-2026-001)
    sa.Column("action", sa.String(16), nullable=False),  # find | export | erase
    sa.Column("identifier_kind", sa.String(16), nullable=False),  # vin | phone | id_number | plate
    sa.Column("identifier_salt", sa.LargeBinary),  # null once wiped
    sa.Column("identifier_digest", sa.String(80), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_by", sa.Date, nullable=False),  # 10 working days (Automobile Data Provisions Art 9)
    sa.Column("status", sa.String(16), nullable=False),  # open | done
    sa.Column("log_index", sa.BigInteger, nullable=False),
    sa.Column("result", sa.JSON, nullable=False, default=dict),  # counts, never identifiers
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

erasures = sa.Table(
    "erasures",
    metadata,
    # The erasure record: written (with its log entry) in the transaction that removes the rows,
    # before any blob or key is destroyed, so a rerun after a crash knows what is left to destroy.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("cause", sa.String(16), nullable=False),  # subject | retention
    sa.Column("request_id", sa.String(40)),
    sa.Column("status", sa.String(16), nullable=False),  # rows_erased | done
    sa.Column("log_index", sa.BigInteger, nullable=False),
    sa.Column("done_index", sa.BigInteger),
    sa.Column("plan", sa.JSON, nullable=False),  # blobs (namespace, sha256), keys and files still to destroy
    sa.Column("summary", sa.JSON, nullable=False),  # counts, packages that left, holds
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

legal_holds = sa.Table(
    "legal_holds",
    metadata,
    # Rebuilt from signed, logged `legal_hold` statements; `audit verify` compares them.
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("asset_id", sa.String(40), nullable=False, index=True),
    sa.Column("ref", sa.String(128), nullable=False),  # the case or order number
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("placed_by", sa.String(128), nullable=False),
    sa.Column("placed_index", sa.BigInteger, nullable=False),
    sa.Column("released_by", sa.String(128)),
    sa.Column("released_index", sa.BigInteger),
)

# ---- the keyring: its own database, never backed up with the catalog or the blobs -----------------
keyring_metadata = sa.MetaData()

subject_keys = sa.Table(
    "subject_keys",
    keyring_metadata,
    # kid is random: a key destroyed by an erasure never comes back under its id, even when the same
    # person's data arrives again (it gets a new key, found through `slot`)
    sa.Column("kid", sa.String(40), primary_key=True),  # s_ + 32 random hex
    sa.Column("slot", sa.String(64), nullable=False, unique=True),  # HMAC of the person's pseudonym
    sa.Column("secret", sa.LargeBinary, nullable=False),  # 32 random bytes
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

blob_keys = sa.Table(
    "blob_keys",
    keyring_metadata,
    sa.Column("kid", sa.String(40), primary_key=True),  # b_ + 32 random hex
    sa.Column("slot", sa.String(64), nullable=False, unique=True),  # HMAC of (namespace, sha256, holder)
    sa.Column("namespace", sa.String(32), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),  # of the plaintext: what the catalog names
    sa.Column("holder", sa.String(40), index=True),  # the subject key that wraps the data key; null: none
    sa.Column("data_key", sa.LargeBinary, nullable=False),  # AES key wrap (RFC 3394) under the holder, or raw
    sa.Column("stored_as", sa.String(64), nullable=False),  # sha256 of the ciphertext: the inner store's key
    sa.Column("bytes", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_blob_keys_content", "namespace", "sha256"),
)
