"""Accelerators, their Total Processing Performance and Performance Density, and ECCN 3A090.

TPP = max over precisions of dense TOPS × bit length (a datasheet TOPS already counts a MAC as two
operations), per IC; PD = TPP / die area (88 FR 73458, Oct 2023). Policy overlays that are not
parametric (the H20 letter, the Jan 2026 envelope, China-side bans) are dated data on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fleetgate.errors import UsageError

_PRECISION_BITS = {"fp4_tflops": 4, "fp8_tflops": 8, "int8_tops": 8, "bf16_tflops": 16, "tf32_tflops": 32}
_REQUIRED = ("name", "vendor", "origin", "datacenter", "bf16_tflops", "memory_gb", "memory_bw_tbs", "tdp_w")


@dataclass(frozen=True)
class Chip:
    """One accelerator with dense peak figures and where they come from."""

    name: str
    vendor: str
    origin: str
    datacenter: bool
    bf16_tflops: float
    memory_gb: float
    memory_bw_tbs: float
    tdp_w: float
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    fp4_tflops: float | None = None
    tf32_tflops: float | None = None
    interconnect: str = "NVLink"
    interconnect_gbs: float | None = None
    die_mm2: float | None = None
    ics: int = 1
    mfu: float = 0.35
    goodput: float = 0.9
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def tpp(self) -> float:
        """Total Processing Performance per IC: max over precisions of dense TOPS × bits."""
        best = 0.0
        for attr, bits in _PRECISION_BITS.items():
            value = getattr(self, attr)
            if value:
                best = max(best, float(value) * bits)
        return best / self.ics

    @property
    def pd(self) -> float | None:
        """Performance Density: TPP over the applicable die area, or None when the area is unknown."""
        return self.tpp / self.die_mm2 if self.die_mm2 else None

    def peak_tflops(self, precision: str) -> float:
        """Dense peak at the training precision (bf16 or fp8)."""
        value = getattr(self, f"{precision}_tflops", None)
        if not value:
            raise UsageError(f"chip {self.name}: no {precision} figure; train it in bf16")
        return float(value)


def classify_3a090(chip: Chip) -> str:
    """ECCN 3A090 class by the planner rule of export-control.md §2."""
    tpp, pd = chip.tpp, chip.pd
    if not chip.datacenter:
        return "3A090.a.1 (non-datacenter, NAC-eligible)" if tpp >= 4800 else "not 3A090 (Note 2, consumer)"
    if tpp >= 4800:
        return "3A090.a.1"
    if pd is None:
        return "unknown (no die area)" if tpp >= 1600 else "not 3A090"
    if tpp >= 1600 and pd >= 5.92:
        return "3A090.a.2"
    if 2400 <= tpp < 4800 and 1.6 <= pd < 5.92:
        return "3A090.b.1"
    if tpp >= 1600 and 3.2 <= pd < 5.92:
        return "3A090.b.2"
    return "not 3A090"


@dataclass(frozen=True)
class ChipStatus:
    """What a chip means for a data center in `country` on `as_of`."""

    eccn: str
    us_licence: str
    overlays: list[str]
    needs_licence: bool


def _load_yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load(resources.files("fleetgate.compute").joinpath(f"data/{name}").read_text("utf-8"))


@cache
def overlays() -> dict[str, Any]:
    """The dated policy overlays shipped with fleetgate."""
    return _load_yaml("overlays.yaml")


def _chip_from(doc: dict[str, Any], where: str) -> Chip:
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise UsageError(f"{where}: chip {doc.get('name', '?')!r}: missing {', '.join(missing)}")
    known = set(Chip.__dataclass_fields__)
    unknown = sorted(set(doc) - known)
    if unknown:
        raise UsageError(f"{where}: chip {doc['name']!r}: unknown field {unknown[0]!r}")
    return Chip(**doc)


def load_chips(extra: Path | None = None) -> dict[str, Chip]:
    """The shipped chips, plus (or overridden by) chips from a user YAML file."""
    chips = {c["name"]: _chip_from(c, "chips.yaml") for c in _load_yaml("chips.yaml")["chips"]}
    if extra is not None:
        try:
            doc = yaml.safe_load(Path(extra).read_text("utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"{extra}: cannot read chips file: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("chips"), list):
            raise UsageError(f"{extra}: expected a mapping with a 'chips' list")
        for c in doc["chips"]:
            chips[c["name"]] = _chip_from(c, str(extra))
    return chips


def find_chip(chips: dict[str, Chip], name: str) -> Chip:
    """A chip by name, case- and space-insensitively."""
    key = name.replace(" ", "").lower()
    for chip in chips.values():
        if chip.name.replace(" ", "").lower() == key:
            return chip
    raise UsageError(f"unknown chip {name!r}; known: {', '.join(chips)}")


def _applies(overlay: dict[str, Any], chip: Chip, as_of: date) -> bool:
    if overlay["effective"] > as_of:
        return False
    if "chips" in overlay and chip.name not in overlay["chips"]:
        return False
    if "origin" in overlay and chip.origin != overlay["origin"]:
        return False
    return not ("origin_not" in overlay and chip.origin == overlay["origin_not"])


def chip_status(chip: Chip, country: str = "CN", as_of: date | None = None) -> ChipStatus:
    """Classify a chip and apply the dated overlays for a data center in `country`."""
    as_of = as_of or date.today()
    data = overlays()
    eccn = classify_3a090(chip)
    controlled = eccn.startswith("3A090")
    restricted_country = country.upper() in data["licence_countries"]
    notes: list[str] = []
    licence = "no licence required (NLR)"
    needs = False
    if chip.origin == "US" and restricted_country and controlled:
        licence, needs = "licence required: presumption of denial", True
    for overlay in data["overlays"]:
        if not _applies(overlay, chip, as_of):
            continue
        if overlay["side"] == "US" and not restricted_country:
            continue
        if overlay["side"] == "CN" and country.upper() != "CN":
            continue
        if overlay["effect"] == "case_by_case":
            env = overlay["envelope"]
            if not (chip.origin == "US" and controlled and chip.tpp < env["tpp_below"]
                    and chip.memory_bw_tbs * 1000 < env["memory_bw_gbs_below"]):
                continue
            licence = "licence required: case-by-case (Jan 2026 envelope, 25% tariff)"
        elif overlay["effect"] == "licence_required":
            licence, needs = "licence required (is-informed letter, Apr 2025)", True
        elif overlay["effect"] == "licensed_with_levy":
            licence = "licence required; licences granted Aug 2025 with a 15% levy"
        elif overlay["effect"] == "gp10_warning":
            licence = "not a US export (PRC-made); BIS GP10 guidance flags its use"
        notes.append(f"{overlay['effective']} {overlay['id']}: {overlay['text']}")
    return ChipStatus(eccn=eccn, us_licence=licence, overlays=notes, needs_licence=needs)
