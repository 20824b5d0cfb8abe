"""The decision request: a public API, accepted as JSON or YAML, checked field by field.

Unknown kinds and features are not errors (they decide LOCAL_ONLY as `unclassified`); unknown
fields, wrong types, negative counts, unknown zones, modes and exemptions are, and the message
names the field.
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
from fleetgate.policy.vocabulary import EXEMPTIONS, MODES, ZONES

COUNTRY = re.compile(r"^[A-Z]{2}\Z")


class RequestError(InvalidInputError):
    """A decision request that does not match the documented fields."""


@dataclass(frozen=True)
class Exporter:
    ciio: bool = False
    zone: str | None = None
    surveying_approval: bool = False


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

    def shape(self) -> tuple:
        """Everything but the id: items with one shape decide alike within one request."""
        return (self.kind, tuple(sorted(set(self.features))), self.anonymized, self.pseudonymized,
                self.exemption, self.subjects is None, self.aggregated_samples, self.dp_noise_multiplier)


@dataclass(frozen=True)
class Ytd:
    pi_subjects: int = 0
    spi_subjects: int = 0


@dataclass(frozen=True)
class DecisionRequest:
    destination: str
    items: tuple[Item, ...]
    exporter: Exporter = field(default_factory=Exporter)
    mode: str = "transfer"
    as_of: dt.date = field(default_factory=dt.date.today)
    ytd: Ytd | None = None  # None: read it from the ledger

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "as_of": self.as_of.isoformat(),
            "exporter": {"ciio": self.exporter.ciio, "zone": self.exporter.zone,
                         "surveying_approval": self.exporter.surveying_approval},
            "destination": self.destination,
            "mode": self.mode,
            "items": [{"id": i.id, "kind": i.kind, "features": list(i.features), "anonymized": i.anonymized,
                       "pseudonymized": i.pseudonymized, "exemption": i.exemption, "subjects": i.subjects,
                       **({"aggregated_samples": i.aggregated_samples, "dp_noise_multiplier": i.dp_noise_multiplier}
                          if i.kind == "model_update" else {})}
                      for i in self.items],
        }
        if self.ytd is not None:
            out["ytd"] = {"pi_subjects": self.ytd.pi_subjects, "spi_subjects": self.ytd.spi_subjects}
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


def parse_request(doc: Any) -> DecisionRequest:
    """Check a parsed JSON/YAML document and build the request."""
    doc = _fields(doc, {"as_of", "exporter", "destination", "mode", "ytd", "items"}, "request")
    as_of_raw = doc.get("as_of")
    if as_of_raw is None:
        as_of = dt.date.today()
    elif isinstance(as_of_raw, dt.datetime):
        as_of = as_of_raw.date()
    elif isinstance(as_of_raw, dt.date):
        as_of = as_of_raw
    else:
        try:
            as_of = dt.date.fromisoformat(str(as_of_raw))
        except ValueError:
            raise RequestError(f"as_of: not a date (YYYY-MM-DD): {as_of_raw!r}") from None

    ex = _fields(doc.get("exporter") or {}, {"ciio", "zone", "surveying_approval"}, "exporter")
    zone = ex.get("zone")
    if zone is not None and zone not in ZONES:
        raise RequestError(f"exporter.zone: unknown zone {zone!r} (known: {', '.join(sorted(ZONES))})")
    exporter = Exporter(ciio=_bool(ex, "ciio", "exporter"), zone=zone,
                        surveying_approval=_bool(ex, "surveying_approval", "exporter"))

    destination = doc.get("destination")
    if not isinstance(destination, str) or not COUNTRY.match(destination):
        raise RequestError(f"destination: an ISO 3166 alpha-2 country code like US is required, got {destination!r}")
    mode = doc.get("mode", "transfer")
    if mode not in MODES:
        raise RequestError(f"mode: must be one of {', '.join(sorted(MODES))}, got {mode!r}")

    ytd = None
    if doc.get("ytd") is not None:
        body = _fields(doc["ytd"], {"pi_subjects", "spi_subjects"}, "ytd")
        ytd = Ytd(pi_subjects=_count(body.get("pi_subjects", 0), "ytd.pi_subjects"),
                  spi_subjects=_count(body.get("spi_subjects", 0), "ytd.spi_subjects"))

    raw_items = doc.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise RequestError("items: at least one item is required")
    items: list[Item] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_items):
        where = f"items[{index}]"
        body = _fields(raw, {"id", "kind", "features", "anonymized", "pseudonymized", "exemption", "subjects",
                             "aggregated_samples", "dp_noise_multiplier"}, where)
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
