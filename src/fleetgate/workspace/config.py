"""`fleetgate.toml`: regions, destinations, rule packs and key locations.

Relative paths in the file are relative to the workspace folder, so a workspace can be moved.
"""

from __future__ import annotations

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
                 "fleetgate-model-updates"]


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

    @property
    def exporter_id(self) -> str:
        return self.exporter or self.name


@dataclass
class DestinationConfig:
    """A place exports may go: a folder or bucket in another jurisdiction."""

    name: str
    country: str
    url: str
    # Refuse to export unless the destination bucket has S3 object lock enabled (write-once packages).
    object_lock: bool = False


# Outcomes that leave only under approvals, and how many distinct compliance officers each needs
# by default. A workspace may ask for more, never for fewer than one.
DEFAULT_APPROVERS = {"STANDARD_CONTRACT_OR_CERT": 1, "SECURITY_ASSESSMENT": 2}


@dataclass
class GateConfig:
    """`[gate]`: how many distinct compliance approvers each approval-bound outcome needs."""

    approvers: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_APPROVERS))


ENGINE_KINDS = ("local", "ray")


@dataclass
class EngineConfig:
    """`[engine]`: where the ingest, deid and classify stages run.

    kind "local" (default) runs them in this process; "ray" runs them as Ray Data stages on actors,
    on a local Ray started on demand or on the cluster at `address` ("ray://head:10001", "auto").
    `workers` caps the actors per stage (default: the cluster's CPUs)."""

    kind: str = "local"
    address: str | None = None
    workers: int | None = None


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
    engine: EngineConfig = field(default_factory=EngineConfig)

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
        "policy": {"packs": config.packs},
        "keys": config.keys,
        "gate": {"approvers": config.gate.approvers},
        "regions": {},
        "destinations": {},
    }
    for name, region in config.regions.items():
        doc["regions"][name] = {k: v for k, v in asdict(region).items() if k != "name" and v is not None}
    for name, dest in config.destinations.items():
        doc["destinations"][name] = {k: v for k, v in asdict(dest).items()
                                     if k != "name" and not (k == "object_lock" and not v)}
    if config.engine != EngineConfig():
        doc["engine"] = {k: v for k, v in asdict(config.engine).items() if v is not None}
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
        regions[name] = RegionConfig(name=name, country=body["country"], blob_store=body["blob_store"],
                                     catalog=body["catalog"], zone=body.get("zone"), exporter=body.get("exporter"),
                                     ciio=bool(body.get("ciio", False)),
                                     surveying_approval=bool(body.get("surveying_approval", False)),
                                     sensitive_areas=body.get("sensitive_areas"), packs=packs_value)
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
        if "object_lock" in body and not isinstance(body["object_lock"], bool):
            raise ConfigError(f"{path}: destinations.{name}.object_lock: must be true or false")
        destinations[name] = DestinationConfig(name=name, country=body["country"], url=body["url"],
                                               object_lock=bool(body.get("object_lock", False)))
    packs = (doc.get("policy") or {}).get("packs", list(DEFAULT_PACKS))
    return WorkspaceConfig(home=home, default_region=default_region, regions=regions,
                           destinations=destinations, packs=list(packs), keys=dict(doc.get("keys") or {}),
                           gate=_gate_config(doc.get("gate") or {}, path),
                           engine=_engine_config(doc.get("engine") or {}, path))


def _engine_config(body: dict[str, Any], path: Path) -> EngineConfig:
    unknown = sorted(set(body) - {"kind", "address", "workers"})
    if unknown:
        raise ConfigError(f"{path}: engine.{unknown[0]}: unknown key (allowed: kind, address, workers)")
    kind = body.get("kind", "local")
    if kind not in ENGINE_KINDS:
        raise ConfigError(f"{path}: engine.kind: {kind!r} is not one of {', '.join(ENGINE_KINDS)}")
    address = body.get("address")
    if address is not None and (not isinstance(address, str) or not address):
        raise ConfigError(f"{path}: engine.address: a Ray address like \"ray://head:10001\" or \"auto\"")
    workers = body.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"{path}: engine.workers: a whole number of at least 1")
    return EngineConfig(kind=kind, address=address, workers=workers)


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
