"""The threshold watch as a section of an HTML report (the demo's report.html)."""

from __future__ import annotations

from fleetgate.filings.thresholds import MEASURE_TEXT, threshold_watch
from fleetgate.report.html import HtmlReport
from fleetgate.workspace import Workspace


def watch_section(report: HtmlReport, ws: Workspace, region: str | None = None) -> None:
    """How close the region's exporter is to each number that brings a duty, and its important-data duties."""
    watch = threshold_watch(ws, region)
    p = watch.processed
    report.heading("Threshold watch")
    report.text(f"Exporter {watch.exporter} on {watch.as_of}: {p.used:,} people whose personal information is "
                f"processed (catalog {p.catalog:,}, declared {'none' if p.declared is None else f'{p.declared:,}'}); "
                f"exported in {watch.year}: {watch.exported['pi']:,} people's PI, {watch.exported['spi']:,} "
                f"people's sensitive PI. The same figures: `fleetgate status`.")
    report.table(["threshold", "measure", "count", "at", "state", "more people until reached", "duty", "cite"],
                 [[t.id, MEASURE_TEXT[t.measure], t.count, f"{t.comparison} {t.threshold:,}", t.state, t.remaining,
                   t.duty, f"{t.cite} ({t.evidence})"] for t in watch.thresholds])
    d = watch.important_data
    if d.assets:
        report.text(f"Important data in the catalog: {d.assets} assets "
                    f"({', '.join(f'{k} {n}' for k, n in d.kinds.items())}). Duties: " + "; ".join(d.duties) + ".")
    else:
        report.text("No asset in the catalog is tagged important data by the rule packs.")
