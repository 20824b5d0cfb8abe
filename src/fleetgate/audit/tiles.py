"""The log's Merkle tree interior as C2SP tlog-tiles (height 8), kept in the catalog beside the entries.

A tile of level L holds, in order, the hashes of the complete subtrees of height 8·L (each over
256^L leaves; level 0: the leaf hashes), stored in `log_tiles`, one row of up to 256 × 32 bytes
per tile, the last one of a level partial. Every node a checkpoint or a proof needs is the root
of at most 128 consecutive hashes of one tile, so both read O(log n) small rows whatever the
log's size, and never the entries (whose rows are large). Appends extend the tiles in their own
transaction: the partial level-0 tile on every append, a tile above only when 256 hashes below
it complete.

`audit verify` recomputes the whole tree from the leaves and compares every stored tile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from fleetgate.audit.merkle import EMPTY_ROOT, node_hash, root_from_leaf_hashes, tree_levels
from fleetgate.store.log_repo import LogRepository

HEIGHT = 8
WIDTH = 1 << HEIGHT
HASH = 32


def _split_blob(blob: bytes) -> list[bytes]:
    return [blob[i:i + HASH] for i in range(0, len(blob), HASH)]


_KEPT = 512  # a full tile with its subtrees is about 46 KB of Python objects: about 24 MB
_levels_of: OrderedDict[bytes, tuple[tuple[bytes, ...], ...]] = OrderedDict()
_levels_lock = threading.Lock()


def tile_levels(blob: bytes) -> tuple[tuple[bytes, ...], ...]:
    """The perfect subtrees inside one tile: levels[h][i] is the root of its hashes [i·2^h, (i+1)·2^h).

    A pure function of the tile's bytes, so the last _KEPT are kept across readers: a proof of a random
    entry and the root of each new checkpoint would otherwise hash the same tiles again on every call,
    and cost more the fuller the log's last tile. A tile one hash longer than a kept one (the last
    tile after an append) adds one node per level to it. A tile altered in the catalog is other bytes,
    hashed afresh."""
    with _levels_lock:
        found = _levels_of.get(blob)
        if found is not None:
            _levels_of.move_to_end(blob)
            return found
        shorter = _levels_of.get(blob[:-HASH]) if len(blob) > HASH and not len(blob) % HASH else None
    found = _with_leaf(shorter, blob[-HASH:]) if shorter is not None else \
        tuple(tuple(level) for level in tree_levels(_split_blob(blob)))
    with _levels_lock:
        _levels_of[blob] = found
        while len(_levels_of) > _KEPT:
            _levels_of.popitem(last=False)
    return found


def _with_leaf(levels: tuple[tuple[bytes, ...], ...], leaf: bytes) -> tuple[tuple[bytes, ...], ...]:
    """The levels of a tile with one more hash: each level gains a node when the one below pairs up."""
    out = [levels[0] + (leaf,)]
    for height in range(1, HEIGHT + 1):
        below = out[-1]
        level = levels[height] if height < len(levels) else ()
        if len(below) // 2 > len(level):
            level += (node_hash(below[-2], below[-1]),)
        if not level:
            break
        out.append(level)
    return tuple(out)


def extend(repo: LogRepository, conn: Connection, old_size: int, new_leaves: Sequence[bytes]) -> None:
    """Add the leaves appended after `old_size` to the level-0 tiles, and to the tiles above every subtree
    they complete."""
    _append(repo, conn, 0, old_size, list(new_leaves))
    count, fresh, level = old_size, list(new_leaves), 0
    while fresh:
        first, end = count // WIDTH, (count + len(fresh)) // WIDTH  # parents complete at positions first..end-1
        if end == first:
            return  # no tile of this level filled up: nothing above it changes
        below = _split_blob(repo.tile(conn, level, first))[: count - first * WIDTH] + fresh
        parents = [root_from_leaf_hashes(below[k * WIDTH:(k + 1) * WIDTH]) for k in range(end - first)]
        _append(repo, conn, level + 1, first, parents)
        count, fresh, level = first, parents, level + 1


def _append(repo: LogRepository, conn: Connection, level: int, position: int, hashes: list[bytes]) -> None:
    """Write hashes at positions position.. of a level, merging into the partial tile they continue."""
    rows, tile, offset = [], position // WIDTH, position % WIDTH
    blob = repo.tile(conn, level, tile)[: offset * HASH] if offset else b""
    for h in hashes:
        blob += h
        if len(blob) == WIDTH * HASH:
            rows.append({"level": level, "idx": tile, "hashes": blob})
            tile, blob = tile + 1, b""
    if blob:
        rows.append({"level": level, "idx": tile, "hashes": blob})
    repo.put_tiles(conn, rows)


class TileReader:
    """Nodes of the tree of `size` leaves, read from the tiles inside one read transaction."""

    def __init__(self, repo: LogRepository, conn: Connection, size: int) -> None:
        self.repo, self.conn, self.size = repo, conn, size
        self._tiles: dict[tuple[int, int], tuple[tuple[bytes, ...], ...]] = {}

    def _tile(self, level: int, index: int) -> tuple[tuple[bytes, ...], ...]:
        key = (level, index)
        if key not in self._tiles:
            self._tiles[key] = tile_levels(self.repo.tile(self.conn, level, index))
        return self._tiles[key]

    def node(self, height: int, index: int) -> bytes:
        """Root of the perfect subtree over leaves [index·2^height, (index+1)·2^height)."""
        level, rest = divmod(height, HEIGHT)
        first = index << rest  # position of its first hash at the tile level
        levels = self._tile(level, first // WIDTH)
        within = (first % WIDTH) >> rest
        if rest >= len(levels) or within >= len(levels[rest]):
            raise LookupError(f"the log's tiles lack level {level} tile {first // WIDTH} (run `fleetgate audit "
                              "verify`)")
        return levels[rest][within]

    def subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end): its aligned perfect subtrees, largest first, folded right to left."""
        if end <= start:
            return EMPTY_ROOT
        parts, position = [], start
        while position < end:
            height = (position & -position).bit_length() - 1 if position else (end - position).bit_length() - 1
            while position + (1 << height) > end:
                height -= 1
            parts.append(self.node(height, position >> height))
            position += 1 << height
        root = parts[-1]
        for part in reversed(parts[:-1]):
            root = node_hash(part, root)
        return root

    def root(self) -> bytes:
        return self.subtree(0, self.size)


def expected_tiles(levels: list[list[bytes]]) -> dict[tuple[int, int], bytes]:
    """Every tile that a tree with these complete levels (merkle.tree_levels) must have stored."""
    out: dict[tuple[int, int], bytes] = {}
    level = 0
    while HEIGHT * level < len(levels) and levels[HEIGHT * level]:
        nodes = levels[HEIGHT * level]
        for tile in range((len(nodes) + WIDTH - 1) // WIDTH):
            out[(level, tile)] = b"".join(nodes[tile * WIDTH:(tile + 1) * WIDTH])
        level += 1
    return out
