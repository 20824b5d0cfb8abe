"""Scan every byte under a workspace for a person's identifiers: raw bytes, sealed blobs opened with
the keyring's surviving keys, and Parquet decoded (its columns are compressed, so raw bytes miss them)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fleetgate.keys import KeyStore
from fleetgate.store.keyring import KEYRING_FILE, Keyring
from fleetgate.store.sealed import MAGIC, unseal


@dataclass
class ScanResult:
    files: int = 0
    bytes: int = 0
    sealed_readable: int = 0
    sealed_unreadable: int = 0  # data key destroyed: nothing of it can be read any more
    parquet_decoded: int = 0
    hits: list[str] = field(default_factory=list)  # "path: which identifier, where"


def _texts(data: bytes) -> list[tuple[str, bytes]]:
    out = [("bytes", data)]
    if data[:4] == b"PAR1":
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError):
            return out
        out.append(("parquet", json.dumps(table.to_pylist(), ensure_ascii=False, default=str).encode("utf-8")))
    return out


def scan(root: Path, needles: dict[str, str], region: str = "cn-shanghai", keys_root: Path | None = None,
         skip: tuple[Path, ...] = ()) -> ScanResult:
    """Every file under `root` (but `skip`), looked at for each needle (name -> identifier); sealed blobs
    are opened with every region's keyring (`region` names the one the test is about)."""
    keys_root = keys_root or root / "keys"
    rings = [Keyring(path, KeyStore(keys_root, path.parent.name).pseudonym_key())
             for path in sorted(keys_root.glob(f"*/{KEYRING_FILE}"))]  # every region's surviving keys
    result = ScanResult()
    encoded = {name: value.encode("utf-8") for name, value in needles.items()}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(s == path or s in path.parents for s in skip):
            continue
        data = path.read_bytes()
        result.files += 1
        result.bytes += len(data)
        views = _texts(data)
        if data.startswith(MAGIC) and rings:
            plain = next((p for p in (unseal(data, ring) for ring in rings) if p is not None), None)
            if plain is None:
                result.sealed_unreadable += 1
            else:
                result.sealed_readable += 1
                views += [(f"sealed {how}", v) for how, v in _texts(plain)]
        result.parquet_decoded += sum(1 for how, _ in views if how.endswith("parquet"))
        for how, view in views:
            for name, needle in encoded.items():
                if needle in view:
                    result.hits.append(f"{path.relative_to(root)}: {name} ({how})")
    for ring in rings:
        ring.engine.dispose()
    return result
