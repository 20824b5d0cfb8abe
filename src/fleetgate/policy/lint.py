"""`fleetgate policy lint` and `fleetgate policy test`: static checks and embedded scenarios.

The CEL binding has no type checker, so the lint checks what it can statically (names, fields,
nested fields, switches, obligation placeholders, tags read but never written) and runs every
rule on a grid of probe requests that cover every kind, feature, exemption and exemption basis,
legal basis, zone and Lingang renewal, switch value and the threshold boundaries, on a date in
every interval between the packs' effective dates and the dates their rules compare with (only
the packs in force that day take part): a rule that errors or returns a non-boolean there has a
type error; a classify rule that never fires, or a decide rule that never decides first, is
unreachable.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from fleetgate.policy.decide import ItemDecision, PolicyEngine, _classify, _item_context, exporter_context
from fleetgate.policy.engine import ConditionError, EvalContext, new_context
from fleetgate.policy.packs import DEFAULT_PACKS_BY_JURISDICTION, Pack, PackError, Rule, load_pack, switch_values
from fleetgate.policy.request import (
    DecisionRequest,
    ExemptionBasis,
    Exporter,
    Item,
    LegalBasis,
    ListRenewal,
    Ytd,
    parse_request,
)
from fleetgate.policy.vocabulary import (
    CLASSIFYING_TAGS,
    EXEMPTION_PURPOSES,
    EXEMPTIONS,
    FEATURES,
    KINDS,
    NESTED_FIELDS,
    STAGE_VARIABLES,
    UNCOUNTED_TAGS,
    VARIABLE_FIELDS,
    ZONES,
)

FIELD_REF = re.compile(r"\b(item|exporter|totals)\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?")
SWITCH_REF = re.compile(r"\bswitches\.([A-Za-z_]\w*)")
TEMPLATE_REF = re.compile(r"\{(exporter(?:\.[A-Za-z_]\w*)+)\}")
DATE_LITERAL = re.compile(r"'(\d{4}-\d{2}-\d{2})'")
BOUND_NAME = re.compile(r"\.(?:exists|all|exists_one|map|filter)\(\s*([A-Za-z_]\w*)\s*,")
TAG_READ = re.compile(r"'([a-z][a-z0-9_]*)'\s+in\s+tags")
BOUNDARY_COUNTS = (0, 1, 9_999, 10_000, 99_999, 100_000, 100_001, 999_999, 1_000_000)
PROBE_DESTINATIONS = ("US", "DE", "CN", "JP", "GB")
DEFAULT_PROBE_DATE = dt.date(2026, 11, 21)
PAST, FUTURE = dt.date(2020, 1, 1), dt.date(2099, 1, 1)


def _totals(pi: int, spi: int, prev_pi: int = 0, prev_spi: int = 0, known: bool = True) -> dict:
    return {"pi": pi, "spi": spi, "pi_since_prev_year": pi + prev_pi, "spi_since_prev_year": spi + prev_spi,
            "prev_year_known": known}


# Totals on both sides of every threshold, this year's and (for the rules before 2024) since
# 1 January of the previous year, and with the previous year unknown.
PROBE_TOTALS = (*(_totals(pi, spi) for pi, spi in ((0, 0), (99_999, 0), (100_000, 0), (100_001, 0), (999_999, 0),
                                                    (1_000_000, 0), (0, 1), (0, 9_999), (0, 10_000))),
                _totals(0, 0, known=False), _totals(1, 0, 99_998), _totals(1, 0, 99_999), _totals(0, 1, 0, 9_998),
                _totals(0, 1, 0, 9_999))
RENEWALS = (None, ListRenewal("PROBE-RENEWAL", dt.date(2025, 12, 31)), ListRenewal("PROBE-RENEWAL", FUTURE))
PROCESSED = (None, 999_999, 1_000_000)
LEGAL = ((None, None), (LegalBasis("separate_consent", "R"), "P"), (LegalBasis("contract_necessity", "R"), "P"),
         (LegalBasis("contract_necessity", ""), None))


@dataclass(frozen=True)
class Probe:
    item: Item
    exporter: Exporter = field(default_factory=Exporter)
    destination: str = "US"
    mode: str = "transfer"
    as_of: dt.date = DEFAULT_PROBE_DATE
    switches: tuple[tuple[str, bool], ...] = ()  # overrides of the packs' defaults


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


def _bases(full: bool = True) -> list[ExemptionBasis | None]:
    """Exemption bases: none and every purpose filed in the past; in full, filed in the future and without a ref."""
    purposes = sorted(EXEMPTION_PURPOSES)
    extra = [*(ExemptionBasis(p, "PROBE-REF", FUTURE) for p in purposes),
             *(ExemptionBasis(p, "", PAST) for p in purposes)] if full else []
    return [None, *(ExemptionBasis(p, "PROBE-REF", PAST) for p in purposes), *extra]


def _kind_probes(kind: str, as_of: dt.date, full: bool) -> list[Probe]:
    """Every feature alone, every exemption claim, zone, renewal, processor size and legal basis for one kind."""
    features, plain = sorted(FEATURES), Exporter()
    out: list[Probe] = []
    states = ((False, False), (True, False), (False, True)) if full else ((False, False),)
    for feats in [(), *[(f,) for f in features]]:
        for anon, pseudo in states:
            out.append(Probe(Item("p", kind, feats, anon, pseudo, None, 1000), plain, as_of=as_of))
    for exemption in sorted(EXEMPTIONS):
        for basis in _bases(full):
            out.append(Probe(Item("p", kind, (), False, False, exemption, 1000, exemption_basis=basis), plain,
                             as_of=as_of))
    for zone in sorted(ZONES):
        for renewal in RENEWALS:
            for feats, pseudo in (((), False), (("vin",), True)):
                out.append(Probe(Item("p", kind, feats, False, pseudo, None, 1000),
                                 Exporter(zone=zone, lingang_list_renewal=renewal), as_of=as_of))
    for processed in PROCESSED:
        out.append(Probe(Item("p", kind, ("vin",), False, False, None, 1000),
                         Exporter(processed_pi_subjects=processed), as_of=as_of))
    out.append(Probe(Item("p", kind, ("vin",), False, False, None, 1000), Exporter(ciio=True), as_of=as_of))
    out.append(Probe(Item("p", kind, (), False, False, None, 1000), Exporter(surveying_approval=True),
                     mode="remote_access", as_of=as_of))
    if full:
        for legal, pipia in LEGAL:
            out.append(Probe(Item("p", kind, ("vin",), False, False, None, 1000, legal_basis=legal, pipia_ref=pipia),
                             as_of=as_of))
        out.append(Probe(Item("p", kind, (), False, False, None, 1000, geo_confidentiality_processed=True),
                         as_of=as_of))
    return out


def _switch_probes(switches: Mapping[str, bool], as_of: dt.date) -> list[Probe]:
    """Each switch flipped alone, on items that its rules are likely to read."""
    out = []
    for name, default in sorted(switches.items()):
        flipped = ((name, not default),)
        for kind in sorted(KINDS):
            for feats in ((), ("national_id",), ("vin",)):
                for legal in (None, LegalBasis("contract_necessity", "R")):
                    out.append(Probe(Item("p", kind, feats, False, False, None, 1000, legal_basis=legal,
                                          pipia_ref="P"), as_of=as_of, switches=flipped))
            for exemption in sorted(EXEMPTIONS):
                for basis in _bases(full=False):
                    out.append(Probe(Item("p", kind, (), False, False, exemption, 1000, exemption_basis=basis),
                                     as_of=as_of, switches=flipped))
    return out


def probe_dates(packs: list[Pack]) -> list[dt.date]:
    """One date in every interval between the packs' effective dates and the dates their rules compare with."""
    bounds = {p.effective_from for p in packs} | {p.effective_until for p in packs if p.effective_until}
    for pack in packs:
        for rule in pack.rules:
            bounds.update(dt.date.fromisoformat(d) for d in DATE_LITERAL.findall(rule.when.source))
    start = min(p.effective_from for p in packs)
    return sorted(d for d in bounds | {DEFAULT_PROBE_DATE} if d >= start)


def probe_items(count: int = 800, seed: int = 7, packs: list[Pack] | None = None) -> list[Probe]:
    """The main grid on the default date (every kind, feature, exemption, zone and switch) and random mixes
    on every probe date; `dated_probes` adds a smaller grid for each other date."""
    rng = random.Random(seed)
    kinds, features, exemptions, zones = sorted(KINDS), sorted(FEATURES), sorted(EXEMPTIONS), sorted(ZONES)
    dates = probe_dates(packs) if packs else [DEFAULT_PROBE_DATE]
    switches = switch_values(packs) if packs else {}
    probes: list[Probe] = [p for kind in kinds for p in _kind_probes(kind, DEFAULT_PROBE_DATE, full=True)]
    for samples in (0, 999, 1000, 100_000):  # model updates: below and above the aggregation floor
        for noise in (0.0, 1.1):
            probes.append(Probe(Item("p", "model_update", (), False, False, None, 0, samples, noise)))
    probes += _switch_probes(switches, DEFAULT_PROBE_DATE)
    for _ in range(count):
        item = Item("p", rng.choice(kinds), tuple(rng.sample(features, rng.choice((0, 1, 1, 2, 3)))),
                    rng.random() < 0.2, rng.random() < 0.3,
                    rng.choice([None, None, None, *exemptions]), rng.choice(BOUNDARY_COUNTS),
                    exemption_basis=rng.choice(_bases()), legal_basis=rng.choice(LEGAL)[0],
                    pipia_ref=rng.choice((None, "P")), geo_confidentiality_processed=rng.random() < 0.2)
        exporter = Exporter(ciio=rng.random() < 0.3, zone=rng.choice([None, *zones]),
                            surveying_approval=rng.random() < 0.3, lingang_list_renewal=rng.choice(RENEWALS),
                            processed_pi_subjects=rng.choice(PROCESSED))
        flips = tuple((n, rng.random() < 0.5) for n in sorted(switches))
        probes.append(Probe(item, exporter, rng.choice(PROBE_DESTINATIONS), rng.choice(("transfer", "remote_access")),
                            rng.choice(dates), flips))
    # Random draws repeat; each distinct probe is enough once.
    return list(dict.fromkeys(probes))


def dated_probes(packs: list[Pack]) -> Iterator[Probe]:
    """A smaller grid on every other probe date, for rules that only apply then (generated lazily)."""
    switches = switch_values(packs)
    for day in probe_dates(packs):
        if day != DEFAULT_PROBE_DATE:
            for kind in sorted(KINDS):
                yield from _kind_probes(kind, day, full=False)
            yield from _switch_probes(switches, day)


def _static_checks(packs: list[Pack], owner: Pack) -> list[Finding]:
    findings: list[Finding] = []
    produced = {t for p in packs for r in p.rules for t in r.tags} | UNCOUNTED_TAGS | CLASSIFYING_TAGS
    declared = {name for p in packs for name in p.switches}
    for rule in owner.rules:
        bound = set(BOUND_NAME.findall(rule.when.source))
        for name in sorted(rule.when.variables() - bound - STAGE_VARIABLES[rule.stage]):
            extra = " (totals exist only in the decide stage)" if name == "totals" else ""
            findings.append(Finding(owner.id, rule.id, f"when: unknown variable '{name}'{extra}"))
        for var, attr, sub in FIELD_REF.findall(rule.when.source):
            problem = _field_problem(var, attr, sub)
            if problem:
                findings.append(Finding(owner.id, rule.id, f"when: {problem}"))
        for name in SWITCH_REF.findall(rule.when.source):
            if name not in declared:
                findings.append(Finding(owner.id, rule.id, f"when: reads switch '{name}' that no pack declares"))
        for tag in TAG_READ.findall(rule.when.source):
            if tag not in produced:
                findings.append(Finding(owner.id, rule.id, f"when: reads tag '{tag}' that no rule adds"))
        findings += _template_findings(owner, rule)
    return findings


def _field_problem(var: str, attr: str, sub: str) -> str | None:
    if attr not in VARIABLE_FIELDS[var]:
        return f"{var} has no field '{attr}' (fields: {', '.join(sorted(VARIABLE_FIELDS[var]))})"
    nested = NESTED_FIELDS.get(f"{var}.{attr}")
    if nested is not None and sub not in nested:
        return f"{var}.{attr} has no field '{sub}' (fields: {', '.join(sorted(nested))})"
    return None


def _template_findings(owner: Pack, rule: Rule) -> list[Finding]:
    """Obligation placeholders must name an exporter field, since the engine fills them once per request."""
    out = []
    for text in [*rule.obligations, *(b.text for b in rule.blocking)]:
        for ref in TEMPLATE_REF.findall(text):
            parts = ref.split(".")
            if len(parts) > 3 or (len(parts) == 2 and ref in NESTED_FIELDS):
                problem: str | None = "must name one exporter field, not a map"
            else:
                problem = _field_problem(parts[0], parts[1], parts[2] if len(parts) > 2 else "")
            if problem:
                out.append(Finding(owner.id, rule.id, f"obligation placeholder {{{ref}}}: {problem}"))
    return out


@dataclass
class _Coverage:
    fired: set[str]           # classify rules that fired on some probe
    decided_first: set[str]   # decide rules that were the first match on some probe
    errors: dict[str, str]    # rule id -> first type error
    probes: int = 0           # probes run


def _rules_on(packs: list[Pack], day: dt.date) -> tuple[list[Rule], list[Rule]]:
    """The classify rules and the decide rules in order, of the packs in force on `day`."""
    active = [p for p in packs if p.in_force(day)]
    order = {p.id: n for n, p in enumerate(active)}
    classify = [r for p in active for r in p.rules if r.stage == "classify"]
    decide = sorted((r for p in active for r in p.rules if r.stage == "decide"),
                    key=lambda r: (r.priority, order[r.pack], r.position))
    return classify, decide


def _coverage(packs: list[Pack], probes: list[Probe], wanted: list[Rule] | None = None) -> _Coverage:
    """Run every probe, then the other dates' grids until every wanted rule (default: all) was reached."""
    cover = _Coverage(set(), set(), {})
    defaults = switch_values(packs)
    wanted = wanted if wanted is not None else [r for p in packs for r in p.rules]
    rules_by_day: dict[dt.date, tuple[list[Rule], list[Rule]]] = {}
    for probe in itertools.chain(probes, dated_probes(packs)):
        if cover.probes >= len(probes) and cover.probes % 200 == 0 and _all_reached(wanted, cover):
            break
        if probe.as_of not in rules_by_day:
            rules_by_day[probe.as_of] = _rules_on(packs, probe.as_of)
        classify, decide = rules_by_day[probe.as_of]
        _probe(probe, classify, decide, {**defaults, **dict(probe.switches)}, cover)
        cover.probes += 1
    return cover


def _all_reached(rules: list[Rule], cover: _Coverage) -> bool:
    """Every classify rule fired and every decide rule decided first somewhere (or has a type error)."""
    return all(r.id in cover.errors or r.id in (cover.fired if r.stage == "classify" else cover.decided_first)
               for r in rules)


def _probe(probe: Probe, classify: list[Rule], decide: list[Rule], switches: dict[str, bool],
           cover: _Coverage) -> None:
    context = new_context({"exporter": exporter_context(probe.exporter), "destination": probe.destination,
                           "mode": probe.mode, "as_of": probe.as_of.isoformat(), "switches": switches})
    item = probe.item
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
        return
    context.set("item", _item_context(item))
    context.set("tags", sorted(result.tags))
    context.set("totals", PROBE_TOTALS[0])
    # A rule that does not read the totals answers alike for every totals probe: evaluate it once.
    fixed = {r.id: _evaluate(r, context, cover) for r in decide if "totals" not in r.when.variables()}
    for totals in PROBE_TOTALS:
        context.set("totals", totals)
        for rule in decide:
            if rule.id in cover.errors:
                continue
            hit = fixed[rule.id] if rule.id in fixed else _evaluate(rule, context, cover)
            if hit:
                cover.decided_first.add(rule.id)
                break


def _evaluate(rule: Rule, context: EvalContext, cover: _Coverage) -> bool:
    try:
        return rule.when.evaluate(context)
    except ConditionError as exc:
        cover.errors.setdefault(rule.id, f"type error: {exc}")
        return False


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
    loaded: list[tuple[Pack, list[Pack]]] = []
    for ref in refs:
        try:
            pack = load_pack(ref)
            packs = _load_set(pack, pack_set_for(pack))
            _unique_ids(packs)
        except PackError as exc:
            findings.append(Finding(ref, None, exc.message))
            continue
        loaded.append((pack, packs))
    # One probe run per distinct pack set, looking for the rules of the packs linted with that set.
    groups: dict[tuple[str, ...], list[Pack]] = {}
    for pack, packs in loaded:
        groups.setdefault(tuple(p.hash_ref for p in packs), []).append(pack)
    coverage: dict[tuple[str, ...], tuple[_Coverage, int]] = {}
    for pack, packs in loaded:
        findings += _static_checks(packs, pack)
        key = tuple(p.hash_ref for p in packs)
        if key not in coverage:
            wanted = [r for owner in groups[key] for r in owner.rules]
            cover = _coverage(packs, probe_items(probes, packs=packs), wanted)
            coverage[key] = (cover, cover.probes)
        findings += _dynamic_findings(pack, *coverage[key])
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


CASE_KEYS = {"name", "request", "expect", "with", "switches"}


def _check_case_shape(case: dict) -> str | None:
    if not isinstance(case, dict) or not {"name", "request", "expect"} <= set(case):
        return "each test needs name, request and expect"
    unknown = sorted(set(case) - CASE_KEYS)
    if unknown:
        return f"{case['name']}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(CASE_KEYS))})"
    return None


@dataclass
class CaseResult:
    pack: str
    name: str
    passed: bool
    detail: str


def run_case(packs: list[Pack], request: DecisionRequest, expect: dict,
             switches: Mapping[str, bool] | None = None) -> list[str]:
    """Compare a decision with an expectation.

    Request level: outcome, ytd_after, blocked (ids of blocked items), approval_terms ({OUTCOME:
    years}). Per item: outcome, rules that must fire, reasons_include, obligations_include, and
    blocking (the exact list of request fields its blocking obligations require).
    """
    decision = PolicyEngine(packs, switches=switches).decide(request, Ytd())
    failures: list[str] = []
    if "outcome" in expect and decision.outcome.value != expect["outcome"]:
        failures.append(f"outcome {decision.outcome.value}, expected {expect['outcome']}")
    by_id = {i.id: i for i in decision.items}
    for item_id, want in (expect.get("items") or {}).items():
        got = by_id.get(item_id)
        if got is None:
            failures.append(f"item {item_id}: not in the decision")
            continue
        failures += [f"item {item_id}: {f}" for f in _item_failures(got, want)]
    if "ytd_after" in expect:
        after = {"pi_subjects": decision.ytd_after.pi_subjects, "spi_subjects": decision.ytd_after.spi_subjects}
        if after != expect["ytd_after"]:
            failures.append(f"ytd_after {after}, expected {expect['ytd_after']}")
    if "blocked" in expect and sorted(decision.blocked) != sorted(expect["blocked"]):
        failures.append(f"blocked {decision.blocked}, expected {expect['blocked']}")
    for outcome, years in (expect.get("approval_terms") or {}).items():
        got_years = decision.approval_terms.get(outcome, {}).get("valid_years")
        if got_years != years:
            failures.append(f"approval term of {outcome}: {got_years} years, expected {years}")
    return failures


def _item_failures(got: ItemDecision, want: dict) -> list[str]:
    failures = []
    if "outcome" in want and got.outcome.value != want["outcome"]:
        failures.append(f"outcome {got.outcome.value}, expected {want['outcome']}")
    missing = [r for r in want.get("rules", []) if r not in got.rules]
    if missing:
        failures.append(f"rules {missing} did not fire (fired: {got.rules})")
    absent = [r for r in want.get("rules_absent", []) if r in got.rules]
    if absent:
        failures.append(f"rules {absent} fired but must not")
    if "reasons_include" in want and not any(want["reasons_include"] in r for r in got.reasons):
        failures.append(f"no reason mentions {want['reasons_include']!r}")
    if "obligations_include" in want and not any(want["obligations_include"] in o for o in got.obligations):
        failures.append(f"no obligation mentions {want['obligations_include']!r} (obligations: {got.obligations})")
    if "blocking" in want:
        requires = sorted(b.requires for b in got.blocking)
        if requires != sorted(want["blocking"]):
            failures.append(f"blocking requires {requires}, expected {sorted(want['blocking'])}")
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
                failures = run_case(packs, parse_request(case["request"]), case.get("expect") or {},
                                    case.get("switches"))
            except (PackError, KeyError) as exc:
                failures = [str(exc)]
            except Exception as exc:  # a broken scenario is a failed scenario, not a crash
                failures = [f"{type(exc).__name__}: {exc}"]
            results.append(CaseResult(pack.id, name, not failures, "; ".join(failures)))
    return results
