"""Golden legal scenarios: every CN rule is exercised with its citation and the expected outcome."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from fleetgate.policy.decide import PolicyEngine
from fleetgate.policy.lint import run_case, run_pack_tests
from fleetgate.policy.packs import DEFAULT_PACKS_BY_JURISDICTION, builtin_pack_ids, load_packs
from fleetgate.policy.request import parse_request

GOLDEN = yaml.safe_load((Path(__file__).parent / "golden" / "cn_legal_scenarios.yaml").read_text("utf-8"))
SCENARIOS = GOLDEN["scenarios"]


def _request(scenario: dict) -> dict:
    doc = {k: v for k, v in GOLDEN["defaults"].items()}
    for key in ("as_of", "destination", "ytd", "exporter", "mode"):
        if key in scenario:
            doc[key] = scenario[key]
    if doc.get("ytd") is None:
        doc.pop("ytd", None)
    doc["items"] = scenario["items"]
    return doc


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_golden_scenario(scenario: dict) -> None:
    assert scenario.get("cite"), "every golden scenario names the article it tests"
    packs = load_packs(scenario.get("packs") or DEFAULT_PACKS_BY_JURISDICTION["CN"])
    failures = run_case(packs, parse_request(_request(scenario)), scenario["expect"], scenario.get("switches"))
    assert not failures, failures


def test_there_are_at_least_forty_golden_scenarios() -> None:
    assert len(SCENARIOS) >= 40


def test_every_cn_rule_fires_in_some_golden_scenario() -> None:
    expected = {rule for s in SCENARIOS for item in s["expect"].get("items", {}).values()
                for rule in item.get("rules", [])}
    cn_rules = {r.id for p in load_packs([i for i in builtin_pack_ids() if i.startswith("cn-")]
                                         + ["fleetgate-model-updates"]) for r in p.rules}
    assert cn_rules - expected == set()
    assert expected - cn_rules == {"unclassified"}


def test_every_threshold_boundary_is_covered() -> None:
    counts = {item.get("subjects") for s in SCENARIOS for item in s["items"]}
    assert {99_999, 100_000, 999_999, 1_000_000, 1, 9_999, 10_000} <= counts


def test_embedded_pack_scenarios_pass() -> None:
    results = run_pack_tests(builtin_pack_ids())
    failures = [f"{r.pack}: {r.name}: {r.detail}" for r in results if not r.passed]
    assert results and not failures, failures
    assert {r.pack for r in results} == set(builtin_pack_ids())


@pytest.mark.parametrize("as_of", ["2023-06-01", "2026-11-21"])
def test_decision_records_the_hash_of_every_pack_in_force(as_of: str) -> None:
    packs = load_packs(DEFAULT_PACKS_BY_JURISDICTION["CN"])
    decision = PolicyEngine(packs).decide(parse_request({"destination": "US", "as_of": as_of,
                                                         "items": [{"id": "a", "kind": "production"}]}))
    in_force = {p.id for p in packs if p.in_force(dt.date.fromisoformat(as_of))}
    assert set(decision.packs) == in_force and len(in_force) < len(packs)
    assert ("cn-xborder-2022" in in_force) == (as_of < "2024-03-22")
    assert all(h.startswith("sha256:") and len(h) == 71 for h in decision.packs.values())
