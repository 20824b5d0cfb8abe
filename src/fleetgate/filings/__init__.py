"""Filings and the threshold watch: the documents the law asks of the data center, generated from its log.

    pipia        PI protection impact assessment of an export (PIPL Arts 55-56), a draft
    assessment   risk self-assessment report for a security-assessment filing (2022 Measures Arts 4-6), a skeleton
    contract     standard-contract filing annex: Appendix 1, the description of the export (2023 Measures Art 7)
    annual       annual automobile data security report, due by 15 December (2021 Provisions Arts 13-14)

Each rests on a region's verified log and the catalog rows checked against it, cites the entries it
used with the checkpoint that includes them, and names its sources with their evidence levels
(docs/filings.md). The threshold watch says how close the exporter is to each number that brings a
duty (`fleetgate status`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fleetgate.domain import SignedPlan
from fleetgate.domain.clock import Clock
from fleetgate.errors import UsageError
from fleetgate.filings import annual, assessment, contract, pipia
from fleetgate.filings.document import Document, Format, render, to_html, to_markdown, write
from fleetgate.filings.evidence import Cited, Evidence
from fleetgate.filings.thresholds import THRESHOLDS, Threshold, ThresholdStatus, Watch, assess, threshold_watch
from fleetgate.workspace import Workspace


class FilingKind(StrEnum):
    pipia = "pipia"
    assessment = "assessment"
    contract = "contract"
    annual = "annual"


REQUIRED_SECTIONS = {FilingKind.pipia: pipia.SECTIONS, FilingKind.assessment: assessment.SECTIONS,
                     FilingKind.contract: contract.SECTIONS, FilingKind.annual: annual.SECTIONS}


@dataclass
class Filing:
    kind: FilingKind
    document: Document
    cited: list[Cited]  # the log entries it rests on, by index
    year: int


def build_filing(ws: Workspace, kind: FilingKind, region: str | None = None, year: int | None = None,
                 plan: SignedPlan | None = None, clock: Clock | None = None) -> Filing:
    """Build one document from the region's verified log (a catalog that differs from it is refused)."""
    if kind is FilingKind.annual and plan is not None:
        raise UsageError("--plan: the annual report covers a calendar year (--year); a plan is for pipia, "
                         "assessment and contract")
    now = (clock or Clock()).now()
    year = year or (plan.plan.as_of.year if plan is not None else now.year)  # a plan's counts are of its year
    if not 2021 <= year <= now.year:
        raise UsageError(f"--year: {year} is not a year the log can hold (2021 to {now.year})")
    ev = Evidence(ws, region)
    if kind is FilingKind.annual:
        doc = annual.build(ev, year, now)
    else:
        doc = {FilingKind.pipia: pipia, FilingKind.assessment: assessment,
               FilingKind.contract: contract}[kind].build(ev, year, plan, now)
    return Filing(kind, doc, sorted(ev.cited.values(), key=lambda c: c.index), year)


def write_filing(filing: Filing, path: Path, fmt: Format) -> Path:
    return write(filing.document, path, fmt)


def format_of(path: Path, fmt: Format | None) -> Format:
    """The format asked for, else the one the file name says (.html, .pdf), else Markdown."""
    if fmt is not None:
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    return Format(suffix) if suffix in Format.__members__ else Format.md


__all__ = ["THRESHOLDS", "Cited", "Document", "Filing", "FilingKind", "Format", "REQUIRED_SECTIONS", "Threshold",
           "ThresholdStatus", "Watch", "assess", "build_filing", "format_of", "render", "threshold_watch",
           "to_html", "to_markdown", "write_filing"]
