"""What an erasure reaches outside the store: drop folders inside the workspace that ingest read from,
and documents left in the workspace (plan files, reports).

A drop kept under the workspace (the demo keeps its sample fleet in `<home>/drops/`) is a copy of
the person's data at rest like any other. Their vehicle's folders are deleted, their rows taken out
of the drop's tables and their entries out of its JSON files, each file replaced atomically. Drops
outside the workspace belong to whoever uploaded them; the erasure names how many there are.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fleetgate.classify.pii_scan import ENTITIES
from fleetgate.keys.region_keys import pseudonym
from fleetgate.store.blobs import write_durably
from fleetgate.subjects.footprint import Scanner, _json_strings, strip_document


def scrub_drop(drop: Path, person: set[str], key: bytes) -> dict[str, int]:
    """Remove the person from one drop folder; returns what changed."""
    out = {"vehicle_folders": 0, "table_rows": 0, "json_entries": 0}
    scan = Scanner(key)
    vehicles = drop / "vehicles"
    for folder in sorted(vehicles.iterdir()) if vehicles.is_dir() else []:
        if folder.is_dir() and pseudonym(key, folder.name, "vin") in person:
            shutil.rmtree(folder)
            out["vehicle_folders"] += 1
    for path in sorted(drop.rglob("*.parquet")):
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError):
            continue
        keep = [not (r & person) for r in scan.rows(table)]
        if not all(keep):
            buf = io.BytesIO()
            pq.write_table(table.filter(pa.array(keep)), buf, compression="zstd")
            write_durably(path, buf.getvalue())
            out["table_rows"] += keep.count(False)
    for path in sorted(drop.rglob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        strings = sorted(set(_json_strings(doc)))
        naming = {s for s, found in zip(strings, scan.texts(strings), strict=True) if found & person}
        if naming:
            stripped, removed = strip_document(doc, naming)
            write_durably(path, (json.dumps(stripped, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode())
            out["json_entries"] += removed
    return out


def scrub_drops(home: Path, drop_paths: list[str], person: set[str], key: bytes) -> dict[str, Any]:
    """Every recorded drop folder under the workspace, scrubbed; those elsewhere counted."""
    total: dict[str, Any] = {"drops": 0, "vehicle_folders": 0, "table_rows": 0, "json_entries": 0, "outside": 0}
    home = home.resolve()
    for p in sorted(set(drop_paths)):
        drop = Path(p)
        if not drop.is_dir():
            continue
        if home not in drop.resolve().parents:
            total["outside"] += 1
            continue
        counts = scrub_drop(drop, person, key)
        total["drops"] += 1
        for k, v in counts.items():
            total[k] += v
    return total


# Folders of the workspace the erasure handles by their own rules (or that hold no one's data).
MANAGED = {"regions", "keys", "destinations", "access", "witness", "drops", "federation"}
TEXT_LIMIT = 64 << 20
REDACTED = "[已删除]"  # "[erased]"


def scrub_documents(home: Path, person: set[str], key: bytes) -> dict[str, int]:
    """Documents fleetgate or its operator left in the workspace (plan files, reports): JSON loses the
    entries that name the person, other text has their identifiers replaced."""
    out = {"json": 0, "text": 0}
    scan = Scanner(key)
    for path in sorted(home.rglob("*")):
        rel = path.relative_to(home).parts
        if not path.is_file() or rel[0] in MANAGED or path.name.startswith(".") or path.suffix == ".key" \
                or path.stat().st_size > TEXT_LIMIT:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if path.suffix == ".json":
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
            if doc is not None:
                strings = sorted(set(_json_strings(doc)))
                naming = {s for s, found in zip(strings, scan.texts(strings), strict=True) if found & person}
                if naming:
                    stripped, _ = strip_document(doc, naming)
                    write_durably(path, (json.dumps(stripped, ensure_ascii=False, indent=2) + "\n").encode())
                    out["json"] += 1
                continue
        values = _naming_values(scan, text.splitlines(), person)
        if values:
            for value in sorted(values, key=len, reverse=True):
                text = text.replace(value, REDACTED)
            write_durably(path, text.encode("utf-8"))
            out["text"] += 1
    return out


def _naming_values(scan: Scanner, lines: list[str], person: set[str]) -> set[str]:
    """The identifier values in these lines that are the person's: every match of every pattern (a
    report line may name several), pseudonymized and matched; check digits need not hold to redact."""
    found = set()
    for line in lines:
        for entity in ENTITIES:
            for m in re.finditer(entity.pattern, line):
                if pseudonym(scan.key, m.group("v"), entity.domain) in person:
                    found.add(m.group("v"))
        for m in re.finditer(r"[0-9a-f]{32}", line):
            if m.group(0) in person:
                found.add(m.group(0))
    return found
