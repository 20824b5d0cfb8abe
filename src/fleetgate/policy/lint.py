"""`fleetgate policy lint` and `fleetgate policy test`: static checks and embedded scenarios.

The CEL binding has no type checker, so the lint checks what it can statically (names, fields,
tags read but never written) and runs every rule on a grid of probe requests that cover every
kind, every feature, every exemption and the threshold boundaries: a rule that errors or returns
a non-boolean there has a type error; a classify rule that never fires, or a decide rule that
never decides first, is unreachable.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from fleetgate.policy.decide import PolicyEngine, _classify, _item_context
from fleetgate.policy.engine import ConditionError, new_context
from fleetgate.policy.packs import DEFAULT_PACKS_BY_JURISDICTION, Pack, PackError, load_pack
from fleetgate.policy.request import DecisionRequest, Exporter, Item, Ytd, parse_request
from fleetgate.policy.vocabulary import (
    CLASSIFYING_TAGS,
    EXEMPTIONS,
    FEATURES,
    KINDS,
    STAGE_VARIABLES,
    UNCOUNTED_TAGS,
    VARIABLE_FIELDS,
    ZONES,
)

FIELD_REF = re.compile(r"\b(item|exporter|totals)\.([A-Za-z_]\w*)")
BOUND_NAME = re.compile(r"\.(?:exists|all|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
TAG_READ = re.compile(r"'([a-z][a-z0-9_]*)'\s+in\s+tags")
BOUNDARY_COUNTS = (0, 1, 9_999, 10_000, 99_999, 100_000, 100_001, 999_999, 1_000_000)
PROBE_DESTINATIONS = ("US", "DE", "CN", "JP", "GB")
# (PI, SPI) totals on both sides of every threshold.
PROBE_TOTALS = ((0, 0), (99_999, 0), (100_000, 0), (100_001, 0), (999_999, 0), (1_000_000, 0),
                (0, 1), (0, 9_999), (0, 10_000))


@dataclass
class Finding:
    pack: str
    rule: str | None
    problem: str

    def __str__(self) -> str:
        return f"{self.pack}{':' + self.rule if self.rule else ''}: {self.problem}"


def pack_set_for(pack: Pack) -> list[str]:
    """The packs a pack is linted and tested with: its jurisdiction's defaults plus itself."""
    ids = list(DEFAULT_PACKS_BY_JURISDICTION.get(pack.jurisdiction, []))
    return ids if pack.id in ids else ids + [pack.id]


def _load_set(pack: Pack, ids: list[str]) -> list[Pack]:
    return [pack if pid == pack.id else load_pack(pid) for pid in ids]


def probe_items(count: int = 800, seed: int = 7) -> list[tuple[Item, Exporter, str, str]]:
    """Items and request settings covering every kind, feature and exemption, plus random mixes."""
    rng = random.Random(seed)
    kinds, features, exemptions, zones = sorted(KINDS), sorted(FEATURES), sorted(EXEMPTIONS), sorted(ZONES)
    probes: list[tuple[Item, Exporter, str, str]] = []
    plain = Exporter()
    for kind in kinds:
        for feats in [(), *[(f,) for f in features]]:
            for anon, pseudo in ((False, False), (True, False), (False, True)):
                probes.append((Item("p", kind, feats, anon, pseudo, None, 1000), plain, "US", "transfer"))
        for exemption in exemptions:
            probes.append((Item("p", kind, (), False, False, exemption, 1000), plain, "US", "transfer"))
        for zone in zones:
            for feats, pseudo in (((), False), (("vin",), True)):
                probes.append((Item("p", kind, feats, False, pseudo, None, 1000), Exporter(zone=zone), "US",
                               "transfer"))
        probes.append((Item("p", kind, (), False, False, None, 1000), Exporter(surveying_approval=True), "US",
                       "remote_access"))
    for samples in (0, 999, 1000, 100_000):  # model updates: below and above the aggregation floor
        for noise in (0.0, 1.1):
            probes.append((Item("p", "model_update", (), False, False, None, 0, samples, noise), plain, "US",
                           "transfer"))
    for _ in range(count):
        item = Item("p", rng.choice(kinds), tuple(rng.sample(features, rng.choice((0, 1, 1, 2, 3)))),
                    rng.random() < 0.2, rng.random() < 0.3,
                    rng.choice([None, None, None, *exemptions]), rng.choice(BOUNDARY_COUNTS))
        exporter = Exporter(ciio=rng.random() < 0.3, zone=rng.choice([None, *zones]),
                            surveying_approval=rng.random() < 0.3)
        probes.append((item, exporter, rng.choice(PROBE_DESTINATIONS), rng.choice(("transfer", "remote_access"))))
    # Random draws repeat; each distinct probe is enough once.
    unique = {(i.shape(), i.subjects, e, d, m): (i, e, d, m) for i, e, d, m in probes}
    return list(unique.values())


def _static_checks(packs: list[Pack], owner: Pack) -> list[Finding]:
    findings: list[Finding] = []
    produced = {t for p in packs for r in p.rules for t in r.tags} | UNCOUNTED_TAGS | CLASSIFYING_TAGS
    for rule in owner.rules:
        bound = set(BOUND_NAME.findall(rule.when.source))
        for name in sorted(rule.when.variables() - bound - STAGE_VARIABLES[rule.stage]):
            extra = " (totals exist only in the decide stage)" if name == "totals" else ""
            findings.append(Finding(owner.id, rule.id, f"when: unknown variable '{name}'{extra}"))
        for var, attr in FIELD_REF.findall(rule.when.source):
            if attr not in VARIABLE_FIELDS[var]:
                findings.append(Finding(owner.id, rule.id, f"when: {var} has no field '{attr}' "
                                                           f"(fields: {', '.join(sorted(VARIABLE_FIELDS[var]))})"))
        for tag in TAG_READ.findall(rule.when.source):
            if tag not in produced:
                findings.append(Finding(owner.id, rule.id, f"when: reads tag '{tag}' that no rule adds"))
    return findings


@dataclass
class _Coverage:
    fired: set[str]           # classify rules that fired on some probe
    decided_first: set[str]   # decide rules that were the first match on some probe
    errors: dict[str, str]    # rule id -> first type error


def _coverage(packs: list[Pack], probes: list[tuple[Item, Exporter, str, str]]) -> _Coverage:
    cover = _Coverage(set(), set(), {})
    classify = [r for p in packs for r in p.rules if r.stage == "classify"]
    order = {p.id: n for n, p in enumerate(packs)}
    decide = sorted((r for p in packs for r in p.rules if r.stage == "decide"),
                    key=lambda r: (r.priority, order[r.pack], r.position))
    for item, exporter, destination, mode in probes:
        context = new_context({"exporter": {"ciio": exporter.ciio, "zone": exporter.zone or "",
                                            "surveying_approval": exporter.surveying_approval},
                               "destination": destination, "mode": mode, "as_of": "2026-11-21"})
        result = None
        while result is None:  # a rule that errors is set aside, so it cannot hide the others
            try:
                result = _classify(item, [r for r in classify if r.id not in cover.errors], context)
            except ConditionError as exc:
                culprits = [r for r in classify if r.id not in cover.errors and r.when.source in str(exc)]
                if not culprits:
                    raise
                for rule in culprits:
                    cover.errors[rule.id] = f"type error on a probe item ({item.kind}): {exc}"
        cover.fired.update(r.id for r in result.fired)
        if result.problem:
            continue
        context.set("item", _item_context(item))
        context.set("tags", sorted(result.tags))
        for pi, spi in PROBE_TOTALS:
            context.set("totals", {"pi": pi, "spi": spi})
            for rule in decide:
                if rule.id in cover.errors:
                    continue
                try:
                    hit = rule.when.evaluate(context)
                except ConditionError as exc:
                    cover.errors[rule.id] = f"type error: {exc}"
                    continue
                if hit:
                    cover.decided_first.add(rule.id)
                    break
    return cover


def _dynamic_findings(owner: Pack, cover: _Coverage, probes: int) -> list[Finding]:
    findings: list[Finding] = []
    for rule in owner.rules:
        if rule.id in cover.errors:
            findings.append(Finding(owner.id, rule.id, cover.errors[rule.id]))
        elif rule.stage == "classify" and rule.id not in cover.fired:
            findings.append(Finding(owner.id, rule.id, f"unreachable: never fires on {probes} probe items"))
        elif rule.stage == "decide" and rule.id not in cover.decided_first:
            findings.append(Finding(owner.id, rule.id, "unreachable: earlier decide rules always decide first "
                                                       f"on {probes} probe items"))
    return findings


def lint_packs(refs: list[str], probes: int = 800) -> list[Finding]:
    """Every problem in the given packs; an empty list means they lint clean."""
    findings: list[Finding] = []
    grid = probe_items(probes)
    coverage: dict[tuple[str, ...], _Coverage] = {}  # one probe run per distinct pack set
    for ref in refs:
        try:
            pack = load_pack(ref)
            packs = _load_set(pack, pack_set_for(pack))
            _unique_ids(packs)
        except PackError as exc:
            findings.append(Finding(ref, None, exc.message))
            continue
        findings += _static_checks(packs, pack)
        key = tuple(p.hash_ref for p in packs)
        if key not in coverage:
            coverage[key] = _coverage(packs, grid)
        findings += _dynamic_findings(pack, coverage[key], len(grid))
        for case in pack.tests:
            problem = _check_case_shape(case)
            if problem:
                findings.append(Finding(pack.id, None, f"tests: {problem}"))
    return findings


def _unique_ids(packs: list[Pack]) -> None:
    seen: dict[str, str] = {}
    for pack in packs:
        for rule in pack.rules:
            if rule.id in seen:
                where = "twice in this pack" if seen[rule.id] == pack.id else f"also in pack '{seen[rule.id]}'"
                raise PackError(f"{pack.path}: duplicate rule id '{rule.id}' ({where})")
            seen[rule.id] = pack.id


def _check_case_shape(case: dict) -> str | None:
    if not isinstance(case, dict) or not {"name", "request", "expect"} <= set(case):
        return "each test needs name, request and expect"
    return None


@dataclass
class CaseResult:
    pack: str
    name: str
    passed: bool
    detail: str


def run_case(packs: list[Pack], request: DecisionRequest, expect: dict) -> list[str]:
    """Compare a decision with an expectation: request outcome, and per item outcome and rules that must fire."""
    decision = PolicyEngine(packs).decide(request, Ytd())
    failures: list[str] = []
    if "outcome" in expect and decision.outcome.value != expect["outcome"]:
        failures.append(f"outcome {decision.outcome.value}, expected {expect['outcome']}")
    by_id = {i.id: i for i in decision.items}
    for item_id, want in (expect.get("items") or {}).items():
        got = by_id.get(item_id)
        if got is None:
            failures.append(f"item {item_id}: not in the decision")
            continue
        if "outcome" in want and got.outcome.value != want["outcome"]:
            failures.append(f"item {item_id}: outcome {got.outcome.value}, expected {want['outcome']}")
        missing = [r for r in want.get("rules", []) if r not in got.rules]
        if missing:
            failures.append(f"item {item_id}: rules {missing} did not fire (fired: {got.rules})")
        if "reasons_include" in want and not any(want["reasons_include"] in r for r in got.reasons):
            failures.append(f"item {item_id}: no reason mentions {want['reasons_include']!r}")
    if "ytd_after" in expect:
        after = {"pi_subjects": decision.ytd_after.pi_subjects, "spi_subjects": decision.ytd_after.spi_subjects}
        if after != expect["ytd_after"]:
            failures.append(f"ytd_after {after}, expected {expect['ytd_after']}")
    return failures


def run_pack_tests(refs: list[str]) -> list[CaseResult]:
    """Run the scenarios embedded in each pack, with the pack set each scenario names."""
    results: list[CaseResult] = []
    for ref in refs:
        try:
            pack = load_pack(ref)
        except PackError as exc:
            results.append(CaseResult(ref, "(load)", False, exc.message))
            continue
        for case in pack.tests:
            name = str(case.get("name", "?"))
            try:
                packs = _load_set(pack, list(case.get("with") or pack_set_for(pack)))
                failures = run_case(packs, parse_request(case["request"]), case.get("expect") or {})
            except (PackError, KeyError) as exc:
                failures = [str(exc)]
            except Exception as exc:  # a broken scenario is a failed scenario, not a crash
                failures = [f"{type(exc).__name__}: {exc}"]
            results.append(CaseResult(pack.id, name, not failures, "; ".join(failures)))
    return results
