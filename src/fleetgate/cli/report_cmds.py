"""`fleetgate report pipia|assessment|contract|annual` and `fleetgate status` (the threshold watch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, open_services, print_json
from fleetgate.filings import FilingKind, Format
from fleetgate.filings.thresholds import MEASURE_SHORT
from fleetgate.gate import read_plan

report_app = typer.Typer(no_args_is_help=True)
OutOpt = Annotated[Path, typer.Option("-o", "--out", help="Where to write the document.")]
YearOpt = Annotated[int | None, typer.Option("--year", help="Calendar year (default: this year).")]
PlanOpt = Annotated[Path | None, typer.Option("--plan", help="A plan file: the document covers that plan "
                                                           "(default: the year's exports).")]
FmtOpt = Annotated[Format | None, typer.Option("--format", help="md, html or pdf (default: from the file name, "
                                                              "else md).")]
RegionOpt = Annotated[str | None, typer.Option(help="Region (default: the workspace default).")]


def _report(ctx: typer.Context, kind: FilingKind, out: Path, year: int | None, plan: Path | None,
            fmt: Format | None, region: str | None) -> None:
    signed = read_plan(plan) if plan else None
    with open_services(ctx) as services:
        filing, path, chosen = services.filings.write(kind, out, fmt, region, year, signed)
    console.print(f"wrote {path} ({chosen.value}): {len(filing.document.sections)} sections, resting on "
                  f"{len(filing.cited)} log entries")


@report_app.command("pipia", help="PI protection impact assessment of an export, a draft (PIPL Arts 55-56).")
def pipia(ctx: typer.Context, out: OutOpt, year: YearOpt = None, plan: PlanOpt = None, fmt: FmtOpt = None,
          region: RegionOpt = None) -> None:
    _report(ctx, FilingKind.pipia, out, year, plan, fmt, region)


@report_app.command("assessment", help="Risk self-assessment report skeleton for a security-assessment filing "
                                       "(2022 Measures Art 5).")
def assessment(ctx: typer.Context, out: OutOpt, year: YearOpt = None, plan: PlanOpt = None, fmt: FmtOpt = None,
               region: RegionOpt = None) -> None:
    _report(ctx, FilingKind.assessment, out, year, plan, fmt, region)


@report_app.command("contract", help="Standard-contract filing annex: Appendix 1, the description of the export.")
def contract(ctx: typer.Context, out: OutOpt, year: YearOpt = None, plan: PlanOpt = None, fmt: FmtOpt = None,
             region: RegionOpt = None) -> None:
    _report(ctx, FilingKind.contract, out, year, plan, fmt, region)


@report_app.command("annual", help="Annual automobile data security report, due by 15 December "
                                   "(2021 Provisions Arts 13-14).")
def annual(ctx: typer.Context, out: OutOpt, year: YearOpt = None, fmt: FmtOpt = None,
           region: RegionOpt = None) -> None:
    _report(ctx, FilingKind.annual, out, year, None, fmt, region)


def status(ctx: typer.Context, region: RegionOpt = None, year: YearOpt = None,
           fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table
           ) -> None:
    """Where the region stands: its log, and how close it is to each threshold that brings a duty."""
    with open_services(ctx) as services:
        watch = services.filings.status(region, year)
    if fmt == OutputFormat.json:
        print_json(watch.model_dump(mode="json"))
        return
    p = watch.processed
    console.print(f"region {watch.region}, exporter {watch.exporter}, {watch.year}: {watch.log_entries:,} log "
                  f"entries verified, {len(watch.findings)} findings")
    for line in watch.findings[:5]:
        console.print(f"  [red]finding:[/] {line}", highlight=False)
    console.print(f"people whose PI is processed: {p.used:,} (catalog {p.catalog:,}, declared "
                  f"{'—' if p.declared is None else f'{p.declared:,}'}); exported in {watch.year}: "
                  f"{watch.exported['pi']:,} PI, {watch.exported['spi']:,} SPI"
                  + ("" if watch.ledger_matches_log else " [red](the ledger differs from the log; the larger "
                                                          "figure is used)[/]"), highlight=False)
    table = Table("threshold", "measure", "count", "at", "state", "to go", title=f"threshold watch {watch.as_of}",
                  title_justify="left")
    for t in watch.thresholds:
        style = {"reached": "red", "near": "yellow"}.get(t.state, "")
        table.add_row(t.id, MEASURE_SHORT[t.measure], f"{t.count:,}", f"{t.comparison} {t.threshold:,}",
                      f"[{style}]{t.state}[/]" if style else t.state, f"{t.remaining:,}")
    console.print(table)
    for t in watch.thresholds:
        console.print(f"  {t.id}: {t.duty} ({t.cite}; {t.evidence})", highlight=False)
    d = watch.important_data
    if d.assets:
        kinds = ", ".join(f"{k} {n}" for k, n in d.kinds.items())
        console.print(f"important data in the catalog: {d.assets} assets ({kinds}); {d.exported_this_year} left in "
                      f"{watch.year}; duties:", highlight=False)
        for duty in d.duties:
            console.print(f"  - {duty}", highlight=False)
    else:
        console.print("important data in the catalog: none (no asset tagged `important` by the rule packs)")
