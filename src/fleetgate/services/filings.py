"""`Filings`: the documents the law asks of the exporter, and where it stands against each threshold."""

from __future__ import annotations

from pathlib import Path

from fleetgate.domain import SignedPlan
from fleetgate.filings import Filing, FilingKind, Format, build_filing, format_of, threshold_watch, write_filing
from fleetgate.filings.thresholds import Watch
from fleetgate.services.base import Service


class Filings(Service):
    def write(self, kind: FilingKind, out: Path, fmt: Format | None = None, region: str | None = None,
              year: int | None = None, plan: SignedPlan | None = None) -> tuple[Filing, Path, Format]:
        """Build the filing from the verified log (for `plan`, else the year's exports) and write it to
        `out` in `fmt` (else the format the file name says)."""
        chosen = format_of(out, fmt)
        filing = build_filing(self.ws, kind, region, year, plan)
        return filing, write_filing(filing, out, chosen), chosen

    def status(self, region: str | None = None, year: int | None = None) -> Watch:
        """The region's log, and how close its exporter is to each threshold that brings a duty."""
        return threshold_watch(self.ws, region, year)
