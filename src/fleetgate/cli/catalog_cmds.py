"""`fleetgate catalog`: list, show and count assets; list ingest runs and the quarantine."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, human_bytes, open_services, print_json

app = typer.Typer(no_args_is_help=True)

RegionOpt = Annotated[str | None, typer.Option(help="Region (default: the workspace default).")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]


@app.command("ls", help="List assets, filtered by kind or vehicle.")
def ls(ctx: typer.Context, region: RegionOpt = None,
       kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
       vehicle: Annotated[str | None, typer.Option(help="Only this VIN.")] = None,
       limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
       fmt: FormatOpt = OutputFormat.table) -> None:
    """List assets."""
    with open_services(ctx) as services:
        page = services.inventory.assets(region=region, kind=kind, vehicle=vehicle, limit=limit)
    name = services.ws.config.region(region).name
    rows = [a.model_dump(mode="json") for a in page.items]
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    table = Table("id", "kind", "vehicle", "clip", "bytes", "source", title=f"{len(rows)} assets in {name}",
                  title_justify="left")
    for r in rows:
        table.add_row(r["id"], r["kind"], r["vehicle"] or "", r["clip_id"] or "", human_bytes(r["bytes"]),
                      r["source_path"])
    console.print(table)


@app.command("show", help="Show one asset with its lineage and tags.")
def show(ctx: typer.Context, asset_id: Annotated[str, typer.Argument(help="Asset id or unique prefix.")],
         region: RegionOpt = None) -> None:
    """Show one asset as JSON."""
    with open_services(ctx) as services:
        detail = services.inventory.asset(asset_id, region)
    doc = detail.model_dump(mode="json")
    print_json({**doc.pop("asset"), **doc})


@app.command("stats", help="Count assets and bytes by region and kind.")
def stats(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Inventory by region and kind."""
    with open_services(ctx) as services:
        overview = services.inventory.overview(region)
    rows = overview.inventory
    if fmt == OutputFormat.json:
        print_json({"inventory": rows, "quarantined": overview.quarantined})
        return
    table = Table("region", "kind", "assets", "vehicles", "bytes", title="inventory", title_justify="left")
    for r in rows:
        table.add_row(r["region"], r["kind"], str(r["assets"]), str(r["vehicles"]), human_bytes(r["bytes"]))
    console.print(table)
    console.print(f"{overview.quarantined} item(s) in quarantine")


@app.command("runs", help="List ingest runs, newest first.")
def runs(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Ingest runs."""
    with open_services(ctx) as services:
        rows = services.inventory.runs(region)
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    table = Table("run", "drop", "status", "seen", "landed", "present", "quarantined", "started")
    for r in rows:
        table.add_row(r["id"], r["source_drop"], r["status"], str(r["files_seen"]), str(r["landed"]),
                      str(r["already_present"]), str(r["quarantined"]), str(r["started_at"])[:19])
    console.print(table)


@app.command("quarantine", help="List quarantined files with the field and reason.")
def quarantine(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Quarantined items."""
    with open_services(ctx) as services:
        page = services.inventory.quarantine(region=region, limit=500)
    rows = [q.model_dump(mode="json") for q in page.items]
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    table = Table("drop", "file", "field", "reason", title=f"{len(rows)} quarantined", title_justify="left")
    for r in rows:
        table.add_row(r["source_drop"], r["source_path"], r["field"], r["reason"])
    console.print(table)
