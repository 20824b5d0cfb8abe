"""Rule packs: YAML files, one legal instrument each, whose conditions compile when they load.

    id, version, title, instrument, jurisdiction, effective_from, effective_until, sources,
    approvals (how long a filing granted while the pack is in force lasts), switches, rules, tests

A rule:  id, title, stage (classify | decide), priority (decide only), citation
(instrument, article, url, evidence), when (CEL), effect (tags, obligations and blocking
obligations, or an outcome), note. A switch is a named reading of the law where reasonable
people differ, with its default (the stricter reading); rules read it as `switches.NAME`. The
pack's hash is the SHA-256 of its file bytes and goes into every decision, with the switch values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fleetgate.errors import UsageError
from fleetgate.policy.engine import Condition, ConditionError, compile_condition, top_level_conjuncts
from fleetgate.policy.vocabulary import BLOCKING_REQUIRES, STAGES, Outcome

PACK_ID = re.compile(r"^[a-z][a-z0-9-]{1,63}\Z")
RULE_ID = re.compile(r"^[A-Z][A-Z0-9.-]{1,63}\Z")
TAG = re.compile(r"^[a-z][a-z0-9_]{1,63}\Z")
SWITCH = TAG
EVIDENCE = {"V", "S", "K", "I"}


class PackError(UsageError):
    """A rule pack that cannot load: bad YAML, a missing field or a condition that does not compile."""


@dataclass(frozen=True)
class Citation:
    instrument: str
    article: str
    url: str
    evidence: str  # V read in the source, S from a summary, K standard text, I inference

    def short(self) -> str:
        return f"{self.instrument}, {self.article}"


@dataclass(frozen=True)
class BlockingEffect:
    """An obligation that holds the item at the gate until the request field `requires` is recorded."""

    requires: str
    text: str


@dataclass(frozen=True)
class Rule:
    id: str
    pack: str
    title: str
    stage: str
    priority: int
    citation: Citation
    when: Condition
    tags: tuple[str, ...]
    outcome: Outcome | None
    obligations: tuple[str, ...]
    note: str
    position: int  # order inside the pack, for ties
    blocking: tuple[BlockingEffect, ...] = ()
    # The conjuncts of `when` that read only request-level variables: false means the rule cannot
    # fire for any item of the request, so the engine drops it once per request.
    guard: Condition | None = None
    # The kinds a top-level `item.kind == 'x'` / `item.kind in [...]` conjunct allows (None: any kind).
    kinds: frozenset[str] | None = None

    def reason(self) -> str:
        """One line for a decision: what fired and on which article."""
        return f"{self.id}: {self.title} ({self.citation.short()})"


@dataclass(frozen=True)
class ApprovalTerm:
    outcome: Outcome
    valid_years: int
    cite: str
    pack: str = ""


@dataclass(frozen=True)
class Switch:
    """A reading of the law where reasonable people differ; the default is the stricter reading."""

    name: str
    value: bool
    default: bool
    title: str
    cite: str


@dataclass
class Pack:
    id: str
    version: str
    title: str
    instrument: str
    jurisdiction: str
    effective_from: dt.date
    effective_until: dt.date | None
    sources: list[dict[str, str]]
    rules: list[Rule]
    approvals: dict[Outcome, ApprovalTerm]
    tests: list[dict[str, Any]]
    sha256: str
    path: str
    notes: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    switches: dict[str, Switch] = field(default_factory=dict)

    def in_force(self, on: dt.date) -> bool:
        """Whether the instrument applies on `on`: from `effective_from`, until (excluding) `effective_until`."""
        return self.effective_from <= on and (self.effective_until is None or on < self.effective_until)

    @property
    def hash_ref(self) -> str:
        return f"sha256:{self.sha256}"


def _require(doc: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc or doc[key] is None:
        raise PackError(f"{where}.{key}: required")
    value = doc[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PackError(f"{where}.{key}: must be {names}, got {type(value).__name__}")
    return value


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise PackError(f"{where}: not a date (YYYY-MM-DD): {value!r}") from None


_PACK_KEYS = {"id", "version", "title", "instrument", "jurisdiction", "effective_from", "effective_until",
              "sources", "approvals", "switches", "rules", "tests", "notes"}
_RULE_KEYS = {"id", "title", "stage", "priority", "citation", "when", "effect", "note"}


def _reject_unknown(doc: dict, allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise PackError(f"{prefix}{unknown[0]}: unknown field")


def parse_pack(text: bytes, path: str) -> Pack:
    """Parse and compile one pack; every problem names the file and the field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PackError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(doc, dict):
        raise PackError(f"{path}: a pack is a mapping with id, version, rules, ...")
    _reject_unknown(doc, _PACK_KEYS, f"{path}: ")
    pack_id = _require(doc, "id", str, path)
    if not PACK_ID.match(pack_id):
        raise PackError(f"{path}: id: '{pack_id}' must be lower-case letters, digits and '-'")
    where = f"{path} ({pack_id})"
    rules: list[Rule] = []
    for index, body in enumerate(_require(doc, "rules", list, where)):
        rules.append(_parse_rule(body, pack_id, index, f"{where}: rules[{index}]"))
    approvals: dict[Outcome, ApprovalTerm] = {}
    for name, body in (doc.get("approvals") or {}).items():
        try:
            outcome = Outcome(name)
        except ValueError:
            raise PackError(f"{where}: approvals.{name}: not an outcome") from None
        years = _require(body, "valid_years", int, f"{where}: approvals.{name}")
        approvals[outcome] = ApprovalTerm(outcome, int(years), str(body.get("cite", "")), pack_id)
    switches = _parse_switches(doc.get("switches") or {}, where)
    tests = doc.get("tests") or []
    if not isinstance(tests, list):
        raise PackError(f"{where}: tests: must be a list")
    return Pack(
        id=pack_id,
        version=str(_require(doc, "version", (str, int, float), where)),
        title=_require(doc, "title", str, where),
        instrument=_require(doc, "instrument", str, where),
        jurisdiction=_require(doc, "jurisdiction", str, where),
        effective_from=_date(_require(doc, "effective_from", (str, dt.date), where), f"{where}: effective_from"),
        effective_until=(_date(doc["effective_until"], f"{where}: effective_until")
                         if doc.get("effective_until") else None),
        sources=list(_require(doc, "sources", list, where)),
        rules=rules,
        approvals=approvals,
        tests=tests,
        sha256=hashlib.sha256(text).hexdigest(),
        path=path,
        notes=str(doc.get("notes") or ""),
        raw=doc,
        switches=switches,
    )


def _parse_switches(doc: Any, where: str) -> dict[str, Switch]:
    if not isinstance(doc, dict):
        raise PackError(f"{where}: switches: must be a mapping of switch names")
    out: dict[str, Switch] = {}
    for name, body in doc.items():
        at = f"{where}: switches.{name}"
        if not isinstance(name, str) or not SWITCH.match(name):
            raise PackError(f"{at}: a switch name is lower-case letters, digits and '_'")
        if not isinstance(body, dict):
            raise PackError(f"{at}: must be a mapping with default, title and cite")
        _reject_unknown(body, {"default", "title", "cite"}, f"{at}.")
        default = _require(body, "default", bool, at)
        out[name] = Switch(name, default, default, _require(body, "title", str, at), _require(body, "cite", str, at))
    return out


def _parse_rule(body: Any, pack_id: str, index: int, where: str) -> Rule:
    if not isinstance(body, dict):
        raise PackError(f"{where}: a rule is a mapping")
    _reject_unknown(body, _RULE_KEYS, f"{where}: ")
    rule_id = _require(body, "id", str, where)
    if not RULE_ID.match(rule_id):
        raise PackError(f"{where}: id: '{rule_id}' must be upper-case letters, digits, '.' and '-'")
    where = f"{where} {rule_id}"
    stage = _require(body, "stage", str, where)
    if stage not in STAGES:
        raise PackError(f"{where}: stage: '{stage}' is not one of {', '.join(STAGES)}")
    cite = _require(body, "citation", dict, where)
    citation = Citation(
        instrument=_require(cite, "instrument", str, f"{where}.citation"),
        article=str(_require(cite, "article", (str, int), f"{where}.citation")),
        url=_require(cite, "url", str, f"{where}.citation"),
        evidence=_require(cite, "evidence", str, f"{where}.citation"),
    )
    if citation.evidence not in EVIDENCE:
        raise PackError(f"{where}: citation.evidence: '{citation.evidence}' is not one of V, S, K, I")
    try:
        when = compile_condition(_require(body, "when", str, where))
    except ConditionError as exc:
        raise PackError(f"{where}: when: does not compile: {exc}") from exc
    effect = _require(body, "effect", dict, where)
    _reject_unknown(effect, {"tags", "outcome", "obligations", "blocking"}, f"{where}: effect.")
    blocking = _parse_blocking(effect.get("blocking") or [], where)
    tags = tuple(effect.get("tags") or ())
    for tag in tags:
        if not isinstance(tag, str) or not TAG.match(tag):
            raise PackError(f"{where}: effect.tags: '{tag}' must be lower-case letters, digits and '_'")
    outcome = None
    if stage == "decide":
        if "outcome" not in effect or tags:
            raise PackError(f"{where}: effect: a decide rule has an outcome and no tags")
        try:
            outcome = Outcome(effect["outcome"])
        except ValueError:
            allowed = ", ".join(o.value for o in Outcome)
            raise PackError(f"{where}: effect.outcome: '{effect['outcome']}' is not one of {allowed}") from None
        priority = _require(body, "priority", int, where)
    else:
        if "outcome" in effect:
            raise PackError(f"{where}: effect.outcome: a classify rule adds tags; outcomes belong to decide rules")
        if "priority" in body:
            raise PackError(f"{where}: priority: classify rules have no priority (they run to a fixed point)")
        if not tags and not effect.get("obligations") and not blocking:
            raise PackError(f"{where}: effect: a classify rule must add tags, obligations or blocking obligations")
        priority = 0
    obligations = effect.get("obligations") or ()
    if not all(isinstance(o, str) and o for o in obligations):
        raise PackError(f"{where}: effect.obligations: must be a list of text")
    if blocking and stage != "classify":
        raise PackError(f"{where}: effect.blocking: blocking obligations belong to classify rules")
    return Rule(id=rule_id, pack=pack_id, title=_require(body, "title", str, where), stage=stage,
                priority=priority, citation=citation, when=when, tags=tags, outcome=outcome,
                obligations=tuple(obligations), note=str(body.get("note") or "").strip(), position=index,
                blocking=blocking, guard=_guard(when), kinds=_kinds(when))


REQUEST_VARIABLES = frozenset({"exporter", "destination", "mode", "as_of", "switches"})
KIND_IS = re.compile(r"^item\.kind\s*==\s*'([a-z_]+)'$")
KIND_IN = re.compile(r"^item\.kind\s+in\s+\[((?:\s*'[a-z_]+'\s*,?)+)\]$")


def _kinds(when: Condition) -> frozenset[str] | None:
    """The kinds a rule can fire for, when one of its top-level conjuncts names them."""
    allowed: frozenset[str] | None = None
    for part in top_level_conjuncts(" ".join(when.source.split())):
        one, many = KIND_IS.match(part), KIND_IN.match(part)
        found = frozenset({one.group(1)}) if one else frozenset(re.findall(r"'([a-z_]+)'", many.group(1))) \
            if many else None
        if found is not None:
            allowed = found if allowed is None else allowed & found
    return allowed


def _guard(when: Condition) -> Condition | None:
    """The request-level part of a condition (`exporter.zone == 'lingang' && ...`), compiled alone."""
    parts = top_level_conjuncts(" ".join(when.source.split()))
    if len(parts) < 2:
        return None
    guards = [p for p in parts if (v := compile_condition(p).variables()) and v <= REQUEST_VARIABLES]
    return compile_condition(" && ".join(f"({g})" for g in guards)) if guards else None


def _parse_blocking(doc: Any, where: str) -> tuple[BlockingEffect, ...]:
    if not isinstance(doc, list):
        raise PackError(f"{where}: effect.blocking: must be a list of {{requires, text}}")
    out = []
    for n, body in enumerate(doc):
        at = f"{where}: effect.blocking[{n}]"
        if not isinstance(body, dict):
            raise PackError(f"{at}: must be a mapping with requires and text")
        _reject_unknown(body, {"requires", "text"}, f"{at}.")
        requires = _require(body, "requires", str, at)
        if requires not in BLOCKING_REQUIRES:
            raise PackError(f"{at}.requires: '{requires}' is not one of {', '.join(sorted(BLOCKING_REQUIRES))}")
        out.append(BlockingEffect(requires, _require(body, "text", str, at)))
    return tuple(out)


def builtin_pack_ids() -> list[str]:
    """Ids of the packs shipped with fleetgate."""
    folder = resources.files("fleetgate.policy").joinpath("packs")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_pack(ref: str) -> Pack:
    """Load a shipped pack by id, or a pack file by path."""
    if ref.endswith((".yaml", ".yml")) or "/" in ref:
        path = Path(ref)
        if not path.is_file():
            raise PackError(f"{ref}: no such pack file")
        return _parse_cached(path.read_bytes(), str(path))
    if ref not in builtin_pack_ids():
        raise PackError(f"unknown pack '{ref}' (shipped: {', '.join(builtin_pack_ids())}); "
                        "give a path to load your own")
    text = resources.files("fleetgate.policy").joinpath(f"packs/{ref}.yaml").read_bytes()
    return _parse_cached(text, f"packs/{ref}.yaml")


@functools.lru_cache(maxsize=64)
def _parse_cached(text: bytes, where: str) -> Pack:
    # Keyed by the bytes, so an edited pack is parsed again; parsing the YAML is most of a decision's cost
    # when a long-running trainer asks the gate once per round.
    return parse_pack(text, where)


def load_packs(refs: list[str]) -> list[Pack]:
    """Load several packs; rule ids must be unique across them, and a switch two packs declare must agree."""
    packs = [load_pack(ref) for ref in refs]
    seen: dict[str, str] = {}
    for pack in packs:
        if pack.id in {p.id for p in packs if p is not pack}:
            raise PackError(f"pack '{pack.id}' is loaded twice")
        for rule in pack.rules:
            if rule.id in seen:
                raise PackError(f"{pack.path}: rule id '{rule.id}' is also defined in pack '{seen[rule.id]}'")
            seen[rule.id] = pack.id
    switch_values(packs)
    return packs


def switch_values(packs: Sequence[Pack]) -> dict[str, bool]:
    """The value of every switch the packs declare; packs declaring one switch must give it one value."""
    values: dict[str, bool] = {}
    owner: dict[str, str] = {}
    for pack in packs:
        for name, switch in pack.switches.items():
            if name in values and values[name] != switch.value:
                raise PackError(f"{pack.path}: switch '{name}' is {str(switch.value).lower()} here but "
                                f"{str(values[name]).lower()} in pack '{owner[name]}'")
            values[name], owner[name] = switch.value, pack.id
    return values


def apply_switches(packs: Sequence[Pack], overrides: Mapping[str, bool], where: str = "switches") -> list[Pack]:
    """Copies of the packs with the overridden switch values; a name no pack declares is an error."""
    declared = {name for p in packs for name in p.switches}
    unknown = sorted(set(overrides) - declared)
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise PackError(f"{where}.{unknown[0]}: no loaded pack declares this switch (declared: {known})")
    out = []
    for pack in packs:
        changed = {n: dataclasses.replace(s, value=bool(overrides[n])) for n, s in pack.switches.items()
                   if n in overrides}
        out.append(dataclasses.replace(pack, switches={**pack.switches, **changed}) if changed else pack)
    return out


def approval_term(packs: Sequence[Pack], outcome: Outcome, granted_on: dt.date) -> ApprovalTerm | None:
    """How long a filing for `outcome` granted on `granted_on` lasts: the shortest term of the packs in
    force that day (a security assessment approved before 22 March 2024 lasted 2 years, 3 after)."""
    terms = [p.approvals[outcome] for p in packs if outcome in p.approvals and p.in_force(granted_on)]
    return min(terms, key=lambda t: t.valid_years) if terms else None


# The packs a region applies when its config names none, by the jurisdiction of its country.
DEFAULT_PACKS_BY_JURISDICTION: dict[str, list[str]] = {
    "CN": ["cn-auto-2021", "cn-surveying", "cn-auto-export-2026", "cn-xborder-2024", "cn-lingang-icv",
           "fleetgate-model-updates", "cn-xborder-2022", "cn-beijing-ftz"],
    "EU": ["eu-gdpr", "fleetgate-model-updates"],
}
EU_COUNTRIES = frozenset({"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
                          "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"})


def jurisdiction_of(country: str) -> str:
    """The jurisdiction whose packs govern data held in `country`."""
    country = country.upper()
    return "EU" if country in EU_COUNTRIES else country


def default_packs_for(country: str) -> list[str]:
    """Default pack ids for a region in `country`; an empty list where fleetgate ships none."""
    return list(DEFAULT_PACKS_BY_JURISDICTION.get(jurisdiction_of(country), []))
