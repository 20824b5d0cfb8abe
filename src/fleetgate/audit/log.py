"""The region's transparency log: an append-only RFC 6962 Merkle log in the catalog database.

Every decision, approval, export, key use and de-identification run is appended as one canonical
JSON entry holding digests and metadata, never raw personal information. Each entry carries its
own index and the previous leaf hash, so a reordered, dropped or inserted row is caught at the
first bad index even before the signed checkpoints are checked.

Checkpoints use the C2SP tlog-checkpoint format, signed as a C2SP signed note with the region's
Ed25519 key; a witness may add a cosignature (witness.py). The tree's interior is kept as C2SP
tlog-tiles in the same transaction as each append (tiles.py), so a checkpoint, an inclusion or a
consistency proof reads O(log n) hashes whatever the log's size.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from fleetgate.audit import tiles
from fleetgate.audit.merkle import (
    EMPTY_ROOT,
    consistency_path,
    inclusion_path,
    leaf_hash,
    node_hash,
    prefix_root,
    tree_levels,
)
from fleetgate.errors import IntegrityError
from fleetgate.keys import KeyStore, verify_signature
from fleetgate.store import Catalog, Region
from fleetgate.store.catalog import utcnow
from fleetgate.store.log_repo import LogRepository


class LogError(IntegrityError):
    """The log failed verification or a proof was asked for something it does not hold."""


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes an entry is hashed as: sorted keys, no spaces, UTF-8."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(data: bytes | str | dict) -> str:
    """sha256:hex of bytes, text or a canonical JSON object; what the log stores instead of content."""
    if isinstance(data, dict):
        data = canonical(data)
    if isinstance(data, str):
        data = data.encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- signed notes (C2SP signed-note, Ed25519) -------------------------------------------------------
def key_id(name: str, public: bytes, kind: int = 0x01) -> bytes:
    """4-byte key hash of a signed-note key: SHA-256(name || '\\n' || type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public).digest()[:4]


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (key name, base64-decoded signature blob)

    @property
    def body(self) -> str:
        return checkpoint_body(self.origin, self.size, self.root)

    def text(self) -> str:
        lines = [f"— {name} {base64.b64encode(blob).decode()}" for name, blob in self.signatures]
        return self.body + "\n" + "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        try:
            body, _, sigs = text.partition("\n\n")
            origin, size_s, root_b64 = body.split("\n")
            size = int(size_s)
            root = base64.b64decode(root_b64, validate=True)
            if len(root) != 32 or size < 0 or str(size) != size_s:
                raise ValueError("bad size or root")
            signatures = []
            for line in sigs.strip("\n").split("\n"):
                dash, name, blob = line.split(" ")
                if dash != "—":
                    raise ValueError("signature lines start with an em dash")
                signatures.append((name, base64.b64decode(blob, validate=True)))
        except (ValueError, TypeError) as exc:
            raise LogError(f"not a checkpoint: {exc}") from exc
        return cls(origin, size, root, tuple(signatures))

    def verify_signature(self, name: str, public: bytes) -> bool:
        """Whether a signature line by `name` verifies with `public` over the body."""
        kid = key_id(name, public)
        for sig_name, blob in self.signatures:
            if sig_name == name and len(blob) == 68 and blob[:4] == kid:
                if verify_signature(public, blob[4:], self.body.encode()):
                    return True
        return False


# ---- the log ---------------------------------------------------------------------------------------
GENESIS = "log_open"


class TransparencyLog:
    """The append-only log of one region."""

    def __init__(self, catalog: Catalog, keys: KeyStore, origin: str) -> None:
        self.catalog = catalog
        self.keys = keys
        self.origin = origin
        self.key_name = origin
        self.repo = LogRepository(catalog)

    # -- writing ---------------------------------------------------------------------------------
    def append(self, conn: Connection, kind: str, payload: dict[str, Any],
               at: datetime | None = None) -> tuple[int, str]:
        """Append one entry inside the caller's transaction; returns (index, leaf hash hex)."""
        return self.append_many(conn, [(kind, payload)], at)[0]

    def append_many(self, conn: Connection, entries: Sequence[tuple[str, dict[str, Any]]],
                    at: datetime | None = None) -> list[tuple[int, str]]:
        """Append entries in order, in one statement, inside the caller's transaction.

        The first entry of a log (`log_open`) pins the region's public key, so a replaced key
        file is caught by `audit verify` and a rewritten log by the witness."""
        last = self.repo.last(conn)
        index, prev = (last[0] + 1, last[1]) if last else (0, "")
        now = (at or utcnow()).isoformat()
        if last is None:
            entries = [(GENESIS, {"origin": self.origin, "key_name": self.key_name,
                                  "public_key": self.public_key().hex()}), *entries]
        rows, out = [], []
        for kind, payload in entries:
            if "type" in payload or "index" in payload or "prev" in payload or "at" in payload:
                raise ValueError("payload may not set type, index, prev or at")
            entry = {"type": kind, "index": index, "prev": prev, "at": now, **payload}
            data = canonical(entry)
            lh = leaf_hash(data).hex()
            rows.append({"idx": index, "entry": data.decode("utf-8"), "leaf_hash": lh, "kind": kind})
            out.append((index, lh))
            index, prev = index + 1, lh
        self.repo.insert(conn, rows)
        tiles.extend(self.repo, conn, rows[0]["idx"], [bytes.fromhex(r["leaf_hash"]) for r in rows])
        return out[1:] if last is None else out

    # -- reading ---------------------------------------------------------------------------------
    def size(self) -> int:
        return self.repo.count()

    def entry(self, index: int) -> dict[str, Any]:
        text = self.repo.entry_text(index)
        if text is None:
            raise LogError(f"no log entry {index}")
        return json.loads(text)

    def entry_text(self, index: int, conn: Connection) -> str:
        """The exact canonical bytes (as text) of entry `index`, inside the caller's transaction."""
        text = self.repo.entry_text(index, conn)
        if text is None:
            raise LogError(f"no log entry {index}")
        return text

    def entries(self, kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Entries of one type (filtered in SQL on the kind column; the entry's own type must agree), oldest
        first; the last `limit` of them when given."""
        out = [json.loads(t) for t in self.repo.of_kind(kind, limit)]
        return [e for e in out if kind is None or e.get("type") == kind]

    # -- checkpoints and proofs --------------------------------------------------------------------
    def public_key(self) -> bytes:
        return self.keys.public_key("signing")

    def _reader(self, conn: Connection, size: int | None = None) -> tiles.TileReader:
        current = self.repo.count(conn)
        size = current if size is None else size
        if not 0 <= size <= current:
            raise LogError(f"the log holds {current} entries, fewer than {size}")
        return tiles.TileReader(self.repo, conn, size)

    def root(self, size: int | None = None) -> tuple[int, bytes]:
        """(size, root) of the tree of `size` entries (default: all), from the tiles."""
        with self.catalog.snapshot() as conn:
            reader = self._reader(conn, size)
            return reader.size, self._tile_root(reader)

    @staticmethod
    def _tile_root(reader: tiles.TileReader) -> bytes:
        try:
            return reader.root()
        except LookupError as exc:
            raise LogError(str(exc)) from exc

    def checkpoint(self) -> Checkpoint:
        """Sign and store a checkpoint of the current tree (the same one again if nothing changed)."""
        size, root = self.root()
        body = checkpoint_body(self.origin, size, root)
        signature = self.keys.sign(body.encode(), "signing")
        blob = key_id(self.key_name, self.public_key()) + signature
        cp = Checkpoint(self.origin, size, root, ((self.key_name, blob),))
        return Checkpoint.parse(self.repo.add_checkpoint(size, root.hex(), cp.text()))

    def latest_checkpoint(self) -> Checkpoint | None:
        note = self.repo.latest_checkpoint_note()
        return Checkpoint.parse(note) if note else None

    def checkpoints(self) -> list[Checkpoint]:
        return [Checkpoint.parse(note) for _, _, note in self.repo.checkpoint_rows()]

    def store_cosigned(self, cp: Checkpoint) -> None:
        self.repo.replace_checkpoint_note(cp.size, cp.text())

    def prove(self, index: int, size: int | None = None) -> dict[str, Any]:
        """Inclusion proof of entry `index` in the tree of `size` (default: the latest checkpoint's)."""
        if size is None:
            cp = self.latest_checkpoint()
            if cp is None or cp.size <= index:
                cp = self.checkpoint()
            size = cp.size
        with self.catalog.snapshot() as conn:
            reader = self._reader(conn, size)
            if not 0 <= index < size:
                raise LogError(f"entry {index} is not in a tree of size {size}")
            try:
                path = inclusion_path(index, size, reader.subtree)
                leaf = reader.node(0, index)
            except LookupError as exc:
                raise LogError(str(exc)) from exc
            return {"index": index, "size": size, "leaf_hash": leaf.hex(), "proof": [p.hex() for p in path],
                    "root": self._tile_root(reader).hex()}

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        if not old_size:
            return []
        with self.catalog.snapshot() as conn:
            reader = self._reader(conn, new_size)
            try:
                return consistency_path(old_size, new_size, reader.subtree)
            except LookupError as exc:
                raise LogError(str(exc)) from exc

    # -- verification ----------------------------------------------------------------------------------
    def verify(self, on_entry: Callable[[int, dict[str, Any]], None] | None = None,
               conn: Connection | None = None) -> VerifyReport:
        """Recompute every leaf, the chain, and every checkpoint's root and signature.

        `on_entry(index, entry)` sees each entry once it has been checked, so the catalog check can
        replay the log in the same pass; `conn` (a catalog snapshot) makes it read the log as of
        the same moment as the tables it is compared with."""
        leaves: list[bytes] = []
        prev = ""
        sha256 = hashlib.sha256
        for position, (idx, text, stored, kind) in enumerate(self.repo.iter_raw_rows(conn)):
            if idx != position:
                raise LogError(f"entry {position}: missing (the next stored entry is {idx})" if idx > position
                               else f"entry {position}: duplicated index {idx}")
            data = text.encode("utf-8")
            computed = sha256(b"\x00" + data).digest()  # leaf_hash, inlined: this loop runs once per entry
            if computed.hex() != stored:
                raise LogError(f"entry {position}: content does not match its leaf hash (altered)")
            try:
                entry = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise LogError(f"entry {position}: not JSON") from None
            if not isinstance(entry, dict) or entry.get("index") != position:
                claimed = entry.get("index") if isinstance(entry, dict) else None
                raise LogError(f"entry {position}: claims index {claimed} (reordered or inserted)")
            if entry.get("prev") != prev:
                # this entry was chained to a different predecessor: the one before it was replaced
                raise LogError(f"entry {position - 1}: replaced (entry {position} is chained to a different leaf)")
            if kind != entry.get("type"):  # the column `audit log --kind` filters on
                raise LogError(f"entry {position}: its kind column says {kind!r}, the entry {entry.get('type')!r}")
            leaves.append(computed)
            prev = stored
            if on_entry is not None:
                on_entry(position, entry)
        return self._verify_checkpoints(leaves, conn)

    def _verify_checkpoints(self, leaves: list[bytes], conn: Connection | None) -> VerifyReport:
        rows = self.repo.checkpoint_rows(conn)
        checkpoints = [Checkpoint.parse(note) for _, _, note in rows]
        public = self.public_key()
        levels = tree_levels(leaves)
        for (size, root_hex, _), cp in zip(rows, checkpoints, strict=True):
            if cp.origin != self.origin:
                raise LogError(f"checkpoint of size {cp.size}: origin {cp.origin!r} is not {self.origin!r}")
            if not cp.verify_signature(self.key_name, public):
                raise LogError(f"checkpoint of size {cp.size}: signature does not verify")
            if cp.size != size or cp.root.hex() != root_hex:
                raise LogError(f"checkpoint of size {size}: the stored size or root differs from its signed note")
            if cp.size > len(leaves):
                raise LogError(f"entry {len(leaves)}: missing; a signed checkpoint covers {cp.size} entries")
            if prefix_root(levels, cp.size) != cp.root:
                raise LogError(f"checkpoint of size {cp.size}: root differs from the entries; the first bad "
                               f"entry is below index {cp.size}")
        self._verify_tiles(levels, conn)  # after the checkpoints: a truncated log is named by its first gap
        return VerifyReport(entries=len(leaves), checkpoints=len(checkpoints),
                            root=prefix_root(levels, len(leaves)).hex())


    def _verify_tiles(self, levels: list[list[bytes]], conn: Connection | None) -> None:
        """Every stored tile must be what the entries give: checkpoints and proofs are read from them."""
        expected = tiles.expected_tiles(levels)
        stored = {(level, index): blob for level, index, blob in self.repo.all_tiles(conn)}
        for key in sorted(set(expected) | set(stored)):
            if expected.get(key) != stored.get(key):
                what = "missing" if key not in stored else "not in a tree of this size" if key not in expected \
                    else "differs from the entries"
                raise LogError(f"log_tiles level {key[0]} tile {key[1]}: {what}")


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    checkpoints: int
    root: str


def prefix_roots(leaves: Sequence[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """Roots of the first `size` leaves for each size, in one pass over a stack of perfect subtrees."""
    wanted = sorted(set(sizes))
    out: dict[int, bytes] = {}
    if 0 in wanted:
        out[0] = EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees, left to right
    pos = 0
    want = iter(s for s in wanted if s > 0)
    target = next(want, None)
    for count, leaf in enumerate(leaves, 1):
        stack.append((0, leaf))
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            (h, right), (_, left) = stack.pop(), stack.pop()
            stack.append((h + 1, node_hash(left, right)))
        pos = count
        while target is not None and target == pos:
            root = stack[-1][1]
            for _, h in reversed(stack[:-1]):
                root = node_hash(h, root)
            out[target] = root
            target = next(want, None)
    return out


def open_log(ws: Any, region: str | None = None) -> TransparencyLog:
    """The transparency log of a workspace region, signed with the region's key."""
    return region_log(ws.region(ws.config.region(region).name))


def region_log(region: Region) -> TransparencyLog:
    """The transparency log of an opened region."""
    return TransparencyLog(region.catalog, region.keys, origin=f"fleetgate/{region.name}")
