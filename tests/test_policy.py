"""The policy engine: request validation, pack loading and lint, properties of decisions, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import run_cli
from fleetgate.errors import ConfigError
from fleetgate.policy import Outcome, PolicyEngine, RequestError, Ytd, load_packs, parse_request
from fleetgate.policy.lint import lint_packs, run_pack_tests
from fleetgate.policy.packs import (
    DEFAULT_PACKS_BY_JURISDICTION,
    PackError,
    apply_switches,
    approval_term,
    builtin_pack_ids,
    load_pack,
)
from fleetgate.policy.service import exporter_of, ledger_ytd, packs_for
from fleetgate.policy.vocabulary import EXEMPTION_PURPOSES, EXEMPTIONS, FEATURES, KINDS, LEGAL_BASES, ZONES, most_severe
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import CONFIG_FILE, load_config, save_config

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
    (_req(exporter={"lingang_list_renewal": {"ref": "x"}}), "exporter.lingang_list_renewal.until: required"),
    (_req(exporter={"lingang_list_renewal": {"ref": "", "until": "2026-05-16"}}), "exporter.lingang_list_renewal.ref"),
    (_req(exporter={"lingang_list_renewal": {"ref": "x", "until": "soon"}}), "exporter.lingang_list_renewal.until"),
    (_req(exporter={"processed_pi_subjects": -1}), "exporter.processed_pi_subjects: must not be negative"),
    (_req(ytd={"pi_subjects": 0, "prev_year_spi_subjects": -3}), "ytd.prev_year_spi_subjects"),
    (_req(items=[{"id": "a", "kind": "owner_record", "legal_basis": {"type": "friendship", "ref": "x"}}]),
     "items[0].legal_basis.type"),
    (_req(items=[{"id": "a", "kind": "owner_record", "legal_basis": {"type": "separate_consent", "when": 1}}]),
     "items[0].legal_basis.when: unknown field"),
    (_req(items=[{"id": "a", "kind": "vuln_report", "exemption_basis": {"purpose": "fun"}}]),
     "items[0].exemption_basis.purpose"),
    (_req(items=[{"id": "a", "kind": "vuln_report", "exemption_basis": {"purpose": "vulnerability_fix",
                                                                         "filed_on": "last week"}}]),
     "items[0].exemption_basis.filed_on"),
    (_req(items=[{"id": "a", "kind": "owner_record", "pipia_ref": 7}]), "items[0].pipia_ref"),
    (_req(items=[{"id": "a", "kind": "gnss_trajectory", "geo_confidentiality_processed": "yes"}]),
     "items[0].geo_confidentiality_processed"),
])
def test_invalid_requests_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(doc)
    assert field in info.value.message


def test_new_request_fields_round_trip_through_to_dict() -> None:
    doc = {"as_of": "2026-11-21", "destination": "US", "mode": "transfer",
           "exporter": {"ciio": False, "zone": "lingang", "surveying_approval": False,
                        "lingang_list_renewal": {"ref": "R-1", "until": "2027-05-16"}, "processed_pi_subjects": 5},
           "ytd": {"pi_subjects": 1, "spi_subjects": 2, "prev_year_pi_subjects": 3, "prev_year_spi_subjects": 4},
           "items": [{"id": "a", "kind": "vuln_report", "features": [], "anonymized": False, "pseudonymized": False,
                      "exemption": "vuln_reported", "subjects": 0,
                      "exemption_basis": {"purpose": "vulnerability_fix", "ref": "CNVD-1", "filed_on": "2026-10-01"},
                      "legal_basis": {"type": "separate_consent", "ref": "C-1"}, "pipia_ref": "P-1",
                      "geo_confidentiality_processed": True}]}
    request = parse_request(doc)
    assert request.to_dict() == doc
    assert parse_request(request.to_dict()) == request
    assert {"exemption_basis", "legal_basis", "pipia_ref"}.isdisjoint(parse_request(_req()).to_dict()["items"][0])


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


def test_lint_finds_unknown_switches_nested_fields_and_placeholders(tmp_path: Path) -> None:
    path = _pack_file(
        tmp_path,
        {"id": "R-BASE", "stage": "classify", "when": "true", "effect": "{tags: [no_pi]}"},
        {"id": "R-SWITCH", "stage": "classify", "when": "switches.made_up", "effect": "{tags: [pi]}"},
        {"id": "R-NESTED", "stage": "classify", "when": "item.legal_basis.kind == 'x'", "effect": "{tags: [pi]}"},
        {"id": "R-PLACEHOLDER", "stage": "classify", "when": "true",
         "effect": "{obligations: ['see {exporter.lingang_list_renewal.reff}',"
                   " 'see {exporter.lingang_list_renewal}']}"},
        {"id": "R-ALL", "stage": "decide", "priority": 20, "when": "true", "effect": "{outcome: LOCAL_ONLY}"},
    )
    problems = "\n".join(str(f) for f in lint_packs([path], probes=20))
    assert "R-SWITCH: when: reads switch 'made_up' that no pack declares" in problems
    assert "R-NESTED: when: item.legal_basis has no field 'kind'" in problems
    assert "R-PLACEHOLDER: obligation placeholder {exporter.lingang_list_renewal.reff}" in problems
    assert "R-PLACEHOLDER: obligation placeholder {exporter.lingang_list_renewal}: must name one exporter field" \
        in problems


@pytest.mark.parametrize(("effect", "stage", "message"), [
    ("{blocking: [{requires: consent_form, text: t}]}", "classify", "effect.blocking[0].requires"),
    ("{blocking: [{requires: pipia_ref}]}", "classify", "effect.blocking[0].text: required"),
    ("{outcome: EXPORT_FREE, blocking: [{requires: pipia_ref, text: t}]}", "decide", "belong to classify rules"),
])
def test_bad_blocking_effects_do_not_load(tmp_path: Path, effect: str, stage: str, message: str) -> None:
    rule = {"id": "R-1", "stage": stage, "when": "true", "effect": effect}
    if stage == "decide":
        rule["priority"] = 1
    with pytest.raises(PackError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_pack(_pack_file(tmp_path, rule))


def test_switches_must_be_declared_and_agree_across_packs() -> None:
    with pytest.raises(PackError, match="--switch.no_such_reading: no loaded pack declares this switch"):
        apply_switches(CN, {"no_such_reading": True}, "--switch")
    flipped = apply_switches(CN, {"national_id_number_is_spi": False})
    assert PolicyEngine(flipped).switches["national_id_number_is_spi"] is False
    assert ENGINE.switches["national_id_number_is_spi"] is True  # the cached packs are not changed
    assert PolicyEngine(CN, switches={"separate_consent_for_every_export": True}).switches[
        "separate_consent_for_every_export"] is True


def test_approval_terms_follow_the_day_the_filing_is_granted() -> None:
    import datetime as dt

    assessment = Outcome.SECURITY_ASSESSMENT
    assert approval_term(CN, assessment, dt.date(2024, 3, 21)).valid_years == 2
    assert approval_term(CN, assessment, dt.date(2024, 3, 22)).valid_years == 3
    assert approval_term(CN, assessment, dt.date(2024, 3, 21)).pack == "cn-xborder-2022"
    assert approval_term(CN, Outcome.STANDARD_CONTRACT_OR_CERT, dt.date(2026, 11, 21)).valid_years == 3
    assert approval_term(CN, Outcome.EXPORT_FREE, dt.date(2026, 11, 21)) is None


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
DATES = st.sampled_from(["2022-01-15", "2022-11-04", "2023-06-01", "2024-03-21", "2024-03-22", "2024-06-01",
                          "2025-05-16", "2025-05-17", "2026-06-30", "2026-07-01", "2026-11-21"])
item_st = st.fixed_dictionaries(
    {"kind": st.one_of(st.sampled_from(sorted(KINDS)), st.text(min_size=1, max_size=8)),
     "features": st.lists(st.one_of(st.sampled_from(sorted(FEATURES)), st.just("tattoos")), max_size=4),
     "anonymized": st.booleans(), "pseudonymized": st.booleans(),
     "exemption": st.one_of(st.none(), st.sampled_from(sorted(EXEMPTIONS))),
     "subjects": st.one_of(st.none(), st.integers(0, 3_000_000)),
     "exemption_basis": st.one_of(st.none(), st.fixed_dictionaries({
         "purpose": st.sampled_from(sorted(EXEMPTION_PURPOSES)), "ref": st.sampled_from(["", "REF-1"]),
         "filed_on": st.one_of(st.none(), DATES)})),
     "geo_confidentiality_processed": st.booleans()},
    optional={"legal_basis": st.fixed_dictionaries({"type": st.sampled_from(sorted(LEGAL_BASES)),
                                                    "ref": st.sampled_from(["", "L-1"])}),
              "pipia_ref": st.sampled_from(["", "P-1"])})
request_st = st.fixed_dictionaries({
    "as_of": DATES,
    "destination": st.sampled_from(["US", "DE", "JP"]),
    "mode": st.sampled_from(["transfer", "remote_access"]),
    "exporter": st.fixed_dictionaries(
        {"ciio": st.booleans(), "zone": st.one_of(st.none(), st.sampled_from(sorted(ZONES))),
         "surveying_approval": st.booleans()},
        optional={"lingang_list_renewal": st.fixed_dictionaries({"ref": st.just("R-1"), "until": DATES}),
                  "processed_pi_subjects": st.sampled_from([0, 999_999, 1_000_000])}),
    "ytd": st.fixed_dictionaries({"pi_subjects": st.integers(0, 2_000_000), "spi_subjects": st.integers(0, 20_000)},
                                 optional={"prev_year_pi_subjects": st.integers(0, 200_000),
                                           "prev_year_spi_subjects": st.integers(0, 20_000)}),
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
    grown = dict(doc, ytd={**doc["ytd"], "pi_subjects": doc["ytd"]["pi_subjects"] + more_pi,
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


@settings(max_examples=120, deadline=None)
@given(request_st)
def test_recording_the_legal_basis_and_pipia_clears_blocking_and_never_changes_an_outcome(doc: dict) -> None:
    doc = _with_ids(doc)
    recorded = dict(doc, items=[dict(i, legal_basis={"type": "separate_consent", "ref": "C-1"}, pipia_ref="P-1")
                                for i in doc["items"]])
    before, after = ENGINE.decide(parse_request(doc)), ENGINE.decide(parse_request(recorded))
    assert [i.outcome for i in before.items] == [i.outcome for i in after.items]
    assert after.blocked == [] and all(not i.blocking for i in after.items)
    for item in before.items:
        personal = {"pi", "spi"} & set(item.tags)
        assert not item.blocking or (personal and item.outcome is not Outcome.LOCAL_ONLY)
        assert all(b.text in item.obligations for b in item.blocking)
        assert {b.requires for b in item.blocking} <= {"legal_basis", "pipia_ref"}


@settings(max_examples=80, deadline=None)
@given(request_st)
def test_a_stated_previous_year_only_matters_before_22_march_2024(doc: dict) -> None:
    doc = _with_ids(doc)
    known = dict(doc, ytd={**doc["ytd"], "prev_year_pi_subjects": 0, "prev_year_spi_subjects": 0})
    unknown = dict(doc, ytd={k: v for k, v in doc["ytd"].items() if not k.startswith("prev_year")})
    first, second = ENGINE.decide(parse_request(known)), ENGINE.decide(parse_request(unknown))
    if doc["as_of"] >= "2024-03-22":
        assert [i.outcome for i in first.items] == [i.outcome for i in second.items]
    else:  # an unknown previous year never opens a route the known one would not
        for a, b in zip(first.items, second.items, strict=True):
            assert b.outcome in (a.outcome, Outcome.LOCAL_ONLY)


def _without_shortcuts(packs: list) -> list:
    import dataclasses

    return [dataclasses.replace(p, rules=[dataclasses.replace(r, guard=None, kinds=None) for r in p.rules])
            for p in packs]


PLAIN = PolicyEngine(_without_shortcuts(CN), memoize=False)


@settings(max_examples=150, deadline=None)
@given(request_st)
def test_the_engine_shortcuts_decide_exactly_like_evaluating_every_rule(doc: dict) -> None:
    # request-level guards, the kind index and the shape cache only skip work, never change a decision
    request = parse_request(_with_ids(doc))
    fast, plain = ENGINE.decide(request), PLAIN.decide(request)
    assert fast.to_dict() == plain.to_dict()
    assert [(i.tags, i.obligations, i.counted_as) for i in fast.items] == \
        [(i.tags, i.obligations, i.counted_as) for i in plain.items]


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
    # The shape before issue 15 is kept; blocked, switches, approval_terms and items[].blocking are added.
    assert set(out) == {"outcome", "items", "obligations", "packs", "ytd_after", "blocked", "switches",
                        "approval_terms"}
    assert set(out["items"][0]) == {"id", "outcome", "rules", "reasons", "blocking"}
    assert out["outcome"] == "LOCAL_ONLY"
    assert out["items"][0]["outcome"] == "EXPORT_FREE" and "XB-5.4" in out["items"][0]["rules"]
    assert out["items"][1]["reasons"][0] == "unclassified"
    assert out["ytd_after"] == {"pi_subjects": 52000, "spi_subjects": 0}
    in_force = set(DEFAULT_PACKS_BY_JURISDICTION["CN"]) - {"cn-xborder-2022"}
    assert set(out["packs"]) == in_force
    assert out["blocked"] == ["owners-2026-11"] and out["items"][1]["blocking"] == []
    assert [b["requires"] for b in out["items"][0]["blocking"]] == ["legal_basis", "pipia_ref"]
    assert set(out["items"][0]["blocking"][0]) == {"rule", "requires", "text", "cite"}
    assert all(b["text"] in out["obligations"] for b in out["items"][0]["blocking"])
    assert out["switches"] == {"national_id_number_is_spi": True, "coarsening_declassifies_trajectory": False,
                               "guideline_2026_exemptions_from_publication": False,
                               "separate_consent_for_every_export": False}
    proc = run_cli("decide", str(request), "--format", "json", "--switch", "separate_consent_for_every_export=true",
                   home=tmp_path / "nows", check=True)
    assert json.loads(proc.stdout)["switches"]["separate_consent_for_every_export"] is True
    proc = run_cli("decide", str(request), "--switch", "made_up=true", home=tmp_path / "nows")
    assert proc.returncode == 2 and "--switch.made_up" in proc.stderr
    proc = run_cli("decide", str(request), home=tmp_path / "nows", check=True)
    assert "legal_basis, pipia_ref" in proc.stdout

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_req(exporter={"zone": "atlantis"})))
    proc = run_cli("decide", str(bad), home=tmp_path / "nows")
    assert proc.returncode == 2 and "exporter.zone" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_policy_lint_test_and_show(tmp_path: Path) -> None:
    assert run_cli("policy", "test", home=tmp_path).returncode == 0
    proc = run_cli("policy", "show", "cn-xborder-2024", "--format", "json", home=tmp_path, check=True)
    shown = json.loads(proc.stdout)
    assert shown["id"] == "cn-xborder-2024" and any(r["id"] == "XB-5.4" for r in shown["rules"])
    assert "separate_consent_for_every_export" in shown["switches"]
    assert shown["approvals"]["SECURITY_ASSESSMENT"]["valid_years"] == 3
    assert any(r["blocking"] and r["blocking"][0]["requires"] == "pipia_ref" for r in shown["rules"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: broken\n")
    proc = run_cli("policy", "lint", str(broken), home=tmp_path)
    assert proc.returncode == 1 and "broken" in proc.stdout


# ---- workspace facts: the Lingang renewal, the processor's size, switches, the previous year -----------
def _workspace(tmp_path: Path, extra_region: str = "", extra_policy: str = "") -> Path:
    home = tmp_path / "ws"
    init_workspace(home, "cn-shanghai")
    text = (home / CONFIG_FILE).read_text()
    text = text.replace("[regions.cn-shanghai]\n", "[regions.cn-shanghai]\n" + extra_region)
    text = text.replace("[policy]\n", "[policy]\n" + extra_policy)
    (home / CONFIG_FILE).write_text(text)
    return home


def test_a_recorded_lingang_renewal_and_processor_size_reach_the_engine(tmp_path: Path) -> None:
    home = _workspace(tmp_path, 'lingang_list_renewal = {ref = "LG notice 2025-11", until = 2026-05-16}\n'
                                "processed_pi_subjects = 400000\n")
    config = load_config(home)
    exporter = exporter_of(config.region("cn-shanghai"))
    assert exporter.lingang_list_renewal.ref == "LG notice 2025-11"
    assert exporter.lingang_list_renewal.until.isoformat() == "2026-05-16"
    assert exporter.processed_pi_subjects == 400000
    save_config(config)  # what init writes back keeps the facts
    reloaded = load_config(home).region("cn-shanghai")
    assert reloaded.lingang_list_renewal == config.region("cn-shanghai").lingang_list_renewal
    request = parse_request({"as_of": "2026-05-16", "destination": "DE", "items": [
        {"id": "a", "kind": "after_sales", "features": ["vin"], "pseudonymized": True, "subjects": 10}]})
    request = type(request)(**{**request.__dict__, "exporter": exporter})
    item = ENGINE.decide(request, Ytd()).items[0]
    assert item.outcome is Outcome.EXPORT_FTZ_LIST and "LG-ICV.RENEWED" in item.rules
    assert any("LG notice 2025-11, in force until 2026-05-16" in o for o in item.obligations)


@pytest.mark.parametrize(("region", "policy", "message"), [
    ('lingang_list_renewal = {ref = "x"}\n', "", "regions.cn-shanghai.lingang_list_renewal.until: required value"),
    ('lingang_list_renewal = {ref = "", until = 2026-05-16}\n', "", "lingang_list_renewal.ref"),
    ('lingang_list_renewal = {ref = "x", until = "someday"}\n', "", "lingang_list_renewal.until"),
    ("processed_pi_subjects = -4\n", "", "regions.cn-shanghai.processed_pi_subjects"),
    ("", 'switches = {national_id_number_is_spi = "no"}\n', "policy.switches"),
])
def test_bad_workspace_facts_name_the_key(tmp_path: Path, region: str, policy: str, message: str) -> None:
    home = _workspace(tmp_path, region, policy)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(home)


def test_a_renewal_needs_a_lingang_region(tmp_path: Path) -> None:
    home = _workspace(tmp_path, 'lingang_list_renewal = {ref = "x", until = 2026-05-16}\n')
    text = (home / CONFIG_FILE).read_text()
    (home / CONFIG_FILE).write_text(text.replace('zone = "lingang"', 'zone = "beijing-ftz"'))
    with pytest.raises(ConfigError, match='only a region with zone = "lingang"'):
        load_config(home)


def test_workspace_switches_reach_every_engine_built_on_the_regions_packs(tmp_path: Path) -> None:
    home = _workspace(tmp_path, extra_policy="switches = {national_id_number_is_spi = false}\n")
    with Workspace.open(home) as ws:
        packs = packs_for(ws)
        assert PolicyEngine(packs).switches["national_id_number_is_spi"] is False
        decision = PolicyEngine(packs).decide(parse_request(_req(items=[
            {"id": "o", "kind": "owner_record", "features": ["national_id"], "subjects": 10}])), Ytd())
        assert decision.items[0].counted_as == "pi" and decision.switches["national_id_number_is_spi"] is False
    bad = _workspace(tmp_path / "b", extra_policy="switches = {made_up = true}\n")
    with Workspace.open(bad) as ws, pytest.raises(ConfigError, match="policy.switches.made_up"):
        packs_for(ws)


def test_the_ledger_gives_the_previous_year_for_the_rules_before_2024(tmp_path: Path) -> None:
    home = _workspace(tmp_path)
    with Workspace.open(home) as ws:
        catalog = ws.region().catalog
        with catalog.transaction() as conn:
            Ledger(catalog).record(conn, "cn-shanghai", 2022, "e1",
                                   [(f"k{n}", "pi") for n in range(3)] + [("s", "spi")])
            Ledger(catalog).record(conn, "cn-shanghai", 2023, "e2", [("k0", "pi")])
        ytd = ledger_ytd(ws, None, 2023)
    assert (ytd.pi_subjects, ytd.spi_subjects, ytd.prev_pi_subjects, ytd.prev_spi_subjects) == (1, 0, 3, 1)
    assert ytd.prev_year_known
