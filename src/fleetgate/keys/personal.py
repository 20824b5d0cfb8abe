"""Personal Ed25519 keys: each person signs with their own key, which the workspace never holds.

    FILE       PKCS#8 PEM private key, mode 0600, optionally encrypted with a passphrase
    FILE.pub   SubjectPublicKeyInfo PEM public key, registered with `fleetgate principals add`

Signing goes through securesystemslib's `Signer` interface, so a key on a hardware token
(`securesystemslib.signer.HSMSigner`, PKCS#11) can replace a file without changing the callers.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, Signer, SSlibKey

from fleetgate.errors import UsageError

PASSPHRASE_ENV = "FLEETGATE_KEY_PASSPHRASE"


class KeyFileError(UsageError):
    """A personal key file that is missing, unreadable or of the wrong type."""


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite someone's key
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def new_key_pair(out: Path, passphrase: str | None = None) -> SSlibKey:
    """Write a new key pair to `out` (private, 0600) and `out`.pub; returns the public key."""
    out = Path(out)
    pub = public_path(out)
    for path in (out, pub):
        if path.exists():
            raise KeyFileError(f"{path}: already exists; a key file is never overwritten")
    private = Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    _write_private(out, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              encryption))
    pub.write_bytes(public_pem(private.public_key()))
    return SSlibKey.from_crypto(private.public_key())


def public_path(private: Path) -> Path:
    return Path(str(private) + ".pub")


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path: Path) -> SSlibKey:
    """A registered public key file (PEM); only Ed25519 keys are accepted."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the public key ({exc.strerror})") from exc
    return public_key_from_pem(data, str(path))


def public_key_from_pem(data: bytes, where: str = "public key") -> SSlibKey:
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyFileError(f"{where}: not a PEM public key") from None
    if not isinstance(public, Ed25519PublicKey):
        raise KeyFileError(f"{where}: not an Ed25519 public key")
    return SSlibKey.from_crypto(public)


def key_pem(key: SSlibKey) -> str:
    """The PEM text of a public key, as registered."""
    raw = bytes.fromhex(key.keyval["public"])
    return public_pem(Ed25519PublicKey.from_public_bytes(raw)).decode("ascii")


def load_signer(path: Path, passphrase: str | None = None) -> Signer:
    """A signer for a personal private key file; the passphrase may come from FLEETGATE_KEY_PASSPHRASE."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the private key ({exc.strerror})") from exc
    secret = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
    try:
        private = serialization.load_pem_private_key(data, password=secret.encode() if secret else None)
    except TypeError:
        raise KeyFileError(f"{path}: the key is encrypted; set {PASSPHRASE_ENV} or pass the passphrase") from None
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM private key, or the passphrase is wrong") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


class Actor:
    """A person acting now: their registered name and the signer of their own key."""

    def __init__(self, name: str, signer: Signer) -> None:
        self.name = name
        self.signer = signer

    @property
    def keyid(self) -> str:
        return self.signer.public_key.keyid

    @classmethod
    def from_key_file(cls, name: str, path: Path, passphrase: str | None = None) -> Actor:
        return cls(name, load_signer(path, passphrase))
