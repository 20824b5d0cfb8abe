"""The transparency log: RFC 6962 vectors, proofs against a naive reference tree, tamper detection, witness."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetgate.audit import Checkpoint, LogError, Witness, WitnessRefused, open_log, tiles, verify_cosignature
from fleetgate.audit.log import prefix_roots
from fleetgate.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    tree_levels,
    verify_consistency,
    verify_inclusion,
)
from fleetgate.store.schema import log_entries
from fleetgate.workspace import Workspace

# RFC 6962 known answers (the CT reference tree over these 8 inputs), roots for sizes 1..8.
RFC_LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f"]]
RFC_ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
             "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
             "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
             "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
             "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
             "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
             "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
# RFC 6962 inclusion paths (certificate-transparency-go test data; its leaf numbers are 1-based, these
# are 0-based indices) as {(index, size): path}, and consistency proofs as {(m, n): proof}.
RFC_INCLUSION = {(0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                          "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
                 (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                          "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                          "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
                 (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
                 (1, 5): ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                          "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                          "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]}
RFC_CONSISTENCY = {(1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
                   (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
                   (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]}


def naive_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 §2.1, recursively."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_root(leaves[:k]) + naive_root(leaves[k:])).digest()


def test_rfc6962_known_answers() -> None:
    hashes = [leaf_hash(x) for x in RFC_LEAVES]
    for n in range(1, 9):
        assert root_from_leaf_hashes(hashes[:n]).hex() == RFC_ROOTS[n - 1]
        assert prefix_roots(hashes, [n])[n].hex() == RFC_ROOTS[n - 1]
    for (index, size), path in RFC_INCLUSION.items():
        assert [p.hex() for p in inclusion_proof(index, hashes[:size])] == path
        assert verify_inclusion(hashes[index], index, size, [bytes.fromhex(p) for p in path],
                                bytes.fromhex(RFC_ROOTS[size - 1]))
    for (m, n), path in RFC_CONSISTENCY.items():
        assert [p.hex() for p in consistency_proof(m, hashes[:n])] == path
        assert verify_consistency(m, n, [bytes.fromhex(p) for p in path], bytes.fromhex(RFC_ROOTS[m - 1]),
                                  bytes.fromhex(RFC_ROOTS[n - 1]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_proofs_match_a_naive_reference_tree(entries: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(e) for e in entries]
    n = len(hashes)
    root = naive_root(hashes)
    assert root_from_leaf_hashes(hashes) == root
    index = data.draw(st.integers(0, n - 1))
    assert verify_inclusion(hashes[index], index, n, inclusion_proof(index, hashes), root)
    m = data.draw(st.integers(1, n))
    assert verify_consistency(m, n, consistency_proof(m, hashes), naive_root(hashes[:m]), root)
    sizes = sorted(data.draw(st.sets(st.integers(1, n), max_size=5)))
    assert prefix_roots(hashes, sizes) == {s: naive_root(hashes[:s]) for s in sizes}


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.data())
def test_every_mutated_byte_of_a_proof_or_root_is_rejected(n: int, data: st.DataObject) -> None:
    hashes = [leaf_hash(bytes([i])) for i in range(n)]
    root = naive_root(hashes)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(index, hashes)
    for p in range(len(proof)):
        for b in range(32):
            bad = list(proof)
            bad[p] = bad[p][:b] + bytes([bad[p][b] ^ 0x01]) + bad[p][b + 1:]
            assert not verify_inclusion(hashes[index], index, n, bad, root)
    for b in range(32):
        assert not verify_inclusion(hashes[index], index, n, proof, root[:b] + bytes([root[b] ^ 0x80]) + root[b + 1:])
    assert not verify_inclusion(hashes[index], index, n, proof + [root], root)
    m = data.draw(st.integers(1, n - 1))
    cproof = consistency_proof(m, hashes)
    old = naive_root(hashes[:m])
    for p in range(len(cproof)):
        for b in range(0, 32, 3):
            bad = list(cproof)
            bad[p] = bad[p][:b] + bytes([bad[p][b] ^ 0x04]) + bad[p][b + 1:]
            assert not verify_consistency(m, n, bad, old, root)
    assert not verify_consistency(m, n, cproof[:-1], old, root)


def _filled_log(ws: Workspace, n: int = 12):
    log = open_log(ws)
    with ws.region().catalog.transaction() as conn:
        for i in range(n):
            log.append(conn, "decision", {"plan_id": f"p{i}", "digest": f"sha256:{i:064x}"})
    log.checkpoint()
    return log


def _rows(ws: Workspace) -> list:
    with ws.region().catalog.engine.connect() as conn:
        return conn.execute(sa.select(log_entries).order_by(log_entries.c.idx)).all()


def test_log_verifies_and_proves(workspace: Workspace) -> None:
    log = _filled_log(workspace)
    report = log.verify()
    assert report.entries == 13 and report.checkpoints == 1
    proof = log.prove(5)
    cp = log.latest_checkpoint()
    assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), 5, cp.size, [bytes.fromhex(p) for p in proof["proof"]],
                            cp.root)
    assert Checkpoint.parse(cp.text()) == cp
    assert cp.text().startswith("fleetgate/cn-shanghai\n13\n")


@pytest.mark.parametrize("attack", ["alter", "alter+rehash", "reorder", "drop", "insert", "truncate"])
def test_tampering_is_caught_at_the_first_bad_index(workspace: Workspace, attack: str) -> None:
    log = _filled_log(workspace)
    rows = _rows(workspace)
    k = 5  # entry 0 is the log_open entry that pins the region key; p4 is entry 5
    with workspace.region().catalog.transaction() as conn:
        if attack.startswith("alter"):
            text = rows[k].entry.replace('"p4"', '"pX"')
            assert text != rows[k].entry
            values = {"entry": text}
            if attack == "alter+rehash":
                values["leaf_hash"] = leaf_hash(text.encode()).hex()
            conn.execute(sa.update(log_entries).where(log_entries.c.idx == k).values(**values))
        elif attack == "reorder":
            conn.execute(sa.update(log_entries).where(log_entries.c.idx == k).values(idx=-1))
            conn.execute(sa.update(log_entries).where(log_entries.c.idx == k + 1).values(idx=k))
            conn.execute(sa.update(log_entries).where(log_entries.c.idx == -1).values(idx=k + 1))
        elif attack == "drop":
            conn.execute(sa.delete(log_entries).where(log_entries.c.idx == k))
        elif attack == "insert":
            conn.execute(sa.update(log_entries).where(log_entries.c.idx >= k).values(idx=log_entries.c.idx + 100))
            for r in rows[k:]:
                conn.execute(sa.update(log_entries).where(log_entries.c.idx == r.idx + 100).values(idx=r.idx + 1))
            conn.execute(sa.insert(log_entries).values(idx=k, entry=rows[k - 1].entry, leaf_hash=rows[k - 1].leaf_hash))
        elif attack == "truncate":
            conn.execute(sa.delete(log_entries).where(log_entries.c.idx >= 10))
    with pytest.raises(LogError) as info:
        log.verify()
    expected = "entry 10" if attack == "truncate" else f"entry {k}"
    assert expected in info.value.message, info.value.message


def test_the_first_entry_pins_the_region_key(workspace: Workspace) -> None:
    log = _filled_log(workspace, 2)
    first = log.entry(0)
    assert first["type"] == "log_open" and first["public_key"] == log.public_key().hex()
    assert log.entry(1)["plan_id"] == "p0"


def test_a_forged_checkpoint_signature_fails(workspace: Workspace) -> None:
    log = _filled_log(workspace)
    cp = log.latest_checkpoint()
    name, blob = cp.signatures[0]
    forged = Checkpoint(cp.origin, cp.size, cp.root, ((name, blob[:-1] + bytes([blob[-1] ^ 1])),))
    assert not forged.verify_signature(log.key_name, log.public_key())
    bigger = Checkpoint(cp.origin, cp.size + 1, cp.root, cp.signatures)
    assert not bigger.verify_signature(log.key_name, log.public_key())


def test_witness_cosigns_extensions_and_refuses_rollback_and_fork_after_restart(workspace: Workspace,
                                                                                tmp_path) -> None:
    log = _filled_log(workspace, 5)
    witness = Witness(tmp_path / "witness", "w1")
    first = log.latest_checkpoint()
    cosigned = witness.cosign(first, log.key_name, log.public_key(), [])
    assert verify_cosignature(cosigned, "w1", witness.public_key())
    with workspace.region().catalog.transaction() as conn:
        log.append(conn, "export", {"package_id": "x"})
    second = log.checkpoint()
    witness.cosign(second, log.key_name, log.public_key(), log.consistency(6, 7))

    restarted = Witness(tmp_path / "witness", "w1")  # a new process: state comes from disk
    with pytest.raises(WitnessRefused, match="rollback"):
        restarted.cosign(first, log.key_name, log.public_key(), [])
    # a fork: same origin and key, different history of the same size
    forked_ws_log = _filled_log_fork(workspace, log)
    with pytest.raises(WitnessRefused, match="fork"):
        restarted.cosign(forked_ws_log, log.key_name, log.public_key(), [])
    with pytest.raises(WitnessRefused, match="signature"):
        restarted.cosign(Checkpoint(second.origin, second.size, second.root, ()), log.key_name, log.public_key(), [])


def _filled_log_fork(workspace: Workspace, log) -> Checkpoint:
    """A checkpoint the log key signs over a different tree of the same size as the latest."""
    from fleetgate.audit.log import checkpoint_body, key_id

    cp = log.latest_checkpoint()
    other_root = hashlib.sha256(b"another history").digest()
    body = checkpoint_body(cp.origin, cp.size, other_root)
    blob = key_id(log.key_name, log.public_key()) + log.keys.sign(body.encode())
    return Checkpoint(cp.origin, cp.size, other_root, ((log.key_name, blob),))


def test_witness_refuses_a_log_signed_by_a_replaced_key(workspace: Workspace, tmp_path) -> None:
    log = _filled_log(workspace, 3)
    witness = Witness(tmp_path / "witness", "w1")
    witness.cosign(log.latest_checkpoint(), log.key_name, log.public_key(), [])
    key = workspace.keys_root / "cn-shanghai" / "signing.key"
    key.chmod(0o600)
    key.write_bytes(b"\x05" * 32)  # an insider re-keys the region to re-sign a rewritten history
    forged = _resigned(log)
    with pytest.raises(WitnessRefused, match="not the key"):
        witness.cosign(forged, log.key_name, log.public_key(), [])


def _resigned(log) -> Checkpoint:
    from fleetgate.audit.log import checkpoint_body, key_id

    cp = log.latest_checkpoint()
    body = checkpoint_body(cp.origin, cp.size, cp.root)
    blob = key_id(log.key_name, log.public_key()) + log.keys.sign(body.encode())
    return Checkpoint(cp.origin, cp.size, cp.root, ((log.key_name, blob),))


def test_tiles_and_the_kind_column_are_checked_against_the_entries(workspace: Workspace) -> None:
    from fleetgate.store.schema import log_tiles

    log = open_log(workspace)
    with workspace.region().catalog.transaction() as conn:
        log.append_many(conn, [("decision", {"plan_id": f"p{i}"}) for i in range(300)])
    log.checkpoint()
    log.verify()
    with workspace.region().catalog.transaction() as conn:
        blob = conn.execute(sa.select(log_tiles.c.hashes).where(log_tiles.c.level == 1)).scalar_one()
        conn.execute(sa.update(log_tiles).where(log_tiles.c.level == 1).values(hashes=bytes([blob[0] ^ 1]) + blob[1:]))
    with pytest.raises(LogError, match="log_tiles level 1 tile 0: differs from the entries"):
        log.verify()
    assert log.root()[1] != log.latest_checkpoint().root  # what a tampered tile gives is not the signed root
    with workspace.region().catalog.transaction() as conn:
        conn.execute(sa.update(log_tiles).where(log_tiles.c.level == 1).values(hashes=blob))
        conn.execute(sa.update(log_entries).where(log_entries.c.idx == 7).values(kind="export"))
    with pytest.raises(LogError, match="entry 7: its kind column says 'export', the entry 'decision'"):
        log.verify()
    assert all(e["type"] == "export" for e in log.entries("export"))  # the filter never trusts the column alone


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=256), st.data())
def test_kept_tile_subtrees_are_the_tiles_own_whatever_was_kept_before(hashes: list[bytes],
                                                                       data: st.DataObject) -> None:
    """The subtrees of a tile are kept by its bytes and extended by one hash after an append: whatever
    prefixes (or other tiles) were kept before, they are exactly the tree of the tile's own hashes."""
    tiles._levels_of.clear()
    for k in sorted(data.draw(st.sets(st.integers(1, len(hashes))))):  # the last tile as the log grew
        tiles.tile_levels(b"".join(hashes[:k]))
    other = bytearray(b"".join(hashes))
    other[data.draw(st.integers(0, len(other) - 1))] ^= 1  # the same tile, altered in the catalog
    for blob, leaves in ((b"".join(hashes), hashes), (bytes(other), [bytes(other[i:i + 32]) for i in
                                                                    range(0, len(other), 32)])):
        assert tiles.tile_levels(blob) == tuple(tuple(level) for level in tree_levels(leaves))


def test_a_second_fact_in_the_same_entry_is_judged_by_value_and_named_by_field() -> None:
    """The state keeps a fact's digest and reads the fact back to name fields: an id twice in one entry
    must read back the fact that was kept (the first), and the same values written differently are
    the same fact, as they were when the state kept whole facts."""
    from fleetgate.audit.state import LogState

    entry = {"type": "ingest", "facts": {"assets": [{"id": "A", "bytes": 5}, {"id": "A", "bytes": 5.0},
                                                    {"id": "B", "bytes": 5}, {"id": "B", "bytes": 6},
                                                    {"id": "C", "bytes": None}, {"id": "C"}]}}
    state = LogState("cn-shanghai", entry_at=lambda index: entry if index == 3 else None)
    state.apply(3, entry)
    assert [p.what for p in state.problems] == [
        "assets B: a second, different fact (bytes); the first is in entry 3",
        "assets C: a second, different fact (*); the first is in entry 3"]
    assert state.read_fact("assets", "B", state.facts["assets"]["B"]) == {"id": "B", "bytes": 5}
