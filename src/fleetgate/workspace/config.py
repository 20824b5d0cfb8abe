"""`fleetgate.toml` and every other setting: one typed model, read flag → FLEETGATE_* env → file → default.

Relative paths in the file are relative to the workspace folder, so a workspace can be moved.
`WorkspaceConfig` is a pydantic-settings model: a command-line flag (passed as an override) wins
over a `FLEETGATE_*` environment variable (nested with `__`, e.g. `FLEETGATE_WEB__PORT=9000`), which
wins over `fleetgate.toml`, which wins over the default. Every model forbids unknown keys, so a
misspelled setting is refused with the file and the key, never ignored. `docs/operations.md` lists
every setting; a test checks that it does.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from contextvars import ContextVar
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fleetgate.errors import ConfigError, UsageError
from fleetgate.formats.content import KIND_CONTAINERS, KIND_TABLES

CONFIG_FILE = "fleetgate.toml"
CONFIG_VERSION = 1
REGION_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}\Z")
ENV_PREFIX = "FLEETGATE_"

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

# A pydantic dataclass: unknown keys are refused, and `dataclasses.asdict` (which the signed settings
# use) keeps working. Fields stay one per line so that a new one merges cleanly; true/false fields
# take only TOML booleans (`WorkspaceConfig._booleans`), not "yes" or 1.
STRICT = ConfigDict(extra="forbid")


@dataclass(config=STRICT)
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
    processed_pi_subjects: Annotated[int, Field(ge=0, strict=True)] | None = None
    # The S3-compatible endpoint of an s3:// blob_store (default: AWS_ENDPOINT_URL_S3, else AWS);
    # the credentials stay in the standard AWS variables, never in this file.
    s3_endpoint_url: str | None = None

    @property
    def exporter_id(self) -> str:
        return self.exporter or self.name

    def __post_init__(self) -> None:
        renewal = self.lingang_list_renewal
        if renewal is not None and self.zone != "lingang":
            raise ValueError(f"regions.{self.name}.lingang_list_renewal: only a region with zone = \"lingang\" can "
                             "record a Lingang list renewal")
        if renewal is not None and not renewal.ref.strip():
            raise ValueError(f"regions.{self.name}.lingang_list_renewal.ref: required text (the renewal's reference)")


@dataclass(config=STRICT)
class DestinationConfig:
    """A place exports may go: a folder or bucket in another jurisdiction."""

    name: str
    country: str
    url: str
    # Refuse to export unless the destination bucket has S3 object lock enabled (write-once packages).
    object_lock: bool = False
    # The S3-compatible endpoint of an s3:// url (default: AWS_ENDPOINT_URL_S3, else AWS).
    s3_endpoint_url: str | None = None


# Outcomes that leave only under approvals, and how many distinct compliance officers each needs
# by default. A workspace may ask for more, never for fewer than one.
DEFAULT_APPROVERS = {"STANDARD_CONTRACT_OR_CERT": 1, "SECURITY_ASSESSMENT": 2}
ApprovalBound = Literal["STANDARD_CONTRACT_OR_CERT", "SECURITY_ASSESSMENT"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GateConfig(Section):
    """`[gate]`: how many distinct compliance approvers each approval-bound outcome needs."""

    approvers: dict[ApprovalBound, Annotated[int, Field(ge=1, strict=True)]] = Field(
        default_factory=lambda: dict(DEFAULT_APPROVERS))

    @field_validator("approvers")
    @classmethod
    def _with_defaults(cls, value: dict[str, int]) -> dict[str, int]:
        return {**DEFAULT_APPROVERS, **value}


class EngineConfig(Section):
    """`[engine]`: where the ingest, deid and classify stages run.

    kind "local" (default) runs them in this process; "ray" runs them as Ray Data stages on actors,
    on a local Ray started on demand or on the cluster at `address` ("ray://head:10001", "auto").
    `workers` caps the actors per stage (default: the cluster's CPUs)."""

    kind: Literal["local", "ray"] = "local"
    address: Annotated[str, Field(min_length=1)] | None = None
    workers: Annotated[int, Field(ge=1)] | None = None  # not strict: FLEETGATE_ENGINE__WORKERS=4 is text

    @field_validator("workers", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if isinstance(value, bool):  # TOML's true is no number of workers
            raise ValueError("a whole number of at least 1")
        return value


class PolicyConfig(Section):
    """`[policy]`: the rule packs of CN regions that name none of their own, and the readings of the law
    the packs leave open (`switches`, by name; docs/policy.md)."""

    packs: list[str] = Field(default_factory=lambda: list(DEFAULT_PACKS))
    switches: dict[str, Annotated[bool, Field(strict=True)]] = Field(default_factory=dict)


class KeysConfig(Section):
    """`[keys]`: where the regions' own keys live (never a person's)."""

    dir: str = "keys"


class OidcConfig(Section):
    """`[web.oidc]`: dashboard login through an OpenID Connect identity provider (optional)."""

    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    claim: str = "preferred_username"
    scopes: str = "openid profile"


class WebConfig(Section):
    """`[web]`: `fleetgate serve`, the JSON API and the dashboard."""

    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    session_minutes: int = Field(default=480, ge=1)
    secure_cookies: bool = True
    token_cache_seconds: float = Field(default=5.0, ge=0)
    login_attempts_per_minute: int = Field(default=5, ge=1)
    signed_statement_minutes: int = Field(default=30, ge=1)
    max_upload_mb: int = Field(default=2048, ge=1)
    max_queued_uploads: int = Field(default=256, ge=1)
    ingest_nice: int = Field(default=10, ge=0, le=19)
    worker_threads: int = Field(default=4, ge=1, le=64)
    oidc: OidcConfig = Field(default_factory=OidcConfig)


# Kinds a retention period may name; a misspelled kind would keep its data forever, so it is refused.
RETENTION_KINDS = frozenset(KIND_CONTAINERS) | frozenset(KIND_TABLES)
Days = Annotated[int, Field(ge=1, strict=True)]


class RetentionConfig(Section):
    """`[retention]`: days each kind is kept, for raw data and for what is derived from it.

    `fleetgate retention run` deletes what is older (by the end of its recording, else by when it
    landed); a kind not listed is kept until someone erases it."""

    raw: dict[str, Days] = Field(default_factory=dict)
    derived: dict[str, Days] = Field(default_factory=dict)

    @field_validator("raw", "derived")
    @classmethod
    def _known_kinds(cls, value: dict[str, int], info: Any) -> dict[str, int]:
        for kind in value:
            if kind not in RETENTION_KINDS:
                raise ValueError(f"retention.{info.field_name}.{kind}: not a kind of asset "
                                 f"({', '.join(sorted(RETENTION_KINDS))})")
        return value

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"raw": dict(sorted(self.raw.items())), "derived": dict(sorted(self.derived.items()))}


# The parsed file a `build_config` call validates; a context variable so that concurrent loads never mix.
_file_doc: ContextVar[dict[str, Any] | None] = ContextVar("fleetgate_config_doc", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """The values of the `fleetgate.toml` being loaded (already parsed, with file-level checks done)."""

    def __init__(self, settings_cls: type[BaseSettings], doc: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.doc = doc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.doc.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.doc)


class WorkspaceConfig(BaseSettings):
    """The whole configuration of a workspace: `fleetgate.toml`, overridden by FLEETGATE_* and flags."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
                                      validate_assignment=True, nested_model_default_partial_update=True)

    home: Path
    version: int = CONFIG_VERSION
    default_region: str
    regions: dict[str, RegionConfig]
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, **_: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        doc = _file_doc.get()
        return (init_settings, env_settings, _TomlSource(settings_cls, doc or {}))

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        # a region's or destination's name is its table's key, never a value in the file
        if isinstance(data, dict):
            for section in ("regions", "destinations"):
                body = data.get(section)
                if isinstance(body, dict):
                    data[section] = {name: ({**value, "name": name} if isinstance(value, dict) else value)
                                     for name, value in body.items()}
        return data

    @field_validator("regions", "destinations", mode="before")
    @classmethod
    def _booleans(cls, value: Any, info: Any) -> Any:
        kind = RegionConfig if info.field_name == "regions" else DestinationConfig
        flags = [f.name for f in kind.__dataclass_fields__.values() if f.type in (bool, "bool")]
        for name, body in (value or {}).items() if isinstance(value, dict) else []:
            for flag in flags:
                if isinstance(body, dict) and flag in body and not isinstance(body[flag], bool):
                    raise ValueError(f"{info.field_name}.{name}.{flag}: must be true or false")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WorkspaceConfig:
        if self.version != CONFIG_VERSION:
            raise ValueError(f"version: expected {CONFIG_VERSION}, found {self.version!r}")
        if not self.regions:
            raise ValueError("regions: at least one region is required")
        if self.default_region not in self.regions:
            raise ValueError(f"default_region: '{self.default_region}' is not one of the regions")
        return self

    # `[policy] packs`, as `config.packs` like before
    @property
    def packs(self) -> list[str]:
        return self.policy.packs

    @packs.setter
    def packs(self, value: list[str]) -> None:
        self.policy.packs = list(value)

    # `[policy] switches`, as `config.switches`
    @property
    def switches(self) -> dict[str, bool]:
        return self.policy.switches

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


# How pydantic's error types read to a person editing fleetgate.toml (the key is named before it).
_MESSAGES = {
    "extra_forbidden": "unknown key",
    "unexpected_keyword_argument": "unknown key",
    "missing": "required value is missing",
    "missing_argument": "required value is missing",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "greater_than_equal": "too small",
    "less_than_equal": "too large",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "dataclass_type": "must be a table",
}


def _problem(exc: ValidationError, path: Path) -> ConfigError:
    """The first validation error as one line: file, dotted key, what is wrong."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    kind = err["type"]
    if loc[-1:] == ["[key]"]:  # a dict key that is not allowed (gate.approvers.X)
        loc = loc[:-1]
    key = ".".join(loc)
    if loc[:1] == ["retention"] and len(loc) == 3 and kind != "value_error":
        message = "a whole number of days, at least 1"
    elif loc[:2] == ["gate", "approvers"] and len(loc) == 3:
        message = ("not an approval-bound outcome (" + ", ".join(DEFAULT_APPROVERS) + ")" if kind == "literal_error"
                   else "a whole number of at least 1")
    elif loc and loc[0] in ("regions", "destinations") and len(loc) == 3 and kind in ("missing", "missing_argument",
                                                                                         "string_type"):
        message = "required text value is missing"
    elif kind == "value_error":  # our own validators name the key themselves
        return ConfigError(f"{path}: {str(err['msg']).removeprefix('Value error, ')}")
    else:
        message = _MESSAGES.get(kind, str(err["msg"]).removeprefix("Value error, "))
    if kind in ("extra_forbidden", "unexpected_keyword_argument") and len(loc) == 1:
        message += " (settings: " + ", ".join(k for k in WorkspaceConfig.model_fields if k != "home") + ")"
    return ConfigError(f"{path}: {key}: {message}")


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def build_config(home: Path, doc: dict[str, Any], overrides: dict[str, Any] | None = None,
                 where: Path | None = None) -> WorkspaceConfig:
    """Validate `doc` (the file's content) under the environment and `overrides` (the flags)."""
    token = _file_doc.set(doc)
    try:
        return WorkspaceConfig(home=Path(home), **(overrides or {}))
    except ValidationError as exc:
        raise _problem(exc, where or Path(home) / CONFIG_FILE) from None
    finally:
        _file_doc.reset(token)


def load_config(home: Path, overrides: dict[str, Any] | None = None) -> WorkspaceConfig:
    """Read and check `fleetgate.toml` (with FLEETGATE_* and `overrides`); every problem names the key at fault."""
    home = Path(home)
    path = home / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"no workspace at {home}: {CONFIG_FILE} is missing; "
                          "run `fleetgate init --region cn-shanghai`")
    doc = _read_file(path)
    if doc.get("version") != CONFIG_VERSION:
        raise ConfigError(f"{path}: version: expected {CONFIG_VERSION}, found {doc.get('version')!r}")
    return build_config(home, doc, overrides, path)


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
        config.regions = {**config.regions, region: _region_defaults(region, country)}
    else:
        overseas = DestinationConfig(name="overseas", country="US", url="destinations/overseas")
        config = build_config(home, {"version": CONFIG_VERSION, "default_region": region,
                                     "regions": {region: asdict(_region_defaults(region, country))},
                                     "destinations": {"overseas": asdict(overseas)}})
    save_config(config)
    return config, True


def file_document(config: WorkspaceConfig) -> dict[str, Any]:
    """What `fleetgate.toml` holds for `config`; `[web]` only where it differs from the defaults."""
    doc: dict[str, Any] = {
        "version": CONFIG_VERSION,
        "default_region": config.default_region,
        "policy": {"packs": list(config.packs), **({"switches": dict(config.switches)} if config.switches else {})},
        "keys": config.keys.model_dump(),
        "gate": {"approvers": dict(config.gate.approvers)},
        "regions": {},
        "destinations": {},
    }
    for name, region in config.regions.items():
        doc["regions"][name] = {k: v for k, v in asdict(region).items() if k != "name" and v is not None}
    for name, dest in config.destinations.items():
        doc["destinations"][name] = {k: v for k, v in asdict(dest).items()
                                     if k != "name" and v is not None and not (k == "object_lock" and not v)}
    web = config.web.model_dump(exclude_defaults=True, exclude_none=True)
    if web.get("oidc") == {}:
        web.pop("oidc")
    if web:
        doc["web"] = web
    engine = config.engine.model_dump(exclude_defaults=True, exclude_none=True)
    if engine:
        doc["engine"] = engine
    retention = {part: days for part, days in config.retention.as_dict().items() if days}
    if retention:
        doc["retention"] = retention
    return doc


def save_config(config: WorkspaceConfig) -> None:
    """Write `fleetgate.toml` atomically."""
    config.home.mkdir(parents=True, exist_ok=True)
    tmp = config.home / (CONFIG_FILE + ".tmp")
    tmp.write_text(tomli_w.dumps(file_document(config)), encoding="utf-8")
    tmp.replace(config.home / CONFIG_FILE)


def setting_names(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted setting name (`web.oidc.issuer`, `regions.<name>.country`, ...), for the docs test."""
    model = model or WorkspaceConfig
    names = []
    for name, info in model.model_fields.items() if hasattr(model, "model_fields") else []:
        if model is WorkspaceConfig and name in ("home", "regions", "destinations"):
            continue  # the folder comes from --home; regions and destinations are tables of named entries
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += setting_names(annotation, f"{prefix}{name}.")
        else:
            names.append(f"{prefix}{name}")
    if model is WorkspaceConfig:
        names += [f"regions.<name>.{f}" for f in RegionConfig.__dataclass_fields__ if f != "name"]
        names += [f"destinations.<name>.{f}" for f in DestinationConfig.__dataclass_fields__ if f != "name"]
    return names


__all__ = ["CONFIG_FILE", "DEFAULT_APPROVERS", "DEFAULT_PACKS", "DestinationConfig", "GateConfig", "KeysConfig",
           "OidcConfig", "PolicyConfig", "RegionConfig", "RetentionConfig", "WebConfig", "WorkspaceConfig",
           "build_config", "init_workspace", "load_config", "save_config", "setting_names"]
