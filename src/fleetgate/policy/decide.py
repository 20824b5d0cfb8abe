"""The decision engine: classify every item with the packs' rules, count subjects, then decide.

1. Classify. Each item's tags are computed to a fixed point: every classify rule is run against
   the tags of the previous round, until the tags stop changing. Rules therefore do not depend on
   the order of packs. Unknown kinds or features, or an item no rule classifies, stay LOCAL_ONLY
   (`unclassified`).
2. Count. Subjects of items tagged `pi` count toward the PI total, of `spi` toward the SPI total,
   unless the item is `exempt` or `ftz_listed`. The totals add the year-to-date counts; they are
   summed across items, never de-duplicated, because a request cannot know overlaps.
3. Decide. Decide rules run in priority order (then pack order, then file order); the first that
   matches gives the item's outcome. No match is LOCAL_ONLY: the engine fails closed.

The request takes the most severe outcome among its items. Obligations of the rules that fired are
listed for every item that may leave; some are blocking (`ItemDecision.blocking`): the item may
not leave until the request field each names is recorded, whatever its outcome.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetgate.policy.engine import EvalContext, new_context
from fleetgate.policy.packs import Pack, Rule, apply_switches, approval_term, switch_values
from fleetgate.policy.request import DecisionRequest, Exporter, Item, Ytd
from fleetgate.policy.vocabulary import (
    CLASSIFYING_TAGS,
    FEATURES,
    KINDS,
    TAG_PI,
    TAG_SPI,
    UNCOUNTED_TAGS,
    Outcome,
    most_severe,
)

MAX_ROUNDS = 8
UNCLASSIFIED = "unclassified"
TEMPLATE = re.compile(r"\{(exporter(?:\.[a-z_]+)+)\}")
ITEM_SUBJECTS = re.compile(r"\bitem\.subjects\b")  # a rule reading an item's own count
ITEM_FIELD = re.compile(r"\bitem\.([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Blocking:
    """A blocking obligation: the item may not leave until the request field `requires` is recorded."""

    rule: str
    requires: str  # "legal_basis" | "pipia_ref" (vocabulary.BLOCKING_REQUIRES)
    text: str
    cite: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "requires": self.requires, "text": self.text, "cite": self.cite}


@dataclass
class ItemDecision:
    id: str
    outcome: Outcome
    rules: list[str]
    reasons: list[str]
    tags: list[str] = field(default_factory=list)
    obligations: list[str] = field(default_factory=list)  # every obligation, blocking ones included
    counted_as: str | None = None  # "pi" | "spi" | None
    blocking: list[Blocking] = field(default_factory=list)  # empty for LOCAL_ONLY items

    @property
    def blocked(self) -> bool:
        return bool(self.blocking)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "outcome": self.outcome.value, "rules": self.rules, "reasons": self.reasons,
                "blocking": [b.to_dict() for b in self.blocking]}


@dataclass
class Decision:
    outcome: Outcome
    items: list[ItemDecision]
    obligations: list[str]
    packs: dict[str, str]
    ytd_before: Ytd
    ytd_after: Ytd
    as_of: str
    switches: dict[str, bool] = field(default_factory=dict)
    # outcome -> how long a filing for it granted on as_of lasts ({valid_years, cite, pack})
    approval_terms: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def blocked(self) -> list[str]:
        """Ids of the items held by a blocking obligation."""
        return [i.id for i in self.items if i.blocking]

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape of `fleetgate decide` (docs/policy.md)."""
        return {
            "outcome": self.outcome.value,
            "items": [item.to_dict() for item in self.items],
            "obligations": self.obligations,
            "blocked": self.blocked,
            "packs": self.packs,
            "switches": self.switches,
            "approval_terms": self.approval_terms,
            "ytd_after": {"pi_subjects": self.ytd_after.pi_subjects, "spi_subjects": self.ytd_after.spi_subjects},
        }


@dataclass
class _Classified:
    tags: frozenset[str]
    fired: list[Rule]
    problem: str | None  # why the item is unclassified, when it is


class PolicyEngine:
    """Decides requests against a set of loaded packs."""

    def __init__(self, packs: Sequence[Pack], memoize: bool = True, switches: Mapping[str, bool] | None = None) -> None:
        self.packs = apply_switches(packs, switches or {})
        self.switches = switch_values(self.packs)
        # Items of one shape classify alike; memoizing by shape is exact (see Item.shape) and is
        # switched off only to measure the engine without it.
        self.memoize = memoize

    def active_packs(self, request: DecisionRequest) -> list[Pack]:
        return [p for p in self.packs if p.in_force(request.as_of)]

    def decide(self, request: DecisionRequest, ytd: Ytd | None = None) -> Decision:
        """Decide a request. `ytd` (from the ledger) is used when the request has none."""
        packs = self.active_packs(request)
        pack_order = {p.id: n for n, p in enumerate(packs)}
        exporter = exporter_context(request.exporter)
        base = {
            "exporter": exporter,
            "destination": request.destination,
            "mode": request.mode,
            "as_of": request.as_of.isoformat(),
            "switches": self.switches,
        }
        # Rules whose request-level part is false (another zone, date or switch) cannot fire here.
        guard_context = new_context(base)
        rules = [r for p in packs for r in p.rules if r.guard is None or r.guard.evaluate(guard_context)]
        classify_rules = [r for r in rules if r.stage == "classify"]
        decide_rules = sorted((r for r in rules if r.stage == "decide"),
                              key=lambda r: (r.priority, pack_order[r.pack], r.position))
        # Converting the item to CEL costs a few µs per field, so each stage gets only the fields its rules read.
        classify_fields, decide_fields = _fields_read(classify_rules), _fields_read(decide_rules)
        by_kind: dict[tuple[int, str], list[Rule]] = {}  # rules that can fire for a kind (rule lists by id)
        ytd_before = request.ytd or ytd or Ytd()

        # Items of one shape classify alike, so a 10,000-item request of a few shapes runs
        # the rules a few times, not 10,000 times.
        classified: dict[tuple, _Classified] = {}
        per_item: list[_Classified] = []
        context = new_context(base)
        reads_subjects_early = any(ITEM_SUBJECTS.search(r.when.source) for r in classify_rules)
        for item in request.items:
            key = item.shape() + ((item.subjects,) if reads_subjects_early else ()) + \
                (() if self.memoize else (item.id,))
            if key not in classified:
                classified[key] = _classify(item, _for_kind(classify_rules, item.kind, by_kind), context,
                                            classify_fields)
            per_item.append(classified[key])

        pi_total, spi_total = ytd_before.pi_subjects, ytd_before.spi_subjects
        counted: list[str | None] = []
        for item, result in zip(request.items, per_item, strict=True):
            category = _count_category(result.tags)
            counted.append(category)
            if category == "spi":
                spi_total += item.subjects or 0
            elif category == "pi":
                pi_total += item.subjects or 0
        totals = {"pi": pi_total, "spi": spi_total,
                  # the pre-2024 window: since 1 January of the previous year (summed, not de-duplicated)
                  "pi_since_prev_year": (ytd_before.prev_pi_subjects or 0) + pi_total,
                  "spi_since_prev_year": (ytd_before.prev_spi_subjects or 0) + spi_total,
                  "prev_year_known": ytd_before.prev_year_known}

        # A rule that reads an item's own subject count makes that count part of the item's shape.
        reads_subjects = any(ITEM_SUBJECTS.search(r.when.source) for r in classify_rules + decide_rules)
        decided: dict[tuple, _Explained] = {}
        context.set("totals", totals)
        items_out: list[ItemDecision] = []
        for item, result, category in zip(request.items, per_item, counted, strict=True):
            key = item.shape() + (category,) + ((item.subjects,) if reads_subjects else ()) + \
                (() if self.memoize else (item.id,))
            if key not in decided:
                deciding = _for_kind(decide_rules, item.kind, by_kind)
                decided[key] = _explain(result, *_decide(item, result, deciding, context, category, decide_fields),
                                        exporter)
            out = decided[key]
            items_out.append(ItemDecision(id=item.id, outcome=out.outcome, rules=list(out.rules),
                                          reasons=list(out.reasons), tags=list(out.tags),
                                          obligations=list(out.obligations), counted_as=category,
                                          blocking=list(out.blocking)))

        outcome = most_severe([i.outcome for i in items_out])
        return Decision(
            outcome=outcome,
            items=items_out,
            obligations=_unique(o for i in items_out for o in i.obligations),
            packs={p.id: p.hash_ref for p in packs},
            ytd_before=ytd_before,
            ytd_after=Ytd(pi_subjects=pi_total, spi_subjects=spi_total),
            as_of=request.as_of.isoformat(),
            switches=dict(self.switches),
            approval_terms=_approval_terms(packs, {i.outcome for i in items_out}, request),
        )


@dataclass(frozen=True)
class _Explained:
    """What one decided shape says: shared by every item of that shape."""

    outcome: Outcome
    rules: tuple[str, ...]
    reasons: tuple[str, ...]
    tags: tuple[str, ...]
    obligations: tuple[str, ...]
    blocking: tuple[Blocking, ...]


def _explain(result: _Classified, outcome: Outcome, deciding: list[Rule], problem: str | None,
             exporter: Mapping[str, Any]) -> _Explained:
    fired = result.fired + deciding
    reasons = [r.reason() for r in fired]
    rules = [r.id for r in fired]
    if problem:
        rules = ([UNCLASSIFIED] if problem.startswith(UNCLASSIFIED) else []) + rules
        reasons = ([UNCLASSIFIED] if problem.startswith(UNCLASSIFIED) else []) + [problem] + reasons
    leaves = outcome is not Outcome.LOCAL_ONLY
    blocking = [Blocking(r.id, b.requires, _render(b.text, exporter), r.citation.short())
                for r in fired for b in r.blocking] if leaves else []
    obligations = _unique([*(_render(o, exporter) for r in fired for o in r.obligations),
                           *(b.text for b in blocking)]) if leaves else []
    return _Explained(outcome, tuple(rules), tuple(reasons), tuple(sorted(result.tags)), tuple(obligations),
                      tuple(blocking))


def exporter_context(exporter: Exporter) -> dict[str, Any]:
    """The `exporter` variable of the rules: every field present, "" / 0 / false where the request has none."""
    renewal = exporter.lingang_list_renewal
    return {"ciio": exporter.ciio, "zone": exporter.zone or "", "surveying_approval": exporter.surveying_approval,
            "lingang_list_renewal": {"ref": renewal.ref if renewal else "",
                                     "until": renewal.until.isoformat() if renewal else ""},
            "processed_pi_subjects": exporter.processed_pi_subjects or 0,
            "processed_pi_known": exporter.processed_pi_subjects is not None}


def _render(text: str, exporter: Mapping[str, Any]) -> str:
    """Fill `{exporter.field}` placeholders, so an obligation can cite what the workspace recorded."""
    def value(match: re.Match[str]) -> str:
        node: Any = {"exporter": exporter}
        for part in match.group(1).split("."):
            node = node.get(part, "") if isinstance(node, Mapping) else ""
        return str(node)

    return TEMPLATE.sub(value, text)


def _approval_terms(packs: list[Pack], outcomes: set[Outcome], request: DecisionRequest) -> dict[str, dict[str, Any]]:
    terms = {}
    for outcome in sorted(outcomes, key=lambda o: o.severity):
        term = approval_term(packs, outcome, request.as_of)
        if term is not None:
            terms[outcome.value] = {"valid_years": term.valid_years, "cite": term.cite, "pack": term.pack}
    return terms


def _for_kind(rules: list[Rule], kind: str, cache: dict[tuple[int, str], list[Rule]]) -> list[Rule]:
    """The rules (in order) whose `item.kind` conjunct, if any, allows `kind`."""
    key = (id(rules), kind)
    if key not in cache:
        cache[key] = [r for r in rules if r.kinds is None or kind in r.kinds]
    return cache[key]


def _fields_read(rules: list[Rule]) -> frozenset[str]:
    return frozenset(f for r in rules for f in ITEM_FIELD.findall(r.when.source))


def _item_context(item: Item, fields: frozenset[str] | None = None) -> dict[str, Any]:
    """The `item` variable: every field, or only `fields` (the ones the rules at hand read)."""
    full = _full_item_context(item)
    return full if fields is None else {k: v for k, v in full.items() if k in fields}


def _full_item_context(item: Item) -> dict[str, Any]:
    basis, legal = item.exemption_basis, item.legal_basis
    return {"kind": item.kind, "features": sorted(set(item.features)), "anonymized": item.anonymized,
            "pseudonymized": item.pseudonymized, "exemption": item.exemption or "",
            "subjects": item.subjects if item.subjects is not None else 0,
            "aggregated_samples": item.aggregated_samples, "dp_noise_multiplier": item.dp_noise_multiplier,
            "exemption_basis": {"purpose": basis.purpose if basis else "", "ref": basis.ref if basis else "",
                                "filed_on": basis.filed_on.isoformat() if basis and basis.filed_on else ""},
            "legal_basis": {"type": legal.type if legal else "", "ref": legal.ref if legal else ""},
            "pipia_ref": item.pipia_ref or "",
            "geo_confidentiality_processed": item.geo_confidentiality_processed}


def _classify(item: Item, rules: list[Rule], context: EvalContext,
              fields: frozenset[str] | None = None) -> _Classified:
    unknown_features = sorted(set(item.features) - FEATURES)
    if item.kind not in KINDS:
        return _Classified(frozenset(), [], f"{UNCLASSIFIED}: unknown kind '{item.kind}'")
    if unknown_features:
        return _Classified(frozenset(), [], f"{UNCLASSIFIED}: unknown feature '{unknown_features[0]}'")
    context.set("item", _item_context(item, fields))
    # Rules that do not read tags give the same answer every round: evaluate them once.
    fixed = [r for r in rules if not _reads_tags(r) and r.when.evaluate(context)]
    dependent = [r for r in rules if _reads_tags(r)]
    fixed_ids = {r.id for r in fixed}
    tags: frozenset[str] = frozenset(t for r in fixed for t in r.tags)
    fired: list[Rule] = fixed
    for _ in range(MAX_ROUNDS):
        context.set("tags", sorted(tags))
        hits = {r.id for r in dependent if r.when.evaluate(context)}
        fired = [r for r in rules if r.id in fixed_ids or r.id in hits]
        new_tags = frozenset(t for r in fired for t in r.tags)
        if new_tags == tags:
            break
        tags = new_tags
    else:
        return _Classified(tags, fired, f"{UNCLASSIFIED}: the classification rules do not settle "
                                        f"(tags keep changing after {MAX_ROUNDS} rounds)")
    if not tags & CLASSIFYING_TAGS:
        return _Classified(tags, fired, f"{UNCLASSIFIED}: no rule of the active packs classifies kind "
                                        f"'{item.kind}' with these features")
    return _Classified(tags, fired, None)


def _reads_tags(rule: Rule) -> bool:
    return "tags" in rule.when.variables()


def _count_category(tags: frozenset[str]) -> str | None:
    if tags & UNCOUNTED_TAGS:
        return None
    if TAG_SPI in tags:
        return "spi"
    if TAG_PI in tags:
        return "pi"
    return None


def _decide(item: Item, result: _Classified, rules: list[Rule], context: EvalContext,
            category: str | None, fields: frozenset[str] | None = None) -> tuple[Outcome, list[Rule], str | None]:
    if result.problem:
        return Outcome.LOCAL_ONLY, [], result.problem
    if category is not None and item.subjects is None:
        return Outcome.LOCAL_ONLY, [], ("subjects unknown: the item holds personal information, "
                                        "so it must state how many people it covers")
    context.set("item", _item_context(item, fields))
    context.set("tags", sorted(result.tags))
    for rule in rules:
        if rule.when.evaluate(context):
            return rule.outcome or Outcome.LOCAL_ONLY, [rule], None
    return Outcome.LOCAL_ONLY, [], "no rule of the active packs decides this item; it stays local (fail closed)"


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(values))
