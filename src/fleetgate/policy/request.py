"""The decision request: a public API, accepted as JSON or YAML, checked field by field.

Unknown kinds and features are not errors (they decide LOCAL_ONLY as `unclassified`); unknown
fields, wrong types, negative counts, unknown zones, modes, exemptions, exemption purposes and
legal bases are, and the message names the field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetgate.errors import InvalidInputError
from fleetgate.policy.vocabulary import EXEMPTION_PURPOSES, EXEMPTIONS, LEGAL_BASES, MODES, ZONES

COUNTRY = re.compile(r"^[A-Z]{2}\Z")
ITEM_FIELDS = {"id", "kind", "features", "anonymized", "pseudonymized", "exemption", "subjects", "aggregated_samples",
               "dp_noise_multiplier", "exemption_basis", "legal_basis", "pipia_ref", "geo_confidentiality_processed"}


class RequestError(InvalidInputError):
    """A decision request that does not match the documented fields."""


@dataclass(frozen=True)
class ListRenewal:
    """A renewal of a free-trade-zone list the workspace has on record (its reference and last day)."""

    ref: str
    until: dt.date


@dataclass(frozen=True)
class Exporter:
    ciio: bool = False
    zone: str | None = None
    surveying_approval: bool = False
    # The Lingang general data list's trial ended; a renewal the workspace records keeps it usable.
    lingang_list_renewal: ListRenewal | None = None
    # People whose PI the exporter processes in all (before 22 March 2024 a route condition:
    # 2022 Security Assessment Measures Art 4(2), Standard Contract Measures Art 4(2)). None: unknown.
    processed_pi_subjects: int | None = None


@dataclass(frozen=True)
class ExemptionBasis:
    """What an exemption claim rests on: the purpose, and the filing, report or rules it relies on."""

    purpose: str
    ref: str = ""
    filed_on: dt.date | None = None  # when the report or filing was made (it must come first)


@dataclass(frozen=True)
class LegalBasis:
    """The PIPL Art 13 basis a PI item is exported on, with the reference of its record."""

    type: str
    ref: str = ""


@dataclass(frozen=True)
class Item:
    id: str
    kind: str
    features: tuple[str, ...] = ()
    anonymized: bool = False
    pseudonymized: bool = False
    exemption: str | None = None
    subjects: int | None = None  # None: not stated; a PI item without it stays local
    # model updates: how many training samples the update aggregates, and the DP noise added
    # (noise multiplier on the clipping norm; 0 = none)
    aggregated_samples: int = 0
    dp_noise_multiplier: float = 0.0
    exemption_basis: ExemptionBasis | None = None
    legal_basis: LegalBasis | None = None
    pipia_ref: str | None = None  # the PI protection impact assessment covering this export
    # processed with the state-approved geographic-information confidentiality technique
    geo_confidentiality_processed: bool = False

    def shape(self) -> tuple:
        """Everything but the id: items with one shape decide alike within one request."""
        return (self.kind, tuple(sorted(set(self.features))), self.anonymized, self.pseudonymized,
                self.exemption, self.subjects is None, self.aggregated_samples, self.dp_noise_multiplier,
                self.exemption_basis, self.legal_basis, self.pipia_ref, self.geo_confidentiality_processed)


@dataclass(frozen=True)
class Ytd:
    pi_subjects: int = 0
    spi_subjects: int = 0
    # The previous calendar year: the rules before 22 March 2024 count since 1 January of the
    # previous year (2022 Security Assessment Measures Art 4(3)). None: unknown.
    prev_pi_subjects: int | None = None
    prev_spi_subjects: int | None = None

    @property
    def prev_year_known(self) -> bool:
        return self.prev_pi_subjects is not None and self.prev_spi_subjects is not None


@dataclass(frozen=True)
class DecisionRequest:
    destination: str
    items: tuple[Item, ...]
    exporter: Exporter = field(default_factory=Exporter)
    mode: str = "transfer"
    as_of: dt.date = field(default_factory=dt.date.today)
    ytd: Ytd | None = None  # None: read it from the ledger

    def to_dict(self) -> dict[str, Any]:
        """The request in its public shape; fields left at their defaults are omitted where they are new."""
        exporter: dict[str, Any] = {"ciio": self.exporter.ciio, "zone": self.exporter.zone,
                                    "surveying_approval": self.exporter.surveying_approval}
        if self.exporter.lingang_list_renewal is not None:
            renewal = self.exporter.lingang_list_renewal
            exporter["lingang_list_renewal"] = {"ref": renewal.ref, "until": renewal.until.isoformat()}
        if self.exporter.processed_pi_subjects is not None:
            exporter["processed_pi_subjects"] = self.exporter.processed_pi_subjects
        out: dict[str, Any] = {
            "as_of": self.as_of.isoformat(),
            "exporter": exporter,
            "destination": self.destination,
            "mode": self.mode,
            "items": [_item_dict(i) for i in self.items],
        }
        if self.ytd is not None:
            out["ytd"] = {"pi_subjects": self.ytd.pi_subjects, "spi_subjects": self.ytd.spi_subjects}
            if self.ytd.prev_pi_subjects is not None:
                out["ytd"]["prev_year_pi_subjects"] = self.ytd.prev_pi_subjects
            if self.ytd.prev_spi_subjects is not None:
                out["ytd"]["prev_year_spi_subjects"] = self.ytd.prev_spi_subjects
        return out


def _item_dict(item: Item) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id, "kind": item.kind, "features": list(item.features),
                           "anonymized": item.anonymized, "pseudonymized": item.pseudonymized,
                           "exemption": item.exemption, "subjects": item.subjects}
    if item.kind == "model_update":
        out |= {"aggregated_samples": item.aggregated_samples, "dp_noise_multiplier": item.dp_noise_multiplier}
    if item.exemption_basis is not None:
        basis = item.exemption_basis
        out["exemption_basis"] = {"purpose": basis.purpose, "ref": basis.ref,
                                  "filed_on": basis.filed_on.isoformat() if basis.filed_on else None}
    if item.legal_basis is not None:
        out["legal_basis"] = {"type": item.legal_basis.type, "ref": item.legal_basis.ref}
    if item.pipia_ref is not None:
        out["pipia_ref"] = item.pipia_ref
    if item.geo_confidentiality_processed:
        out["geo_confidentiality_processed"] = True
    return out


def _fields(doc: Any, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise RequestError(f"{where}: must be a mapping")
    for key in doc:
        if key not in allowed:
            raise RequestError(f"{where + '.' if where != 'request' else ''}{key}: unknown field "
                               f"(allowed: {', '.join(sorted(allowed))})")
    return doc


def _bool(doc: Mapping, key: str, where: str) -> bool:
    value = doc.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"{where}.{key}: must be true or false, got {value!r}")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{where}: must be a whole number, got {value!r}")
    if value < 0:
        raise RequestError(f"{where}: must not be negative, got {value}")
    return value


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise RequestError(f"{where}: not a date (YYYY-MM-DD): {value!r}") from None


def _text(value: Any, where: str, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise RequestError(f"{where}: {'required ' if required else 'must be '}text, got {value!r}")
    return value.strip()


def _exporter(doc: Any) -> Exporter:
    ex = _fields(doc or {}, {"ciio", "zone", "surveying_approval", "lingang_list_renewal", "processed_pi_subjects"},
                 "exporter")
    zone = ex.get("zone")
    if zone is not None and zone not in ZONES:
        raise RequestError(f"exporter.zone: unknown zone {zone!r} (known: {', '.join(sorted(ZONES))})")
    renewal = None
    if ex.get("lingang_list_renewal") is not None:
        where = "exporter.lingang_list_renewal"
        body = _fields(ex["lingang_list_renewal"], {"ref", "until"}, where)
        if body.get("until") is None:
            raise RequestError(f"{where}.until: required (the renewal's last day, YYYY-MM-DD)")
        renewal = ListRenewal(ref=_text(body.get("ref"), f"{where}.ref", required=True),
                              until=_date(body["until"], f"{where}.until"))
    processed = ex.get("processed_pi_subjects")
    return Exporter(ciio=_bool(ex, "ciio", "exporter"), zone=zone,
                    surveying_approval=_bool(ex, "surveying_approval", "exporter"), lingang_list_renewal=renewal,
                    processed_pi_subjects=None if processed is None
                    else _count(processed, "exporter.processed_pi_subjects"))


def _ytd(doc: Any) -> Ytd:
    body = _fields(doc, {"pi_subjects", "spi_subjects", "prev_year_pi_subjects", "prev_year_spi_subjects"}, "ytd")
    prev = {key: None if body.get(key) is None else _count(body[key], f"ytd.{key}")
            for key in ("prev_year_pi_subjects", "prev_year_spi_subjects")}
    return Ytd(pi_subjects=_count(body.get("pi_subjects", 0), "ytd.pi_subjects"),
               spi_subjects=_count(body.get("spi_subjects", 0), "ytd.spi_subjects"),
               prev_pi_subjects=prev["prev_year_pi_subjects"], prev_spi_subjects=prev["prev_year_spi_subjects"])


def _exemption_basis(doc: Any, where: str) -> ExemptionBasis | None:
    if doc is None:
        return None
    body = _fields(doc, {"purpose", "ref", "filed_on"}, where)
    purpose = body.get("purpose")
    if purpose not in EXEMPTION_PURPOSES:
        raise RequestError(f"{where}.purpose: must be one of {', '.join(sorted(EXEMPTION_PURPOSES))}, "
                           f"got {purpose!r}")
    filed = body.get("filed_on")
    return ExemptionBasis(purpose=purpose, ref=_text(body.get("ref"), f"{where}.ref"),
                          filed_on=None if filed is None else _date(filed, f"{where}.filed_on"))


def _legal_basis(doc: Any, where: str) -> LegalBasis | None:
    if doc is None:
        return None
    body = _fields(doc, {"type", "ref"}, where)
    kind = body.get("type")
    if kind not in LEGAL_BASES:
        raise RequestError(f"{where}.type: must be one of {', '.join(sorted(LEGAL_BASES))}, got {kind!r}")
    return LegalBasis(type=kind, ref=_text(body.get("ref"), f"{where}.ref"))


def parse_request(doc: Any) -> DecisionRequest:
    """Check a parsed JSON/YAML document and build the request."""
    doc = _fields(doc, {"as_of", "exporter", "destination", "mode", "ytd", "items"}, "request")
    as_of = dt.date.today() if doc.get("as_of") is None else _date(doc["as_of"], "as_of")
    exporter = _exporter(doc.get("exporter"))

    destination = doc.get("destination")
    if not isinstance(destination, str) or not COUNTRY.match(destination):
        raise RequestError(f"destination: an ISO 3166 alpha-2 country code like US is required, got {destination!r}")
    mode = doc.get("mode", "transfer")
    if mode not in MODES:
        raise RequestError(f"mode: must be one of {', '.join(sorted(MODES))}, got {mode!r}")

    ytd = None if doc.get("ytd") is None else _ytd(doc["ytd"])

    raw_items = doc.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise RequestError("items: at least one item is required")
    items: list[Item] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_items):
        where = f"items[{index}]"
        body = _fields(raw, ITEM_FIELDS, where)
        item_id = body.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise RequestError(f"{where}.id: required text")
        if item_id in seen:
            raise RequestError(f"{where}.id: '{item_id}' appears twice")
        seen.add(item_id)
        kind = body.get("kind")
        if not isinstance(kind, str) or not kind:
            raise RequestError(f"{where}.kind: required text")
        features = body.get("features") or []
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise RequestError(f"{where}.features: must be a list of text")
        exemption = body.get("exemption")
        if exemption is not None and exemption not in EXEMPTIONS:
            raise RequestError(f"{where}.exemption: unknown exemption {exemption!r} "
                               f"(known: {', '.join(sorted(EXEMPTIONS))})")
        subjects = body.get("subjects")
        noise = body.get("dp_noise_multiplier", 0.0)
        if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0 <= noise < 1e6:
            raise RequestError(f"{where}.dp_noise_multiplier: must be a number >= 0")
        items.append(Item(
            id=item_id, kind=kind, features=tuple(features),
            anonymized=_bool(body, "anonymized", where), pseudonymized=_bool(body, "pseudonymized", where),
            exemption=exemption,
            subjects=None if subjects is None else _count(subjects, f"{where}.subjects"),
            aggregated_samples=_count(body.get("aggregated_samples", 0), f"{where}.aggregated_samples"),
            dp_noise_multiplier=float(noise),
            exemption_basis=_exemption_basis(body.get("exemption_basis"), f"{where}.exemption_basis"),
            legal_basis=_legal_basis(body.get("legal_basis"), f"{where}.legal_basis"),
            pipia_ref=None if body.get("pipia_ref") is None else _text(body["pipia_ref"], f"{where}.pipia_ref"),
            geo_confidentiality_processed=_bool(body, "geo_confidentiality_processed", where),
        ))
    return DecisionRequest(destination=destination, items=tuple(items), exporter=exporter, mode=mode,
                           as_of=as_of, ytd=ytd)


def load_request(path: Path) -> DecisionRequest:
    """Read a request file (.json, .yaml or .yml; '-' is not accepted here, pass the text instead)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RequestError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_request_text(text, str(path))


def parse_request_text(text: str, name: str = "request") -> DecisionRequest:
    """Parse JSON or YAML text (JSON is YAML, but JSON errors read better from the JSON parser)."""
    try:
        doc = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RequestError(f"{name}: not valid JSON or YAML: {' '.join(str(exc).split())}") from exc
    try:
        return parse_request(doc)
    except RequestError as exc:
        raise RequestError(f"{name}: {exc.message}") from None
