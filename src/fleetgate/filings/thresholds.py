"""Threshold watch: how close the exporter is to each number the law attaches a duty to.

Two kinds of numbers. People whose personal information the exporter processes (the catalog's
distinct keyed pseudonyms across all assets, or the larger figure the workspace declares as
`processed_pi_subjects` for the whole legal entity): 1,000,000 brings the PI protection officer,
more than 10,000,000 the compliance audit every two years, 10,000,000 the important-data
processor duties of the Network Data Regulations. People exported this calendar year (the ledger,
cross-checked with the export entries of the log): the 100,000 / 1,000,000 non-sensitive PI and
1 / 10,000 SPI lines of the 2024 Provisions that the rule packs decide with. Important data in the
catalog (assets the packs tag `important`) brings the important-data processor duties whatever the
volume.

"以上" includes the number itself, "超过" does not (Civil Code Art 1259, as in the packs): the
compliance audit starts at 10,000,001 people, every other duty at its number.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from fleetgate.filings.evidence import Evidence
from fleetgate.filings.sources import SOURCES
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace

NEAR = 0.8  # "near" from 80 % of a threshold on


class Measure(StrEnum):
    processed = "processed"  # people whose PI the exporter processes
    exported_pi = "exported_pi"  # people whose non-sensitive PI left this calendar year
    exported_spi = "exported_spi"  # people whose sensitive PI left this calendar year


MEASURE_SHORT = {Measure.processed: "processed", Measure.exported_pi: "exported PI",
                 Measure.exported_spi: "exported SPI"}
MEASURE_TEXT = {
    Measure.processed: "people whose PI is processed",
    Measure.exported_pi: "people whose non-sensitive PI left this year",
    Measure.exported_spi: "people whose sensitive PI left this year",
}


@dataclass(frozen=True)
class Threshold:
    id: str
    measure: Measure
    at: int
    inclusive: bool  # 以上: reached at `at`; 超过: reached only above it
    duty: str
    source: str
    in_force_from: dt.date


THRESHOLDS = (
    Threshold("PI-OFFICER", Measure.processed, 1_000_000, True,
              "designate a PI protection officer, publish their contact and report them to the city-level CAC "
              "within 30 working days of reaching the number", "CAA-12", dt.date(2025, 5, 1)),
    Threshold("NDSR-28", Measure.processed, 10_000_000, True,
              "also the important-data processor duties of NDSR Arts 30 and 32: a network data security officer "
              "and management body; a risk assessment before a merger, division or dissolution", "NDSR-28-33",
              dt.date(2025, 1, 1)),
    Threshold("PI-AUDIT", Measure.processed, 10_000_000, False,
              "a PI protection compliance audit at least once every two years", "CAA-3", dt.date(2025, 5, 1)),
    Threshold("XB-8.PI", Measure.exported_pi, 100_000, True,
              "more non-sensitive PI leaves only under a filed standard contract or a certification", "XB-7-9",
              dt.date(2024, 3, 22)),
    Threshold("XB-7.PI", Measure.exported_pi, 1_000_000, True,
              "more non-sensitive PI leaves only after a CAC security assessment", "XB-7-9", dt.date(2024, 3, 22)),
    Threshold("XB-8.SPI", Measure.exported_spi, 1, True,
              "sensitive PI leaves only under a filed standard contract or a certification", "XB-7-9",
              dt.date(2024, 3, 22)),
    Threshold("XB-7.SPI", Measure.exported_spi, 10_000, True,
              "more sensitive PI leaves only after a CAC security assessment", "XB-7-9", dt.date(2024, 3, 22)),
)

IMPORTANT_DATA_DUTIES = (
    ("a data security officer and management body", "DSL-27-30"),
    ("a network data security officer and management body (NDSR Art 30)", "NDSR-28-33"),
    ("a risk assessment before providing, entrusting or jointly processing important data (NDSR Art 31)",
     "NDSR-28-33"),
    ("a yearly risk assessment of its processing, reported to the provincial authorities (NDSR Art 33; "
     "DSL Art 30)", "NDSR-28-33"),
    ("a risk assessment report to the provincial CAC and departments (automobile data, Art 10)", "AUTO-10"),
    ("the annual automobile data security report by 15 December (Art 13; exporters add Art 14): "
     "`fleetgate report annual`", "AUTO-13-14"),
    ("important data leaves only after a CAC security assessment (Art 11; 2024 Provisions Art 7)", "XB-7-9"),
)


class ThresholdStatus(BaseModel):
    id: str
    measure: Measure
    count: int
    threshold: int
    comparison: str  # ">=" (以上) or ">" (超过)
    in_force: bool
    reached: bool
    remaining: int  # more people until reached; 0 once reached
    share: float  # count / threshold
    state: str  # reached | near | below | not in force
    duty: str
    cite: str
    evidence: str


class ProcessedPeople(BaseModel):
    catalog: int  # distinct keyed pseudonyms across the region's assets
    declared: int | None  # `processed_pi_subjects` of the region in fleetgate.toml
    used: int  # the larger: the watch never counts fewer people than either source says


class ImportantData(BaseModel):
    assets: int
    kinds: dict[str, int]
    exported_this_year: int  # important-data assets in the year's exports
    duties: list[str]
    cites: list[str]


class Watch(BaseModel):
    region: str
    exporter: str
    year: int
    as_of: dt.date
    log_entries: int
    findings: list[str]
    processed: ProcessedPeople
    exported: dict[str, int]  # pi, spi: people exported this year (the larger of ledger and log)
    ledger_matches_log: bool
    thresholds: list[ThresholdStatus]
    important_data: ImportantData


def assess(threshold: Threshold, count: int, as_of: dt.date) -> ThresholdStatus:
    """Where `count` stands against one threshold on `as_of`."""
    first = threshold.at if threshold.inclusive else threshold.at + 1  # the first count that reaches it
    in_force = as_of >= threshold.in_force_from
    reached = in_force and count >= first
    share = count / threshold.at if threshold.at else 0.0
    state = ("not in force" if not in_force else "reached" if reached else "near" if share >= NEAR else "below")
    src = SOURCES[threshold.source]
    return ThresholdStatus(id=threshold.id, measure=threshold.measure, count=count, threshold=threshold.at,
                           comparison=">=" if threshold.inclusive else ">", in_force=in_force, reached=reached,
                           remaining=0 if reached else max(first - count, 0), share=round(share, 4), state=state,
                           duty=threshold.duty, cite=src.short, evidence=src.evidence)


def assess_all(processed: int, exported_pi: int, exported_spi: int, as_of: dt.date) -> list[ThresholdStatus]:
    counts = {Measure.processed: processed, Measure.exported_pi: exported_pi, Measure.exported_spi: exported_spi}
    return [assess(t, counts[t.measure], as_of) for t in THRESHOLDS]


def exported_counts(ledger: Ledger, exporter: str, year: int) -> dict[str, int]:
    """People the exporter exported in `year`, by category, from the ledger table."""
    counts = ledger.counts(exporter, year)
    return {"pi": counts.get("pi", 0), "spi": counts.get("spi", 0)}


def logged_counts(evidence: Evidence, year: int) -> dict[str, int]:
    """The same figure from the log alone: the ledger rows each of the year's export entries added."""
    out = {"pi": 0, "spi": 0}
    for export in evidence.state.exports.values():
        entry = export.entry
        if entry.get("year") != year or entry.get("exporter") != evidence.cfg.exporter_id:
            continue
        rows = (entry.get("ledger") or {}).get("rows") or {}
        for category in out:
            out[category] += int((rows.get(category) or {}).get("count") or 0)
    return out


def important_data(evidence: Evidence, year: int) -> ImportantData:
    kinds = Counter((c.get("policy_kind") or "unclassified") for a, c in evidence.classes.items()
                    if "important" in evidence.tags(a))
    exported = sum(1 for p in evidence.exports_of_year(year) for i in p.items if i.exported and i.important)
    holds = bool(kinds)
    return ImportantData(assets=sum(kinds.values()), kinds=dict(sorted(kinds.items())), exported_this_year=exported,
                         duties=[d for d, _ in IMPORTANT_DATA_DUTIES] if holds else [],
                         cites=sorted({SOURCES[s].short for _, s in IMPORTANT_DATA_DUTIES}) if holds else [])


def watch_from(evidence: Evidence, year: int, as_of: dt.date) -> Watch:
    cfg = evidence.cfg
    catalog = evidence.people(evidence.classes)["all"]
    declared = cfg.processed_pi_subjects
    processed = ProcessedPeople(catalog=catalog, declared=declared, used=max(catalog, declared or 0))
    ledger, logged = exported_counts(evidence.ledger, cfg.exporter_id, year), logged_counts(evidence, year)
    exported = {c: max(ledger[c], logged[c]) for c in ledger}  # a deleted ledger row must not make us look smaller
    return Watch(region=cfg.name, exporter=cfg.exporter_id, year=year, as_of=as_of, log_entries=evidence.entries,
                 findings=[f.line() for f in evidence.findings], processed=processed, exported=exported,
                 ledger_matches_log=ledger == logged,
                 thresholds=assess_all(processed.used, exported["pi"], exported["spi"], as_of),
                 important_data=important_data(evidence, year))


def threshold_watch(ws: Workspace, region: str | None = None, year: int | None = None,
                    as_of: dt.date | None = None) -> Watch:
    """The threshold watch of a region; shown even when verify has findings (they are listed first)."""
    year = year or (as_of or dt.date.today()).year
    as_of = as_of or min(dt.date.today(), dt.date(year, 12, 31))  # a past year is judged as at its end
    return watch_from(Evidence(ws, region, allow_findings=True), year, as_of)
