"""Key files of a region, created on first use with owner-only permissions.

    <keys dir>/<region>/pseudonym.key   32 random bytes: HMAC-SHA256 key for pseudonyms
    <keys dir>/<region>/signing.key     Ed25519 private key (raw 32 bytes): signs packages, checkpoints
    <keys dir>/<region>/signing.pub     its public key (hex), for auditors; `audit verify` checks it against
                                        the key pinned in the log's first entry
    <keys dir>/<region>/witness.key     Ed25519 private key of the region's witness

Nothing here logs or returns the secrets themselves; callers get pseudonyms, signatures and
public keys. The export gate refuses any path under the keys folder.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fleetgate.errors import ConfigError


def _create_once(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")  # one per writer
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replace an existing key: a second writer loses the race cleanly
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


class KeyStore:
    """The key folder of one region."""

    def __init__(self, root: Path, region: str) -> None:
        self.folder = Path(root) / region
        self.region = region

    def _secret(self, name: str) -> bytes:
        path = self.folder / name
        if not path.exists():
            _create_once(path, os.urandom(32))
        data = path.read_bytes()
        if len(data) != 32:
            raise ConfigError(f"{path}: a key file holds exactly 32 bytes; this one holds {len(data)}")
        return data

    def pseudonym_key(self) -> bytes:
        """The HMAC key for pseudonyms (used in-process only)."""
        return self._secret("pseudonym.key")

    def signing_key(self, name: str = "signing") -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self._secret(f"{name}.key"))

    def public_key(self, name: str = "signing") -> bytes:
        public = self.signing_key(name).public_key().public_bytes(serialization.Encoding.Raw,
                                                                  serialization.PublicFormat.Raw)
        published = self.folder / f"{name}.pub"
        if not published.exists():
            _create_once(published, public.hex().encode() + b"\n")
        return public

    def published_public_key(self, name: str = "signing") -> bytes | None:
        """The public key as published in `<name>.pub` (what auditors copy), or None if absent or unreadable."""
        try:
            return bytes.fromhex((self.folder / f"{name}.pub").read_text().strip())
        except (OSError, ValueError):
            return None

    def sign(self, message: bytes, name: str = "signing") -> bytes:
        return self.signing_key(name).sign(message)

    def paths(self) -> list[Path]:
        """Every secret file of the region, for the gate's refusal check."""
        return sorted(self.folder.glob("*.key")) if self.folder.exists() else []


def normalize_identifier(value: str) -> str:
    """One spelling per identifier: NFKC, no spaces, upper case (VINs, plates, IDs are case-free)."""
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


def pseudonym(key: bytes, value: str, domain: str) -> str:
    """Keyed pseudonym: HMAC-SHA256 over domain and the normalized value, 32 hex chars.

    The domain (vin, phone, person, ...) keeps equal strings of different kinds apart.
    """
    mac = hmac.new(key, f"{domain}\x00{normalize_identifier(value)}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def public_key_hex(public: bytes) -> str:
    return public.hex()


def verify_signature(public: bytes, signature: bytes, message: bytes) -> bool:
    """Check an Ed25519 signature; False rather than an exception for a bad one."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def keyed_digest(key: bytes, domain: str, value: str) -> str:
    """HMAC-SHA256 of the exact text (not normalized: a changed letter must change it) under a domain.

    What log facts hold in place of values that may name a person (a VIN in a path, a clip id)."""
    return "hmac:" + hmac.new(key, f"{domain}\x00{value}".encode(), hashlib.sha256).hexdigest()[:32]
