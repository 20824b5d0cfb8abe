"""Commands that build a workspace and bring data into it: init, sample, ingest, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetgate.cli._common import console, home_of, human_bytes, open_services
from fleetgate.errors import UsageError
from fleetgate.services import setup


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[item]}"), console=console, transient=False)


def init(
    ctx: typer.Context,
    region: Annotated[str, typer.Option(help="Region to create, like cn-shanghai.")] = "cn-shanghai",
    country: Annotated[str | None, typer.Option(help="ISO country of the region (default from its name).")] = None,
    admin: Annotated[str | None, typer.Option(help="Register this person as the region's first admin.")] = None,
    admin_key: Annotated[Path | None, typer.Option(
        "--admin-key", help="The admin's private key file; made (with FILE.pub) if it does not exist. "
                            "Keep it outside the workspace.")] = None,
) -> None:
    """Create or extend a workspace with a region, and register its first admin."""
    home = home_of(ctx)
    if admin and admin_key is None:
        raise UsageError("--admin-key: the first admin signs their own registration; give their key file "
                         "(it is made if it does not exist)")
    config, changed = setup.create_region(home, region, country)
    verb = "created" if changed else "already has"
    console.print(f"{config.home / 'fleetgate.toml'}: {verb} region [bold]{region}[/] "
                  f"({config.regions[region].country})")
    if admin is None:
        console.print("no admin registered: exports need one (`fleetgate init --region R --admin NAME "
                      "--admin-key FILE`)")
        return
    if setup.admin_key(home, admin_key):
        console.print(f"made {admin_key} and {admin_key}.pub")
    index = setup.register_first_admin(home, region, admin, admin_key)
    console.print(f"registered {admin} as the first admin of {region}; settings signed in log entry {index}")


def sample(
    out: Annotated[Path, typer.Argument(help="Folder to write the drop into (new or empty).")],
    vehicles: Annotated[int, typer.Option(min=1, help="Number of vehicles.")] = 4,
    clips: Annotated[int, typer.Option(min=1, help="Clips per vehicle.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same drop.")] = 7,
    resolution: Annotated[str, typer.Option(help="720p or 1080p.")] = "720p",
    seconds: Annotated[float, typer.Option(min=0.5, max=60, help="Video length per clip.")] = 3.0,
    drive_seconds: Annotated[float, typer.Option(min=1, max=3600, help="GNSS and CAN length per clip.")] = 20.0,
    area: Annotated[str, typer.Option(help="Where the fleet drives: shanghai, frankfurt or london.")] = "shanghai",
    defects: Annotated[bool, typer.Option(help="Add realistic faults (a truncated video, lat=200).")] = False,
) -> None:
    """Generate a realistic, reproducible sample fleet drop."""
    from fleetgate.sample import SampleSpec, generate_sample

    spec = SampleSpec(vehicles=vehicles, clips=clips, seed=seed, resolution=resolution,
                      video_seconds=seconds, drive_seconds=drive_seconds, area=area, defects=defects)
    with _progress() as progress:
        task = progress.add_task("generating clips", total=vehicles * clips, item="")
        summary = generate_sample(out, spec, on_clip=lambda cid: progress.update(task, advance=1, item=cid))
    console.print(f"wrote {summary['clips']} clips of {summary['vehicles']} vehicles to {out} "
                  f"({summary['faces']} face and {summary['plates']} plate boxes in labels.json)")


def ingest(
    ctx: typer.Context,
    drop: Annotated[Path, typer.Argument(help="Drop folder or .tar archive.")],
    region: Annotated[str | None, typer.Option(help="Target region (default: the workspace default).")] = None,
) -> None:
    """Validate a drop and land it in a region's store and catalog."""
    with open_services(ctx) as services, _progress() as progress:
        task = progress.add_task("ingesting", total=None, item="")
        report = services.ingest.drop(
            drop, region,
            on_start=lambda total: progress.update(task, total=total),
            on_progress=lambda n, item: progress.update(task, advance=n, item=item[-48:]),
        )
    print_ingest_report(report)
    raise typer.Exit(int(report.exit_code))


def print_ingest_report(report) -> None:  # noqa: ANN001 - IngestReport, imported lazily
    """Render an ingest report: counts, then each quarantined file with its field and reason."""
    console.print(f"drop [bold]{report.drop_id}[/] → region [bold]{report.region}[/] (run {report.run_id}): "
                  f"{report.files_seen} files, {report.landed} landed ({human_bytes(report.bytes_landed)}), "
                  f"{report.already_present} already present, {report.quarantined} quarantined")
    if report.problems:
        table = Table("file", "field", "reason", title="quarantined", title_justify="left")
        for p in report.problems:
            table.add_row(p["path"], p["field"], p["reason"])
        console.print(table)


def demo(ctx: typer.Context) -> None:
    """Run the whole pipeline on a generated fleet and write report.html."""
    from fleetgate.demo import run_demo

    with _progress() as progress:
        task = progress.add_task("demo", total=None, item="")

        def step(name: str, total: int | None = None) -> None:
            progress.update(task, description=name, item="")
            if total is not None:
                progress.update(task, total=total, completed=0)

        result = run_demo(home_of(ctx), on_step=step,
                          on_progress=lambda n, item: progress.update(task, advance=n, item=item[-40:]))
    for table in result.summary_tables():
        console.print(table)
    console.print(f"report: [bold]{result.report_path}[/]")
    console.print(f"dashboard: `make serve` (or `fleetgate --home {home_of(ctx)} serve`), then open "
                  f"http://127.0.0.1:8787 and log in with a token from {home_of(ctx) / 'demo-people'}/*.token",
                  highlight=False)
