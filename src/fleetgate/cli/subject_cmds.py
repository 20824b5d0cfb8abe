"""`fleetgate subject find|export|erase|requests|hold|release|holds` and `fleetgate retention run|show`."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fleetgate.cli._common import AsOpt, KeyOpt, OutputFormat, actor, console, open_workspace, print_json
from fleetgate.errors import UsageError
from fleetgate.subjects import (
    all_requests,
    erase_subject,
    export_subject,
    find_subject,
    list_holds,
    open_requests,
    place_hold,
    release_hold,
    run_retention,
)

subject_app = typer.Typer(no_args_is_help=True)
retention_app = typer.Typer(no_args_is_help=True)
RegionOpt = Annotated[str | None, typer.Option(help="Region (default: the workspace default).")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]
_ID_HELP = "(or '-' to read it from standard input, keeping it out of the shell history)"
VinOpt = Annotated[str | None, typer.Option("--vin", help=f"The person's vehicle identification number {_ID_HELP}.")]
PhoneOpt = Annotated[str | None, typer.Option("--phone", help=f"Their mobile number {_ID_HELP}.")]
IdOpt = Annotated[str | None, typer.Option("--id-number", help=f"Their resident ID number {_ID_HELP}.")]
PlateOpt = Annotated[str | None, typer.Option("--plate", help=f"Their licence plate {_ID_HELP}.")]


def _identifier(vin: str | None, phone: str | None, id_number: str | None, plate: str | None) -> tuple[str, str]:
    given = [(k, v) for k, v in (("vin", vin), ("phone", phone), ("id_number", id_number), ("plate", plate)) if v]
    if len(given) != 1:
        raise UsageError("name the person by exactly one of --vin, --phone, --id-number, --plate")
    kind, value = given[0]
    if value == "-":
        value = sys.stdin.readline().strip()
    return kind, value


def _assets_line(summary: dict[str, Any]) -> str:
    by_kind = ", ".join(f"{n} {k}" for k, n in summary["assets"]["by_kind"].items()) or "none"
    return f"{summary['assets']['count']} whole asset(s): {by_kind}"


def _print_footprint(summary: dict[str, Any]) -> None:
    ids = ", ".join(f"{n} {k}" for k, n in summary["identifiers"].items())
    console.print(f"identifiers linked: {ids}")
    console.print(_assets_line(summary))
    for aid in summary["assets"]["ids"]:
        console.print(f"  {aid}")
    for aid, t in summary["table_rows"].items():
        console.print(f"table {aid} ({t['kind']}): {t['rows']} of {t['of']} rows")
    for aid, d in summary["documents"].items():
        console.print(f"document {aid} ({d['kind']}): {d['entries']} entries")
    console.print(f"quarantine: {summary['quarantine']['count']} item(s) {' '.join(summary['quarantine']['ids'])}")
    console.print(f"ledger rows: {summary['ledger_rows']}")
    for p in summary["packages"]:
        country = p.get("country") or (p.get("recipient") or {}).get("country")
        console.print(f"[yellow]left the region[/]: {p['package_id']} to {p['destination']} ({country}) on "
                      f"{p['exported_at'][:10]}, {len(p['assets'])} of their asset(s); the recipient must delete "
                      "them (PIPL Art 23)")
    for h in summary["held"]:
        console.print(f"[yellow]under legal hold[/]: {h['asset_id']} ({h['hold']})")
    for m in summary.get("models", []):
        console.print(f"model trained with their data: {m} (retrain to remove their influence)")


@subject_app.command("find", help="Every asset, table row, package and ledger row of one person (signed, logged).")
def find(ctx: typer.Context, vin: VinOpt = None, phone: PhoneOpt = None, id_number: IdOpt = None,
         plate: PlateOpt = None,
         ref: Annotated[str | None, typer.Option("--ref", help="The request's reference (ticket).")] = None,
         region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None,
         fmt: FormatOpt = OutputFormat.table) -> None:
    kind, value = _identifier(vin, phone, id_number, plate)
    who = actor(as_, key, "a data-subject request")
    ref = ref or f"FIND-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    with open_workspace(ctx) as ws:
        summary = find_subject(ws, kind, value, ref, who, region)
    if fmt == OutputFormat.json:
        print_json(summary)
        return
    console.print(f"request {summary['request_id']} ({summary['ref']}), log entry {summary['log_index']}")
    _print_footprint(summary)


@subject_app.command("export", help="Copy the person's own data into a package for them (signed, logged).")
def export(ctx: typer.Context,
           ref: Annotated[str, typer.Option("--ref", help="The request's reference (ticket).")],
           out: Annotated[Path, typer.Option("-o", "--out", help="A new folder for the copy.")],
           vin: VinOpt = None, phone: PhoneOpt = None, id_number: IdOpt = None, plate: PlateOpt = None,
           region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None,
           fmt: FormatOpt = OutputFormat.table) -> None:
    kind, value = _identifier(vin, phone, id_number, plate)
    who = actor(as_, key, "a data-subject request")
    with open_workspace(ctx) as ws:
        result = export_subject(ws, kind, value, ref, out, who, region)
    if fmt == OutputFormat.json:
        print_json(result)
        return
    console.print(f"wrote {result['files']} file(s), {result['table_rows']} table row(s) to {result['path']} "
                  f"(request {result['request_id']}, log entry {result['log_index']})")
    for w in result["withheld"]:
        console.print(f"withheld {w['asset_id']} ({w['kind']}): {w['why']}")


@subject_app.command("erase", help="Erase one person's data everywhere in the region; --dry-run previews.")
def erase(ctx: typer.Context,
          ref: Annotated[str, typer.Option("--ref", help="The request's reference (ticket); a rerun with the same "
                                                          "ref resumes or does nothing.")],
          vin: VinOpt = None, phone: PhoneOpt = None, id_number: IdOpt = None, plate: PlateOpt = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be erased; change nothing.")]
          = False, region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None,
          fmt: FormatOpt = OutputFormat.table) -> None:
    kind, value = _identifier(vin, phone, id_number, plate)
    who = actor(as_, key, "an erasure request")
    start = time.perf_counter()
    with open_workspace(ctx) as ws:
        result = erase_subject(ws, kind, value, ref, who, region, dry_run)
    result["seconds"] = round(time.perf_counter() - start, 2)
    if fmt == OutputFormat.json:
        print_json(result)
        return
    status = result["status"]
    if status == "already erased":
        console.print(f"{ref}: already erased (erasure {result['erasure_id']}, log entries {result['log_index']} and "
                      f"{result['done_index']}, finished {result['finished_at'][:19]}); nothing to do")
        return
    if status == "preview":
        console.print(f"[bold]preview[/] of {ref} (request {result['request_id']}, log entry {result['log_index']}); "
                      "nothing was changed")
        _print_footprint(result)
        console.print(f"would erase: {_counts_line(result['erase'])}")
        return
    console.print(f"{status} {ref}: erasure {result['erasure_id']}, log entries {result['log_index']} (record) and "
                  f"{result['done_index']} (done), {result['seconds']} s")
    if "erase" in result:
        console.print(f"erased: {_counts_line(result['erase'])}")
    r = result["receipt"]
    console.print(f"destroyed {len(r['keys_destroyed'])} key(s) (checked absent), {r['files']} stored blob(s), "
                  f"{r['bytes']} bytes; removed {r['access_log_lines']} access-log line(s), {r['staging_files']} "
                  "staged copy(ies)")
    for p in result.get("packages", []):
        console.print(f"[yellow]already left[/]: {p['package_id']} to {p['destination']}; tell the recipient to "
                      "delete it (PIPL Art 23)")
    for k in result.get("kept", []):
        console.print(f"[yellow]kept[/]: {k['asset_id']} ({k['why']})")


def _counts_line(counts: dict[str, int]) -> str:
    return (f"{counts['assets']} asset(s), {counts['rows_removed']} row(s) from {counts['tables_rewritten']} "
            f"table(s), {counts['documents_rewritten']} document(s), {counts['quarantine']} quarantined item(s), "
            f"{counts['ledger_rows']} ledger row(s); {counts['packages_left']} package(s) already left; "
            f"{counts['held']} kept under legal hold")


@subject_app.command("requests", help="Open data-subject requests with their 10-working-day deadline.")
def requests(ctx: typer.Context,
             all_: Annotated[bool, typer.Option("--all", help="Every request, done ones too.")] = False,
             region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_workspace(ctx) as ws:
        reg = ws.region(ws.config.region(region).name)
        rows = all_requests(reg) if all_ else open_requests(reg)
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    if not rows:
        console.print("no open requests" if not all_ else "no requests")
        return
    columns = list(rows[0])
    table = Table(*columns, title="data-subject requests", title_justify="left")
    for r in rows:
        table.add_row(*(str(r[c]) for c in columns))
    console.print(table)


@subject_app.command("hold", help="Place a legal hold on assets: they survive erasure and retention.")
def hold(ctx: typer.Context, assets: Annotated[list[str], typer.Argument(help="Asset ids.")],
         ref: Annotated[str, typer.Option("--ref", help="The case or order number.")],
         reason: Annotated[str, typer.Option(help="Why they must be kept.")] = "",
         region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None) -> None:
    who = actor(as_, key, "a legal hold")
    with open_workspace(ctx) as ws:
        out = place_hold(ws, assets, ref, reason, who, region)
    console.print(f"hold {out['hold_id']} on {len(out['assets'])} asset(s), log entry {out['log_index']}")


@subject_app.command("release", help="Release a legal hold.")
def release(ctx: typer.Context, hold_id: Annotated[str, typer.Argument(help="The hold's id.")],
            region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None) -> None:
    who = actor(as_, key, "releasing a legal hold")
    with open_workspace(ctx) as ws:
        out = release_hold(ws, hold_id, who, region)
    console.print(f"released {out['hold_id']} in log entry {out['released_index']}")


@subject_app.command("holds", help="Legal holds in force.")
def holds(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_workspace(ctx) as ws:
        rows = list_holds(ws, region)
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    for r in rows:
        console.print(f"{r['id']} {r['asset_id']} ref {r['ref']} by {r['placed_by']} (entry {r['placed_index']}) "
                      f"{r['reason']}")
    if not rows:
        console.print("no legal holds in force")


@retention_app.command("run", help="Delete what the retention settings say has expired; --dry-run lists it.")
def retention_run(ctx: typer.Context,
                  dry_run: Annotated[bool, typer.Option("--dry-run", help="List what expired; change nothing.")]
                  = False, region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None,
                  fmt: FormatOpt = OutputFormat.table) -> None:
    who = actor(as_, key, "a retention run")
    with open_workspace(ctx) as ws:
        result = run_retention(ws, who, region, dry_run)
    if fmt == OutputFormat.json:
        print_json(result)
        return
    console.print(f"retention {result['status']}: {result['expired']} asset(s) past their retention "
                  f"(log entry {result['log_index']})")
    for a in result["assets"]:
        console.print(f"  {a['asset_id']} {a['why']}")
    for k in result["kept"]:
        console.print(f"[yellow]kept[/]: {k['asset_id']} ({k['why']})")


@retention_app.command("show", help="The retention settings (days per kind) of fleetgate.toml.")
def retention_show(ctx: typer.Context, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_workspace(ctx) as ws:
        policy = ws.config.retention.as_dict()
    if fmt == OutputFormat.json:
        print_json(policy)
        return
    if not policy["raw"] and not policy["derived"]:
        console.print("no retention settings: everything is kept until erased (retention.raw in fleetgate.toml)")
    for part, kinds in policy.items():
        for kind, days in kinds.items():
            console.print(f"{part:8} {kind:20} {days} days")
