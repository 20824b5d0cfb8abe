"""`fleetgate deid run`: de-identify a region's trajectories and personal tables into derived assets."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, open_workspace, print_json
from fleetgate.deid import TrajectoryPolicy, deid_region
from fleetgate.errors import ExitCode

app = typer.Typer(no_args_is_help=True)


@app.command("run", help="Derive de-identified trajectories and tables (lineage kept); run classify after.")
def run(ctx: typer.Context,
        region: Annotated[str | None, typer.Option(help="Region (default: the workspace default).")] = None,
        precision_m: Annotated[float | None, typer.Option("--precision-m", help="Snap coordinates to this grid.")]
        = None,
        h3: Annotated[int | None, typer.Option("--h3", help="Snap to H3 cell centres at this resolution.")] = None,
        trim_m: Annotated[float, typer.Option("--trim-m", help="Cut this much from each trip's ends.")] = 500.0,
        buffer_m: Annotated[float, typer.Option("--buffer-m", help="Buffer around sensitive areas.")] = 200.0,
        time_step_s: Annotated[int, typer.Option("--time-step-s", help="Coarsen timestamps to this step.")] = 60,
        fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table) -> None:
    policy = TrajectoryPolicy(precision_m=None if h3 is not None else (precision_m or 100.0), h3_resolution=h3,
                              trim_m=trim_m, excise_buffer_m=buffer_m, time_step_s=time_step_s)
    with open_workspace(ctx) as ws:
        report = deid_region(ws, region, policy)
    if fmt == OutputFormat.json:
        print_json(report.__dict__)
    else:
        table = Table("derived asset", "kind", "from", title=f"{len(report.derived)} derived, {report.already} "
                      f"already done", title_justify="left")
        for d in report.derived:
            table.add_row(d["asset_id"], d["kind"], d["path"])
        console.print(table)
        if report.skipped_media:
            console.print(f"{report.skipped_media} camera and cabin media assets were not touched: video "
                          "de-identification needs the face and plate detectors (not part of this command yet)")
        for asset_id, problem in report.failed:
            console.print(f"[red]✗[/] {asset_id}: {problem}", highlight=False)
    if report.failed:
        raise typer.Exit(int(ExitCode.PARTIAL))
