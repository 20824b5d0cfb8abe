"""The log's entry type as a column (filtered in SQL) and its Merkle tree interior as tiles.

Fills both for the entries already logged: the type from each entry's JSON, the tiles from the
stored leaf hashes (level 0: the leaf hashes; level L: the RFC 6962 node hashes of every complete
height-8·L subtree).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TILE_WIDTH = 256


def _perfect_root(hashes: list[bytes]) -> bytes:
    level = hashes
    while len(level) > 1:
        level = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def _tiles(leaves: list[bytes]) -> list[tuple[int, int, bytes]]:
    out = [(0, t, b"".join(leaves[t * TILE_WIDTH:(t + 1) * TILE_WIDTH]))
           for t in range((len(leaves) + TILE_WIDTH - 1) // TILE_WIDTH)]
    level, below = 1, leaves
    while len(below) >= TILE_WIDTH:
        nodes = [_perfect_root(below[i:i + TILE_WIDTH]) for i in range(0, len(below) - TILE_WIDTH + 1, TILE_WIDTH)]
        out += [(level, t, b"".join(nodes[t * TILE_WIDTH:(t + 1) * TILE_WIDTH]))
                for t in range((len(nodes) + TILE_WIDTH - 1) // TILE_WIDTH)]
        level, below = level + 1, nodes
    return out


def upgrade() -> None:
    op.add_column("log_entries", sa.Column("kind", sa.String(32)))
    op.create_index("ix_log_entries_kind", "log_entries", ["kind"])
    tiles = op.create_table(
        "log_tiles",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hashes", sa.LargeBinary, nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("UPDATE log_entries SET kind = (entry::json)->>'type'")
    else:
        op.execute("UPDATE log_entries SET kind = json_extract(entry, '$.type')")
    leaves = [bytes.fromhex(h) for (h,) in bind.execute(sa.text("SELECT leaf_hash FROM log_entries ORDER BY idx"))]
    rows = [{"level": level, "idx": idx, "hashes": blob} for level, idx, blob in _tiles(leaves)]
    if rows:
        op.bulk_insert(tiles, rows)
