"""Threshold watch: each duty on both sides of its number, on a real ledger, on declared processing volumes,
and in step with the rule packs that decide the exports."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fleetgate.filings import THRESHOLDS, assess, threshold_watch
from fleetgate.filings.thresholds import exported_counts
from fleetgate.gate import sign_config
from fleetgate.policy import Outcome, PolicyEngine, Ytd, load_packs, parse_request
from fleetgate.policy.packs import DEFAULT_PACKS_BY_JURISDICTION
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace
from fleetgate.workspace.config import save_config
from people import AS_OF, CLOCK, make_team

BY_ID = {t.id: t for t in THRESHOLDS}


@pytest.mark.parametrize(("threshold", "below", "at"), [
    ("PI-OFFICER", 999_999, 1_000_000),  # 100万人以上: the number itself brings the officer
    ("NDSR-28", 9_999_999, 10_000_000),  # 1000万人以上
    ("PI-AUDIT", 10_000_000, 10_000_001),  # 超过1000万人: the number itself does not
    ("XB-8.PI", 99_999, 100_000),
    ("XB-7.PI", 999_999, 1_000_000),
    ("XB-8.SPI", 0, 1),
    ("XB-7.SPI", 9_999, 10_000),
])
def test_each_threshold_on_both_sides_of_its_number(threshold: str, below: int, at: int) -> None:
    t = BY_ID[threshold]
    under, over = assess(t, below, AS_OF), assess(t, at, AS_OF)
    assert (under.reached, under.remaining, over.reached, over.remaining) == (False, 1, True, 0)
    assert over.state == "reached" and under.state in ("near", "below")
    assert assess(t, at, t.in_force_from - dt.timedelta(days=1)).state == "not in force"
    assert assess(t, int(t.at * 0.8) + 1, AS_OF).state in ("near", "reached")
    assert over.cite and over.evidence in "VSKI"


def _add(ledger: Ledger, category: str, start: int, count: int, year: int = AS_OF.year) -> None:
    with ledger.catalog.transaction() as conn:
        ledger.record(conn, "cn-shanghai", year, f"pkg-test-{category}-{start}",
                      [(f"{category}-{n:08d}", category) for n in range(start, start + count)])


def test_the_ledger_counts_around_the_export_thresholds(workspace: Workspace) -> None:
    ledger = Ledger(workspace.region().catalog)
    _add(ledger, "pi", 0, 99_999)
    _add(ledger, "spi", 0, 9_999)
    _add(ledger, "pi", 0, 1_000, year=AS_OF.year - 1)  # last year's people do not count this year

    def states() -> dict[str, bool]:
        counts = exported_counts(ledger, "cn-shanghai", AS_OF.year)
        return {t.id: assess(t, counts["pi" if t.id.endswith(".PI") else "spi"], AS_OF).reached
                for t in THRESHOLDS if t.id.startswith("XB-")}

    assert states() == {"XB-8.PI": False, "XB-7.PI": False, "XB-8.SPI": True, "XB-7.SPI": False}
    _add(ledger, "pi", 99_998, 2)  # one person already counted, one new: 100,000 people
    _add(ledger, "spi", 9_999, 1)
    assert states() == {"XB-8.PI": True, "XB-7.PI": False, "XB-8.SPI": True, "XB-7.SPI": True}
    assert exported_counts(ledger, "cn-shanghai", AS_OF.year) == {"pi": 100_000, "spi": 10_000}


@pytest.mark.parametrize(("threshold", "category", "at"), [
    ("XB-8.PI", "pi", 100_000), ("XB-7.PI", "pi", 1_000_000), ("XB-8.SPI", "spi", 1), ("XB-7.SPI", "spi", 10_000)])
def test_the_export_thresholds_are_the_ones_the_packs_decide_with(threshold: str, category: str, at: int) -> None:
    """The watch says `reached` exactly where one more person changes the packs' route for the next export."""
    engine = PolicyEngine(load_packs(DEFAULT_PACKS_BY_JURISDICTION["CN"]))
    features = ["vin", "national_id"] if category == "spi" else ["vin"]

    def outcome(total: int) -> Outcome:
        ytd = Ytd(pi_subjects=total - 1 if category == "pi" else 0, spi_subjects=total - 1 if category == "spi" else 0)
        request = parse_request({"as_of": AS_OF.isoformat(), "destination": "US", "items": [
            {"id": "o", "kind": "owner_record", "features": features, "subjects": 1, "pipia_ref": "P-1",
             "legal_basis": {"type": "separate_consent", "ref": "C-1"}}]})
        return engine.decide(request, ytd).outcome

    t = BY_ID[threshold]
    before, after = (outcome(at - 1), outcome(at)) if at > 1 else (Outcome.EXPORT_FREE, outcome(at))
    assert before != after
    assert not assess(t, at - 1, AS_OF).reached and assess(t, at, AS_OF).reached


@pytest.mark.parametrize(("declared", "reached"), [
    (999_999, set()), (1_000_000, {"PI-OFFICER"}), (10_000_000, {"PI-OFFICER", "NDSR-28"}),
    (10_000_001, {"PI-OFFICER", "NDSR-28", "PI-AUDIT"})])
def test_declared_processing_volume_drives_the_processor_duties(workspace: Workspace, tmp_path: Path,
                                                                declared: int, reached: set[str]) -> None:
    team = make_team(workspace, tmp_path / "people")
    workspace.config.regions["cn-shanghai"].processed_pi_subjects = declared
    save_config(workspace.config)
    with Workspace.open(workspace.home) as ws:
        sign_config(ws, "cn-shanghai", team.admin, clock=CLOCK)
        watch = threshold_watch(ws, year=AS_OF.year, as_of=AS_OF)
    assert watch.findings == []
    assert watch.processed.used == declared and watch.processed.catalog == 0
    assert {t.id for t in watch.thresholds if t.reached and t.measure == "processed"} == reached
    assert watch.important_data.assets == 0 and watch.important_data.duties == []
