"""`fleetgate verify-package`: what an overseas recipient runs on a package it received.

Checks the publish marker, the manifest's Ed25519 signature, every data file's SHA-256, that the
export log entry names exactly these files, and that the entry is included under the signed
checkpoint. Needs nothing but the package (and, ideally, the region's public key pinned).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from fleetgate.audit.log import Checkpoint, LogError, canonical
from fleetgate.audit.merkle import leaf_hash, verify_inclusion
from fleetgate.errors import FleetgateError
from fleetgate.keys import verify_signature


class PackageInvalid(FleetgateError):
    """A package that fails a check; the message names the first failure."""


@dataclass
class PackageReport:
    package_id: str
    files: int
    bytes: int
    log_index: int
    tree_size: int
    key: str
    checks: list[str] = field(default_factory=list)


def verify_package_at(location: str | Path, pinned_key: str | None = None) -> PackageReport:
    """verify_package for a folder or a package in a bucket (s3://bucket/prefix/pkg-…), fetched whole first."""
    text = str(location)
    if "://" not in text:
        return verify_package(Path(text), pinned_key)
    import tempfile

    import fsspec

    fs, path = fsspec.core.url_to_fs(text.rstrip("/"))
    name = path.rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="fleetgate-package-") as tmp:
        try:
            fs.get(path + "/", f"{tmp}/{name}/", recursive=True)
        except (OSError, ValueError) as exc:
            raise PackageInvalid(f"{text}: cannot fetch the package: {exc}") from exc
        return verify_package(Path(tmp) / name, pinned_key)


def verify_package(folder: Path, pinned_key: str | None = None) -> PackageReport:
    folder = Path(folder)
    if not (folder / "PUBLISHED").exists():
        raise PackageInvalid(f"{folder}: not a published package (no PUBLISHED marker)")
    try:
        data = (folder / "manifest.json").read_bytes()
        manifest = json.loads(data)
        signature = bytes.fromhex((folder / "manifest.sig").read_text().strip())
        entry_bytes = (folder / "log_entry.json").read_bytes()
        entry = json.loads(entry_bytes)
        proof = json.loads((folder / "inclusion.json").read_text())
    except (OSError, ValueError) as exc:
        raise PackageInvalid(f"{folder}: unreadable package file: {exc}") from exc
    checks = []
    key_hex = manifest.get("signing_key", {}).get("ed25519", "")
    if pinned_key and pinned_key.lower() != key_hex.lower():
        raise PackageInvalid(f"{folder}: signed by key {key_hex[:16]}…, not the pinned key {pinned_key[:16]}…")
    public = bytes.fromhex(key_hex)
    if not verify_signature(public, signature, data):
        raise PackageInvalid(f"{folder}/manifest.sig: the signature does not verify")
    checks.append("manifest signature")
    total = 0
    named = set()
    for asset in manifest["assets"]:
        path = folder / "data" / asset["file"]
        named.add(asset["file"])
        if not path.is_file():
            raise PackageInvalid(f"{path}: missing")
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(4 << 20):
                h.update(chunk)
        if h.hexdigest() != asset["sha256"]:
            raise PackageInvalid(f"{path}: sha256 differs from the manifest")
        total += path.stat().st_size
    extra = sorted(p.name for p in (folder / "data").iterdir() if p.name not in named)
    if extra:
        raise PackageInvalid(f"{folder}/data/{extra[0]}: not in the manifest")
    checks.append(f"{len(named)} file hashes")
    if canonical(entry) != entry_bytes or entry.get("type") != "export" or \
            entry.get("package_id") != manifest["package_id"]:
        raise PackageInvalid(f"{folder}/log_entry.json: not the canonical export entry of this package")
    if sorted((a["asset_id"], a["sha256"]) for a in entry["assets"]) != \
            sorted((a["asset_id"], a["sha256"]) for a in manifest["assets"]):
        raise PackageInvalid(f"{folder}/log_entry.json: the logged assets differ from the manifest's")
    try:
        cp = Checkpoint.parse(manifest["log"]["checkpoint"])
    except LogError as exc:
        raise PackageInvalid(f"{folder}/manifest.json: log.checkpoint: {exc}") from exc
    if not cp.verify_signature(manifest["signing_key"]["name"], public):
        raise PackageInvalid(f"{folder}: the checkpoint signature does not verify")
    leaf = leaf_hash(entry_bytes)
    ok = (proof.get("index") == manifest["log"]["index"] == entry.get("index") and proof.get("size") == cp.size
          and verify_inclusion(leaf, int(proof["index"]), cp.size, [bytes.fromhex(p) for p in proof["proof"]],
                               cp.root))
    if not ok:
        raise PackageInvalid(f"{folder}/inclusion.json: the export entry is not included under the checkpoint")
    checks += ["export entry logged", f"inclusion under checkpoint of size {cp.size}"]
    return PackageReport(manifest["package_id"], len(named), total, int(entry["index"]), cp.size, key_hex, checks)
