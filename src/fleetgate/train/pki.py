"""The federation's keys and certificates, made with `cryptography`.

A deployment has its own certificate authority: it signs the SuperLink's TLS certificate, and every
SuperNode trusts that CA alone (`--root-certificates`), so a SuperNode talks to this deployment's
SuperLink and nothing else. Each region's SuperNode holds an EC P-384 key (what Flower's node
authentication accepts: a NIST curve, OpenSSH encoding); the SuperLink registers the public half and
refuses any node whose requests are not signed by a registered key. Private keys are written
owner-only and never replaced: a rerun of `fleetgate federation init` keeps them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetgate.errors import ConfigError

CA_DAYS = 5 * 365
SERVER_DAYS = 397  # what browsers accept for a server certificate; renew with `federation init --renew-tls`
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # the SuperLink's own SuperExec dials it on loopback


def write_private(path: Path, data: bytes) -> None:
    """Write a secret owner-only, atomically, never over an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # a concurrent writer loses cleanly and the first key stays
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: not an EC private key")
    return key


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a PEM certificate ({exc})") from None


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)


def ensure_ca(cert_path: Path, key_path: Path, name: str) -> x509.Certificate:
    """The deployment's CA certificate, made (with its key) on first use."""
    if cert_path.exists():
        return load_certificate(cert_path)
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetgate"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start, end = _validity(CA_DAYS)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA384()))
    write_private(key_path, _pem_key(key))
    write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def certificate_names(cert: x509.Certificate) -> set[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def issue_server_certificate(ca_cert_path: Path, ca_key_path: Path, cert_path: Path, key_path: Path,
                             names: list[str]) -> x509.Certificate:
    """A TLS server certificate for the SuperLink, valid for `names` and loopback, signed by the CA."""
    ca_cert, ca_key = load_certificate(ca_cert_path), _load_key(ca_key_path)
    key = _load_key(key_path) if key_path.exists() else _new_key()
    start, end = _validity(SERVER_DAYS)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetgate"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(_san([*names, *LOOPBACK_NAMES]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA384()))
    if not key_path.exists():
        write_private(key_path, _pem_key(key))
    write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def ensure_node_key(path: Path, comment: str) -> str:
    """A SuperNode's EC P-384 key (OpenSSH, as Flower reads it), made once; returns the public key line."""
    if not path.exists():
        key = _new_key()
        write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    return node_public_key(path, comment)


def node_public_key(path: Path, comment: str = "") -> str:
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not an OpenSSH private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path}: a SuperNode key must be an EC key on a NIST curve (P-384)")
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".strip()


def public_key_bytes(line: str) -> bytes:
    """The public key of an OpenSSH line in the encoding Flower's SuperLink registers (PEM SPKI)."""
    try:
        key = serialization.load_ssh_public_key(line.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not an OpenSSH public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("a SuperNode key must be an EC key on a NIST curve (P-384)")
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
