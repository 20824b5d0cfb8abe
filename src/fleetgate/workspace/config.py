"""`fleetgate.toml`: regions, destinations, rule packs and key locations.

Relative paths in the file are relative to the workspace folder, so a workspace can be moved.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from fleetgate.errors import ConfigError, UsageError

CONFIG_FILE = "fleetgate.toml"
CONFIG_VERSION = 1
REGION_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}\Z")

# Where each known region name sits; used as the default country on `init`.
KNOWN_REGION_COUNTRIES = {
    "cn-shanghai": "CN",
    "cn-beijing": "CN",
    "cn-shenzhen": "CN",
    "eu-frankfurt": "DE",
    "us-west": "US",
    "global": "US",
}

DEFAULT_PACKS = ["cn-auto-2021", "cn-xborder-2024", "cn-auto-export-2026", "cn-surveying", "cn-lingang-icv",
                 "fleetgate-model-updates", "cn-xborder-2022", "cn-beijing-ftz"]


@dataclass
class LingangListRenewal:
    """A renewal of the Lingang general data list on record: its reference and last day in force."""

    ref: str
    until: dt.date


@dataclass
class RegionConfig:
    """One region: where its blobs and its catalog live, and in which country."""

    name: str
    country: str
    blob_store: str
    catalog: str
    zone: str | None = None
    # The legal entity whose yearly subject counts the ledger keeps; defaults to the region name.
    exporter: str | None = None
    ciio: bool = False
    surveying_approval: bool = False
    # GeoJSON file of sensitive-area polygons (military zones, government organs) for classify.
    sensitive_areas: str | None = None
    # Rule packs for this region; None uses [policy].packs for CN regions, else the jurisdiction's defaults.
    packs: list[str] | None = None
    # The Lingang list's one-year trial ended on 16 May 2025; a renewal recorded here keeps it usable.
    lingang_list_renewal: LingangListRenewal | None = None
    # People whose PI the exporter processes in all; the pre-2024 export rules depend on it.
    processed_pi_subjects: int | None = None

    @property
    def exporter_id(self) -> str:
        return self.exporter or self.name


@dataclass
class DestinationConfig:
    """A place exports may go: a folder or bucket in another jurisdiction."""

    name: str
    country: str
    url: str


# Outcomes that leave only under approvals, and how many distinct compliance officers each needs
# by default. A workspace may ask for more, never for fewer than one.
DEFAULT_APPROVERS = {"STANDARD_CONTRACT_OR_CERT": 1, "SECURITY_ASSESSMENT": 2}


@dataclass
class GateConfig:
    """`[gate]`: how many distinct compliance approvers each approval-bound outcome needs."""

    approvers: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_APPROVERS))


@dataclass
class RetentionConfig:
    """`[retention]`: days each kind is kept, for raw data and for what is derived from it.

    `fleetgate retention run` deletes what is older (by the end of its recording, else by when it
    landed); a kind not listed is kept until someone erases it."""

    raw: dict[str, int] = field(default_factory=dict)
    derived: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"raw": dict(sorted(self.raw.items())), "derived": dict(sorted(self.derived.items()))}


def _retention_config(body: dict[str, Any], path: Path) -> RetentionConfig:
    unknown = sorted(set(body) - {"raw", "derived"})
    if unknown:
        raise ConfigError(f"{path}: retention.{unknown[0]}: unknown key (allowed: raw, derived)")
    out = RetentionConfig()
    for part in ("raw", "derived"):
        table = body.get(part) or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: retention.{part}: a table of kind = days")
        for kind, days in table.items():
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise ConfigError(f"{path}: retention.{part}.{kind}: a whole number of days, at least 1")
            getattr(out, part)[kind] = days
    return out


@dataclass
class WorkspaceConfig:
    """The whole parsed `fleetgate.toml`."""

    home: Path
    default_region: str
    regions: dict[str, RegionConfig]
    destinations: dict[str, DestinationConfig] = field(default_factory=dict)
    packs: list[str] = field(default_factory=lambda: list(DEFAULT_PACKS))
    keys: dict[str, str] = field(default_factory=dict)
    gate: GateConfig = field(default_factory=GateConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    # [policy].switches: readings of the law the packs leave open (docs/policy.md), by switch name.
    switches: dict[str, bool] = field(default_factory=dict)

    def region(self, name: str | None) -> RegionConfig:
        """The named region, or the default one; a clear error for an unknown name."""
        name = name or self.default_region
        if name not in self.regions:
            known = ", ".join(sorted(self.regions)) or "none"
            raise UsageError(f"unknown region '{name}' (configured: {known}); "
                             f"add it with `fleetgate init --region {name}`")
        return self.regions[name]

    def resolve(self, location: str) -> str:
        """Make a relative path or sqlite URL in the config absolute against the workspace."""
        if location.startswith("sqlite:///") and not location.startswith("sqlite:////"):
            rel = location[len("sqlite:///") :]
            return f"sqlite:///{(self.home / rel).resolve()}"
        if "://" in location:
            return location
        path = Path(location)
        return str(path if path.is_absolute() else (self.home / path).resolve())


def _region_defaults(name: str, country: str | None) -> RegionConfig:
    if not REGION_NAME.match(name):
        raise UsageError(f"region name '{name}': use lower-case letters, digits and '-' (like cn-shanghai)")
    return RegionConfig(
        name=name,
        country=(country or KNOWN_REGION_COUNTRIES.get(name, "")).upper() or "CN",
        blob_store=f"regions/{name}/blobs",
        catalog=f"sqlite:///regions/{name}/catalog.db",
        zone="lingang" if name == "cn-shanghai" else None,
    )


def init_workspace(home: Path, region: str, country: str | None = None) -> tuple[WorkspaceConfig, bool]:
    """Create or extend a workspace with `region`; returns the config and whether it changed."""
    home = Path(home)
    path = home / CONFIG_FILE
    if path.exists():
        config = load_config(home)
        if region in config.regions:
            return config, False
        config.regions[region] = _region_defaults(region, country)
    else:
        config = WorkspaceConfig(
            home=home,
            default_region=region,
            regions={region: _region_defaults(region, country)},
            destinations={
                "overseas": DestinationConfig(name="overseas", country="US", url="destinations/overseas"),
            },
            keys={"dir": "keys"},
        )
    save_config(config)
    return config, True


def save_config(config: WorkspaceConfig) -> None:
    """Write `fleetgate.toml` atomically."""
    doc: dict[str, Any] = {
        "version": CONFIG_VERSION,
        "default_region": config.default_region,
        "policy": {"packs": config.packs, **({"switches": dict(config.switches)} if config.switches else {})},
        "keys": config.keys,
        "gate": {"approvers": config.gate.approvers},
        "regions": {},
        "destinations": {},
    }
    for name, region in config.regions.items():
        doc["regions"][name] = {k: v for k, v in asdict(region).items() if k != "name" and v is not None}
    for name, dest in config.destinations.items():
        doc["destinations"][name] = {k: v for k, v in asdict(dest).items() if k != "name"}
    if config.retention.raw or config.retention.derived:
        doc["retention"] = {k: v for k, v in config.retention.as_dict().items() if v}
    config.home.mkdir(parents=True, exist_ok=True)
    tmp = config.home / (CONFIG_FILE + ".tmp")
    tmp.write_text(tomli_w.dumps(doc), encoding="utf-8")
    tmp.replace(config.home / CONFIG_FILE)


def load_config(home: Path) -> WorkspaceConfig:
    """Read and check `fleetgate.toml`; every problem names the key at fault."""
    home = Path(home)
    path = home / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"no workspace at {home}: {CONFIG_FILE} is missing; "
                          "run `fleetgate init --region cn-shanghai`")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    if doc.get("version") != CONFIG_VERSION:
        raise ConfigError(f"{path}: version: expected {CONFIG_VERSION}, found {doc.get('version')!r}")
    regions: dict[str, RegionConfig] = {}
    for name, body in (doc.get("regions") or {}).items():
        for key in ("country", "blob_store", "catalog"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ConfigError(f"{path}: regions.{name}.{key}: required text value is missing")
        for key in ("ciio", "surveying_approval"):
            if key in body and not isinstance(body[key], bool):
                raise ConfigError(f"{path}: regions.{name}.{key}: must be true or false")
        packs_value = body.get("packs")
        if packs_value is not None and not (isinstance(packs_value, list)
                                            and all(isinstance(p, str) for p in packs_value)):
            raise ConfigError(f"{path}: regions.{name}.packs: must be a list of pack ids")
        processed = body.get("processed_pi_subjects")
        if processed is not None and (isinstance(processed, bool) or not isinstance(processed, int) or processed < 0):
            raise ConfigError(f"{path}: regions.{name}.processed_pi_subjects: must be a whole number >= 0")
        regions[name] = RegionConfig(name=name, country=body["country"], blob_store=body["blob_store"],
                                     catalog=body["catalog"], zone=body.get("zone"), exporter=body.get("exporter"),
                                     ciio=bool(body.get("ciio", False)),
                                     surveying_approval=bool(body.get("surveying_approval", False)),
                                     sensitive_areas=body.get("sensitive_areas"), packs=packs_value,
                                     lingang_list_renewal=_renewal(body, f"{path}: regions.{name}"),
                                     processed_pi_subjects=processed)
    if not regions:
        raise ConfigError(f"{path}: regions: at least one region is required")
    default_region = doc.get("default_region")
    if default_region not in regions:
        raise ConfigError(f"{path}: default_region: '{default_region}' is not one of the regions")
    destinations: dict[str, DestinationConfig] = {}
    for name, body in (doc.get("destinations") or {}).items():
        for key in ("country", "url"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ConfigError(f"{path}: destinations.{name}.{key}: required text value is missing")
        destinations[name] = DestinationConfig(name=name, country=body["country"], url=body["url"])
    packs = (doc.get("policy") or {}).get("packs", list(DEFAULT_PACKS))
    switches = (doc.get("policy") or {}).get("switches") or {}
    if not isinstance(switches, dict) or not all(isinstance(v, bool) for v in switches.values()):
        raise ConfigError(f"{path}: policy.switches: must be a table of switch names set to true or false")
    return WorkspaceConfig(home=home, default_region=default_region, regions=regions,
                           destinations=destinations, packs=list(packs), keys=dict(doc.get("keys") or {}),
                           gate=_gate_config(doc.get("gate") or {}, path), switches=dict(switches),
                           retention=_retention_config(doc.get("retention") or {}, path))


def _gate_config(body: dict[str, Any], path: Path) -> GateConfig:
    unknown = sorted(set(body) - {"approvers"})
    if unknown:
        raise ConfigError(f"{path}: gate.{unknown[0]}: unknown key (allowed: approvers)")
    approvers = dict(DEFAULT_APPROVERS)
    for outcome, count in (body.get("approvers") or {}).items():
        if outcome not in DEFAULT_APPROVERS:
            raise ConfigError(f"{path}: gate.approvers.{outcome}: not an approval-bound outcome "
                              f"({', '.join(DEFAULT_APPROVERS)})")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"{path}: gate.approvers.{outcome}: a whole number of at least 1")
        approvers[outcome] = count
    return GateConfig(approvers=approvers)


def _renewal(body: dict[str, Any], where: str) -> LingangListRenewal | None:
    """`lingang_list_renewal = {ref = "...", until = 2026-05-16}` (a TOML date or "YYYY-MM-DD")."""
    value = body.get("lingang_list_renewal")
    if value is None:
        return None
    key = f"{where}.lingang_list_renewal"
    if not isinstance(value, dict) or set(value) != {"ref", "until"}:
        raise ConfigError(f"{key}: must be {{ref = \"...\", until = YYYY-MM-DD}}")
    if body.get("zone") != "lingang":
        raise ConfigError(f"{key}: only a region with zone = \"lingang\" can record a Lingang list renewal")
    if not isinstance(value["ref"], str) or not value["ref"].strip():
        raise ConfigError(f"{key}.ref: required text (the renewal's reference)")
    until = value["until"]
    if isinstance(until, str):
        try:
            until = dt.date.fromisoformat(until)
        except ValueError:
            raise ConfigError(f"{key}.until: not a date (YYYY-MM-DD): {value['until']!r}") from None
    if isinstance(until, dt.datetime) or not isinstance(until, dt.date):
        raise ConfigError(f"{key}.until: must be a date (YYYY-MM-DD)")
    return LingangListRenewal(ref=value["ref"].strip(), until=until)
