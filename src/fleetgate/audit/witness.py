"""A witness: a second key that cosigns a checkpoint only after checking it extends the last one.

Its state (the last size and root it cosigned for an origin, and the log's public key) is written
atomically to its own folder, so after a restart it still refuses a smaller tree (rollback), a
different tree of the same or larger size (fork), or a log signed by another key. Cosignatures
follow C2SP tlog-cosignature v1 (Ed25519, with a timestamp in the signed message).
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

from fleetgate.audit.log import Checkpoint, key_id
from fleetgate.audit.merkle import verify_consistency
from fleetgate.errors import FleetgateError
from fleetgate.keys import KeyStore, verify_signature


class WitnessRefused(FleetgateError):
    """The witness will not cosign: wrong signature, a rollback or a fork."""


def cosignature_message(cp: Checkpoint, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + cp.body.encode()


class Witness:
    """A witness with its own key and state folder."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = Path(folder)
        self.name = name
        self.keys = KeyStore(self.folder, "keys")

    def public_key(self) -> bytes:
        return self.keys.public_key("witness")

    def _state_path(self, origin: str) -> Path:
        return self.folder / "state" / (origin.replace("/", "_") + ".json")

    def state(self, origin: str) -> dict | None:
        path = self._state_path(origin)
        return json.loads(path.read_text()) if path.exists() else None

    def _save(self, origin: str, size: int, root: bytes, log_key: bytes) -> None:
        path = self._state_path(origin)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"origin": origin, "size": size, "root": root.hex(), "log_key": log_key.hex()}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def cosign(self, cp: Checkpoint, log_key_name: str, log_public: bytes, proof: list[bytes]) -> Checkpoint:
        """Verify the log's signature and consistency with the last cosigned tree, then cosign."""
        if not cp.verify_signature(log_key_name, log_public):
            raise WitnessRefused(f"checkpoint of size {cp.size}: the log's signature does not verify")
        last = self.state(cp.origin)
        if last is not None:
            pinned = last.get("log_key")
            if pinned and pinned != log_public.hex():
                # a replaced region key could re-sign a rewritten history; the witness knows the first one
                raise WitnessRefused(f"the log {cp.origin} is signed with key {log_public.hex()[:16]}…, not the key "
                                     f"{pinned[:16]}… this witness has cosigned for")
            old_size, old_root = int(last["size"]), bytes.fromhex(last["root"])
            if cp.size < old_size:
                raise WitnessRefused(f"rollback: size {cp.size} is smaller than the cosigned size {old_size}")
            if cp.size == old_size and cp.root != old_root:
                raise WitnessRefused(f"fork: a different root for the cosigned size {old_size}")
            if cp.size > old_size and not verify_consistency(old_size, cp.size, proof, old_root, cp.root):
                raise WitnessRefused(f"fork: size {cp.size} is not consistent with the cosigned size {old_size}")
        timestamp = int(time.time())
        signature = self.keys.sign(cosignature_message(cp, timestamp), "witness")
        blob = key_id(self.name, self.public_key(), 0x04) + struct.pack(">Q", timestamp) + signature
        self._save(cp.origin, cp.size, cp.root, log_public)
        return Checkpoint(cp.origin, cp.size, cp.root, cp.signatures + ((self.name, blob),))


def verify_cosignature(cp: Checkpoint, name: str, public: bytes) -> bool:
    """Whether `cp` carries a valid cosignature by witness `name`."""
    kid = key_id(name, public, 0x04)
    for sig_name, blob in cp.signatures:
        if sig_name == name and len(blob) == 76 and blob[:4] == kid:
            (timestamp,) = struct.unpack(">Q", blob[4:12])
            if verify_signature(public, blob[12:], cosignature_message(cp, timestamp)):
                return True
    return False


