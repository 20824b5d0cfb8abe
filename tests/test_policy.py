"""The policy engine: request validation, pack loading and lint, properties of decisions, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import run_cli
from fleetgate.policy import Outcome, PolicyEngine, RequestError, Ytd, load_packs, parse_request
from fleetgate.policy.lint import lint_packs, run_pack_tests
from fleetgate.policy.packs import DEFAULT_PACKS_BY_JURISDICTION, PackError, builtin_pack_ids, load_pack
from fleetgate.policy.vocabulary import EXEMPTIONS, FEATURES, KINDS, ZONES, most_severe

CN = load_packs(DEFAULT_PACKS_BY_JURISDICTION["CN"])
ENGINE = PolicyEngine(CN)


def _req(**over: object) -> dict:
    doc = {"as_of": "2026-11-21", "destination": "US",
           "items": [{"id": "a", "kind": "owner_record", "features": ["vin"], "subjects": 10}]}
    doc.update(over)
    return doc


# ---- request validation -------------------------------------------------------------------------
@pytest.mark.parametrize(("doc", "field"), [
    (_req(colour="red"), "colour: unknown field"),
    (_req(exporter={"ciio": False, "zone": "atlantis"}), "exporter.zone"),
    (_req(exporter={"cio": True}), "exporter.cio: unknown field"),
    (_req(ytd={"pi_subjects": -1}), "ytd.pi_subjects: must not be negative"),
    (_req(items=[{"id": "a", "kind": "owner_record", "subjects": -5}]), "items[0].subjects: must not be negative"),
    (_req(items=[{"id": "a", "kind": "owner_record", "subjects": 1, "extra": 1}]), "items[0].extra: unknown field"),
    (_req(items=[{"id": "a", "kind": "owner_record", "exemption": "friendship"}]), "items[0].exemption"),
    (_req(mode="teleport"), "mode"),
    (_req(destination="usa"), "destination"),
    (_req(as_of="yesterday"), "as_of"),
    (_req(items=[]), "items"),
    (_req(items=[{"id": "a", "kind": "production"}, {"id": "a", "kind": "production"}]), "items[1].id"),
    (_req(exporter={"ciio": "no"}), "exporter.ciio"),
])
def test_invalid_requests_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(doc)
    assert field in info.value.message


def test_yaml_dates_and_null_exemption_are_accepted() -> None:
    import yaml

    request = parse_request(yaml.safe_load("as_of: 2026-11-21\ndestination: US\nitems:\n"
                                           "  - {id: a, kind: production, exemption: null, subjects: 0}\n"))
    assert request.as_of.isoformat() == "2026-11-21"


# ---- packs -------------------------------------------------------------------------------------
def test_shipped_packs_lint_clean() -> None:
    assert lint_packs(builtin_pack_ids()) == []


def test_every_shipped_pack_has_scenarios_and_cites_every_rule() -> None:
    for pack_id in builtin_pack_ids():
        pack = load_pack(pack_id)
        assert pack.tests, pack_id
        assert pack.sources, pack_id
        for rule in pack.rules:
            assert rule.citation.url.startswith("http"), rule.id
            assert rule.citation.article and rule.citation.instrument, rule.id


PACK = """
id: test-pack
version: "1"
title: t
instrument: t
jurisdiction: XX
effective_from: 2020-01-01
sources: [{{id: s, url: "https://example.org"}}]
rules:
{rules}
tests: []
"""
RULE = """  - id: {id}
    title: t
    stage: {stage}
    {priority}
    citation: {{instrument: t, article: "1", url: "https://example.org", evidence: V}}
    when: "{when}"
    effect: {effect}
"""


def _pack_file(tmp_path: Path, *rules: dict) -> str:
    body = "".join(RULE.format(priority=f"priority: {r['priority']}" if "priority" in r else "",
                               **{k: v for k, v in r.items() if k != "priority"}) for r in rules)
    path = tmp_path / "test-pack.yaml"
    path.write_text(PACK.format(rules=body), encoding="utf-8")
    return str(path)


def test_a_pack_that_does_not_compile_does_not_load(tmp_path: Path) -> None:
    path = _pack_file(tmp_path, {"id": "R-1", "stage": "classify", "when": "item.kind ==", "effect": "{tags: [pi]}"})
    with pytest.raises(PackError, match="R-1: when: does not compile"):
        load_pack(path)


def test_lint_finds_bad_fields_totals_in_classify_unknown_tags_and_unreachable_rules(tmp_path: Path) -> None:
    path = _pack_file(
        tmp_path,
        {"id": "R-BASE", "stage": "classify", "when": "true", "effect": "{tags: [no_pi]}"},
        {"id": "R-FIELD", "stage": "classify", "when": "item.kindd == 'x'", "effect": "{tags: [pi]}"},
        {"id": "R-TOTALS", "stage": "classify", "when": "totals.pi > 0", "effect": "{tags: [pi]}"},
        {"id": "R-TAG", "stage": "decide", "priority": 10, "when": "'pii' in tags", "effect": "{outcome: EXPORT_FREE}"},
        {"id": "R-ALL", "stage": "decide", "priority": 20, "when": "true", "effect": "{outcome: LOCAL_ONLY}"},
        {"id": "R-DEAD", "stage": "decide", "priority": 30, "when": "item.subjects > 0",
         "effect": "{outcome: EXPORT_FREE}"},
    )
    problems = "\n".join(str(f) for f in lint_packs([path], probes=50))
    assert "R-FIELD: when: item has no field 'kindd'" in problems
    assert "R-TOTALS: when: unknown variable 'totals'" in problems
    assert "R-TAG: when: reads tag 'pii' that no rule adds" in problems
    assert "R-DEAD: unreachable" in problems
    assert "R-ALL" not in problems


def test_lint_reports_duplicate_rule_ids(tmp_path: Path) -> None:
    path = _pack_file(tmp_path,
                      {"id": "R-1", "stage": "classify", "when": "true", "effect": "{tags: [pi]}"},
                      {"id": "R-1", "stage": "classify", "when": "true", "effect": "{tags: [no_pi]}"})
    assert any("duplicate rule id 'R-1'" in str(f) for f in lint_packs([path], probes=10))


def test_a_failing_embedded_scenario_is_reported(tmp_path: Path) -> None:
    path = Path(_pack_file(tmp_path, {"id": "R-1", "stage": "classify", "when": "true", "effect": "{tags: [no_pi]}"},
                           {"id": "R-2", "stage": "decide", "priority": 1, "when": "true",
                            "effect": "{outcome: EXPORT_FREE}"}))
    text = path.read_text().replace("tests: []", "tests:\n  - name: wrong on purpose\n    request: {destination: US, "
                                    "items: [{id: a, kind: production, subjects: 0}]}\n"
                                    "    expect: {outcome: LOCAL_ONLY}")
    path.write_text(text)
    [result] = run_pack_tests([str(path)])
    assert not result.passed and "outcome EXPORT_FREE, expected LOCAL_ONLY" in result.detail


# ---- properties of decisions ------------------------------------------------------------------------
item_st = st.fixed_dictionaries(
    {"kind": st.one_of(st.sampled_from(sorted(KINDS)), st.text(min_size=1, max_size=8)),
     "features": st.lists(st.one_of(st.sampled_from(sorted(FEATURES)), st.just("tattoos")), max_size=4),
     "anonymized": st.booleans(), "pseudonymized": st.booleans(),
     "exemption": st.one_of(st.none(), st.sampled_from(sorted(EXEMPTIONS))),
     "subjects": st.one_of(st.none(), st.integers(0, 3_000_000))})
request_st = st.fixed_dictionaries({
    "as_of": st.sampled_from(["2023-06-01", "2024-06-01", "2026-11-21"]),
    "destination": st.sampled_from(["US", "DE", "JP"]),
    "mode": st.sampled_from(["transfer", "remote_access"]),
    "exporter": st.fixed_dictionaries({"ciio": st.booleans(),
                                       "zone": st.one_of(st.none(), st.sampled_from(sorted(ZONES))),
                                       "surveying_approval": st.booleans()}),
    "ytd": st.fixed_dictionaries({"pi_subjects": st.integers(0, 2_000_000), "spi_subjects": st.integers(0, 20_000)}),
    "items": st.lists(item_st, min_size=1, max_size=6),
})


def _with_ids(doc: dict) -> dict:
    doc = dict(doc)
    doc["items"] = [dict(item, id=f"i{n}") for n, item in enumerate(doc["items"])]
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_st)
def test_request_outcome_is_the_most_severe_item(doc: dict) -> None:
    decision = ENGINE.decide(parse_request(_with_ids(doc)))
    assert decision.outcome == most_severe([i.outcome for i in decision.items])
    assert all(i.outcome in Outcome for i in decision.items)
    for raw, item in zip(doc["items"], decision.items, strict=True):
        if raw["kind"] not in KINDS or set(raw["features"]) - FEATURES:
            assert item.outcome is Outcome.LOCAL_ONLY and "unclassified" in item.reasons


@settings(max_examples=120, deadline=None)
@given(request_st, st.integers(0, 2_000_000), st.integers(0, 20_000))
def test_more_people_this_year_never_loosens_an_outcome(doc: dict, more_pi: int, more_spi: int) -> None:
    request = parse_request(_with_ids(doc))
    before = ENGINE.decide(request)
    grown = dict(doc, ytd={"pi_subjects": doc["ytd"]["pi_subjects"] + more_pi,
                           "spi_subjects": doc["ytd"]["spi_subjects"] + more_spi})
    after = ENGINE.decide(parse_request(_with_ids(grown)))
    for a, b in zip(before.items, after.items, strict=True):
        assert b.outcome.severity >= a.outcome.severity, (a, b)


@settings(max_examples=80, deadline=None)
@given(request_st, st.randoms())
def test_item_order_does_not_change_item_outcomes(doc: dict, rnd) -> None:
    doc = _with_ids(doc)
    shuffled = dict(doc, items=list(doc["items"]))
    rnd.shuffle(shuffled["items"])
    first = {i.id: (i.outcome, i.rules) for i in ENGINE.decide(parse_request(doc)).items}
    second = {i.id: (i.outcome, i.rules) for i in ENGINE.decide(parse_request(shuffled)).items}
    assert first == second


@settings(max_examples=80, deadline=None)
@given(request_st)
def test_ytd_after_adds_the_counted_subjects(doc: dict) -> None:
    decision = ENGINE.decide(parse_request(_with_ids(doc)))
    spi = sum(item["subjects"] or 0 for item, d in zip(doc["items"], decision.items, strict=True)
              if d.counted_as == "spi")
    assert decision.ytd_after.spi_subjects == doc["ytd"]["spi_subjects"] + spi
    assert decision.ytd_after.pi_subjects >= doc["ytd"]["pi_subjects"]


def test_a_large_request_decides_every_item_and_records_pack_hashes() -> None:
    items = [{"id": f"o{n}", "kind": "owner_record", "features": ["vin"], "subjects": 10} for n in range(10_000)]
    decision = ENGINE.decide(parse_request({"destination": "US", "as_of": "2026-11-21", "items": items}),
                             Ytd())
    assert len(decision.items) == 10_000
    assert decision.ytd_after.pi_subjects == 100_000  # summed, so the tier moved to the contract route
    assert decision.outcome is Outcome.STANDARD_CONTRACT_OR_CERT


# ---- CLI --------------------------------------------------------------------------------------
def test_cli_decide_json_shape_and_exit_codes(tmp_path: Path) -> None:
    request = tmp_path / "r.yaml"
    request.write_text("as_of: 2026-11-21\nexporter: {ciio: false, zone: lingang, surveying_approval: false}\n"
                       "destination: US\nmode: transfer\nytd: {pi_subjects: 0, spi_subjects: 0}\nitems:\n"
                       "  - {id: owners-2026-11, kind: owner_record, features: [owner_contact, vin], anonymized: false,"
                       " pseudonymized: false, exemption: null, subjects: 52000}\n"
                       "  - {id: cam, kind: dashcam_360, subjects: 0}\n")
    proc = run_cli("decide", str(request), "--format", "json", home=tmp_path / "nows", check=True)
    out = json.loads(proc.stdout)
    assert set(out) == {"outcome", "items", "obligations", "packs", "ytd_after"}
    assert set(out["items"][0]) == {"id", "outcome", "rules", "reasons"}
    assert out["outcome"] == "LOCAL_ONLY"
    assert out["items"][0]["outcome"] == "EXPORT_FREE" and "XB-5.4" in out["items"][0]["rules"]
    assert out["items"][1]["reasons"][0] == "unclassified"
    assert out["ytd_after"] == {"pi_subjects": 52000, "spi_subjects": 0}
    assert set(out["packs"]) == set(DEFAULT_PACKS_BY_JURISDICTION["CN"])

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_req(exporter={"zone": "atlantis"})))
    proc = run_cli("decide", str(bad), home=tmp_path / "nows")
    assert proc.returncode == 2 and "exporter.zone" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_policy_lint_test_and_show(tmp_path: Path) -> None:
    assert run_cli("policy", "test", home=tmp_path).returncode == 0
    proc = run_cli("policy", "show", "cn-xborder-2024", "--format", "json", home=tmp_path, check=True)
    shown = json.loads(proc.stdout)
    assert shown["id"] == "cn-xborder-2024" and any(r["id"] == "XB-5.4" for r in shown["rules"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: broken\n")
    proc = run_cli("policy", "lint", str(broken), home=tmp_path)
    assert proc.returncode == 1 and "broken" in proc.stdout
