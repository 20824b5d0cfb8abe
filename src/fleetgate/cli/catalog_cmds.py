"""`fleetgate catalog`: list, show and count assets; list ingest runs and the quarantine."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, human_bytes, open_workspace, print_json
from fleetgate.errors import UsageError

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
    with open_workspace(ctx) as ws:
        name = ws.config.region(region).name
        rows = ws.region(name).catalog.list_assets(region=name, kind=kind, vehicle=vehicle, limit=limit)
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
    with open_workspace(ctx) as ws:
        row = ws.region(region).catalog.get_asset(asset_id)
    if row is None:
        raise UsageError(f"no asset with id {asset_id!r}")
    print_json(row)


@app.command("stats", help="Count assets and bytes by region and kind.")
def stats(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Inventory by region and kind."""
    with open_workspace(ctx) as ws:
        name = ws.config.region(region).name
        rows = ws.region(name).catalog.stats(name)
        quarantined = ws.region(name).catalog.list_quarantine(name)
    if fmt == OutputFormat.json:
        print_json({"inventory": rows, "quarantined": len(quarantined)})
        return
    table = Table("region", "kind", "assets", "vehicles", "bytes", title="inventory", title_justify="left")
    for r in rows:
        table.add_row(r["region"], r["kind"], str(r["assets"]), str(r["vehicles"]), human_bytes(r["bytes"]))
    console.print(table)
    console.print(f"{len(quarantined)} item(s) in quarantine")


@app.command("runs", help="List ingest runs, newest first.")
def runs(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Ingest runs."""
    with open_workspace(ctx) as ws:
        rows = ws.region(region).catalog.list_runs()
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
    with open_workspace(ctx) as ws:
        rows = ws.region(region).catalog.list_quarantine()
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    table = Table("drop", "file", "field", "reason", title=f"{len(rows)} quarantined", title_justify="left")
    for r in rows:
        table.add_row(r["source_drop"], r["source_path"], r["field"], r["reason"])
    console.print(table)
