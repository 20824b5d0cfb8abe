"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

    leaf hash  = SHA-256(0x00 || entry)
    node hash  = SHA-256(0x01 || left || right)
    MTH of n leaves splits at k, the largest power of two smaller than n.

The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step; they are the security boundary,
so they are small and never trust sizes or proof lengths they did not check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, computed bottom-up (equal to the recursive definition)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # an odd node is promoted unchanged, as the split at k implies
        level = nxt
    return level[0]


def tree_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every complete level of the tree: levels[h][i] is the root of leaves [i·2^h, (i+1)·2^h)."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def prefix_root(levels: list[list[bytes]], size: int) -> bytes:
    """MTH of the first `size` leaves from the complete levels, in O(log n): the perfect subtrees of
    the binary decomposition of `size`, folded right to left (RFC 6962's split at the largest power of two)."""
    if size == 0:
        return EMPTY_ROOT
    if size > len(levels[0]):
        raise ValueError(f"size {size} exceeds the {len(levels[0])} leaves")
    parts, offset = [], 0
    for height in range(size.bit_length() - 1, -1, -1):
        if size >> height & 1:
            parts.append(levels[height][offset >> height])
            offset += 1 << height
    root = parts[-1]
    for part in reversed(parts[:-1]):
        root = node_hash(part, root)
    return root


# MTH of the leaves in [start, end): what a proof needs from the tree, from a list of leaf hashes
# or from stored tiles (audit/tiles.py) alike.
Subtree = Callable[[int, int], bytes]


def _list_subtree(leaves: Sequence[bytes]) -> Subtree:
    return lambda start, end: root_from_leaf_hashes(leaves[start:end])


def inclusion_path(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 for leaf `index` in a tree of `size`."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} outside a tree of size {size}")
    start, end, m = 0, size, index
    path: list[bytes] = []
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start, m = start + k, m - k
    return list(reversed(path))


def consistency_path(old_size: int, size: int, subtree: Subtree) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1."""
    if not 0 < old_size <= size:
        raise ValueError(f"old size {old_size} is not in 1..{size}")
    return _subproof(old_size, subtree, 0, size, True)


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) for leaf `index` in a tree of len(leaves)."""
    return inclusion_path(index, len(leaves), _list_subtree(leaves))


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) over a list of leaf hashes."""
    return consistency_path(old_size, len(leaves), _list_subtree(leaves))


def _subproof(m: int, subtree: Subtree, start: int, end: int, complete: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if complete else [subtree(start, end)]
    k = _split(n)
    if m <= k:
        return _subproof(m, subtree, start, start + k, complete) + [subtree(start + k, end)]
    return _subproof(m - k, subtree, start + k, end, False) + [subtree(start, start + k)]


def _climb_left_edge(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift both indices until fn is odd or zero (RFC 9162: the node is a left child up to there)."""
    while True:
        fn >>= 1
        sn >>= 1
        if fn & 1 or fn == 0:
            return fn, sn


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size or any(len(p) != 32 for p in proof):
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _climb_left_edge(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes,
                       new_root: bytes) -> bool:
    """RFC 9162 §2.1.4.2."""
    if any(len(p) != 32 for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                fn, sn = _climb_left_edge(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
