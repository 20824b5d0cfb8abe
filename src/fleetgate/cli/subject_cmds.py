"""`fleetgate subject find|export|erase|requests|hold|release|holds` and `fleetgate retention run|show`.

Each command parses its options, calls one method of the `Subjects` service and renders the result."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fleetgate.cli._common import AsOpt, KeyOpt, OutputFormat, actor, console, open_services, print_json
from fleetgate.errors import UsageError
from fleetgate.services.models import ErasureResult, Footprint, Identifier

subject_app = typer.Typer(no_args_is_help=True)
retention_app = typer.Typer(no_args_is_help=True)
RegionOpt = Annotated[str | None, typer.Option(help="Region (default: the workspace default).")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]
_ID_HELP = "(or '-' to read it from standard input, keeping it out of the shell history)"
VinOpt = Annotated[str | None, typer.Option("--vin", help=f"The person's vehicle identification number {_ID_HELP}.")]
PhoneOpt = Annotated[str | None, typer.Option("--phone", help=f"Their mobile number {_ID_HELP}.")]
IdOpt = Annotated[str | None, typer.Option("--id-number", help=f"Their resident ID number {_ID_HELP}.")]
PlateOpt = Annotated[str | None, typer.Option("--plate", help=f"Their licence plate {_ID_HELP}.")]


def _identifier(vin: str | None, phone: str | None, id_number: str | None, plate: str | None) -> Identifier:
    given = [(k, v) for k, v in (("vin", vin), ("phone", phone), ("id_number", id_number), ("plate", plate)) if v]
    if len(given) != 1:
        raise UsageError("name the person by exactly one of --vin, --phone, --id-number, --plate")
    kind, value = given[0]
    if value == "-":
        value = sys.stdin.readline().strip()
    if not value or len(value) > 64:
        raise UsageError(f"--{kind.replace('_', '-')}: 1 to 64 characters")
    return Identifier(kind=kind, value=value)


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _assets_line(summary: dict[str, Any]) -> str:
    by_kind = ", ".join(f"{n} {k}" for k, n in summary["assets"]["by_kind"].items()) or "none"
    return f"{summary['assets']['count']} whole asset(s): {by_kind}"


def _print_footprint(footprint: Footprint) -> None:
    summary = _dump(footprint)
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
    for pid in summary.get("export_plans", []):
        console.print(f"plan made over HTTP that lists their files: {pid} (withdrawn by an erasure)")
    for m in summary.get("models", []):
        console.print(f"model trained with their data: {m} (retrain to remove their influence)")


@subject_app.command("find", help="Every asset, table row, package and ledger row of one person (signed, logged).")
def find(ctx: typer.Context, vin: VinOpt = None, phone: PhoneOpt = None, id_number: IdOpt = None,
         plate: PlateOpt = None,
         ref: Annotated[str | None, typer.Option("--ref", help="The request's reference (ticket).")] = None,
         region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None,
         fmt: FormatOpt = OutputFormat.table) -> None:
    person = _identifier(vin, phone, id_number, plate)
    who = actor(as_, key, "a data-subject request")
    ref = ref or f"FIND-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    with open_services(ctx) as services:
        found = services.subjects.find(person, ref, who, region)
    if fmt == OutputFormat.json:
        print_json(_dump(found))
        return
    console.print(f"request {found.request_id} ({found.ref}), log entry {found.log_index}")
    _print_footprint(found)


@subject_app.command("export", help="Copy the person's own data into a package for them (signed, logged).")
def export(ctx: typer.Context,
           ref: Annotated[str, typer.Option("--ref", help="The request's reference (ticket).")],
           out: Annotated[Path, typer.Option("-o", "--out", help="A new folder for the copy.")],
           vin: VinOpt = None, phone: PhoneOpt = None, id_number: IdOpt = None, plate: PlateOpt = None,
           region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None,
           fmt: FormatOpt = OutputFormat.table) -> None:
    person = _identifier(vin, phone, id_number, plate)
    who = actor(as_, key, "a data-subject request")
    with open_services(ctx) as services:
        copy = services.subjects.copy(person, ref, out, who, region)
    if fmt == OutputFormat.json:
        print_json(_dump(copy))
        return
    console.print(f"wrote {copy.files} file(s), {copy.table_rows} table row(s) to {copy.path} "
                  f"(request {copy.request_id}, log entry {copy.log_index})")
    for w in copy.withheld:
        console.print(f"withheld {w.asset_id} ({w.kind}): {w.why}")


@subject_app.command("erase", help="Erase one person's data everywhere in the region; --dry-run previews.")
def erase(ctx: typer.Context,
          ref: Annotated[str, typer.Option("--ref", help="The request's reference (ticket); a rerun with the same "
                                                          "ref resumes or does nothing.")],
          vin: VinOpt = None, phone: PhoneOpt = None, id_number: IdOpt = None, plate: PlateOpt = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be erased; change nothing.")]
          = False, region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None,
          fmt: FormatOpt = OutputFormat.table) -> None:
    person = _identifier(vin, phone, id_number, plate)
    who = actor(as_, key, "an erasure request")
    start = time.perf_counter()
    with open_services(ctx) as services:
        result = services.subjects.erase(person, ref, who, region, dry_run)
    result.seconds = round(time.perf_counter() - start, 2)
    if fmt == OutputFormat.json:
        print_json(_dump(result))
        return
    _print_erasure(ref, result)


def _print_erasure(ref: str, result: ErasureResult) -> None:
    summary = result.summary or {}
    if result.status == "already erased":
        console.print(f"{ref}: already erased (erasure {result.erasure_id}, log entries {result.log_index} and "
                      f"{result.done_index}, finished {(result.finished_at or '')[:19]}); nothing to do")
        return
    if result.status == "preview":
        console.print(f"[bold]preview[/] of {ref} (request {result.request_id}, log entry {result.log_index}); "
                      "nothing was changed")
        if result.footprint is not None:
            _print_footprint(result.footprint)
        if result.erase is not None:
            console.print(f"would erase: {_counts_line(result.erase.model_dump())}")
        return
    console.print(f"{result.status} {ref}: erasure {result.erasure_id}, log entries {result.log_index} (record) and "
                  f"{result.done_index} (done), {result.seconds} s")
    counts = result.erase.model_dump() if result.erase is not None else summary.get("counts")
    if counts:
        console.print(f"erased: {_counts_line(counts)}")
    r = result.receipt or {}
    console.print(f"destroyed {len(r.get('keys_destroyed', []))} key(s) (checked absent), {r.get('files', 0)} stored "
                  f"blob(s), {r.get('bytes', 0)} bytes; removed {r.get('access_log_lines', 0)} access-log line(s), "
                  f"{r.get('staging_files', 0)} staged copy(ies)")
    packages = [p.model_dump() for p in result.footprint.packages] if result.footprint else summary.get("packages", [])
    for p in packages:
        console.print(f"[yellow]already left[/]: {p['package_id']} to {p['destination']}; tell the recipient to "
                      "delete it (PIPL Art 23)")
    kept = [k.model_dump() for k in result.kept] or summary.get("held", [])
    for k in kept:
        console.print(f"[yellow]kept[/]: {k['asset_id']} ({k['why']})")


def _counts_line(counts: dict[str, int]) -> str:
    return (f"{counts['assets']} asset(s), {counts['rows_removed']} row(s) from {counts['tables_rewritten']} "
            f"table(s), {counts['documents_rewritten']} document(s), {counts['quarantine']} quarantined item(s), "
            f"{counts['ledger_rows']} ledger row(s); {counts['packages_left']} package(s) already left; "
            f"{counts['held']} kept under legal hold; {counts.get('export_plans_withdrawn', 0)} plan(s) made over "
            "HTTP withdrawn")


@subject_app.command("requests", help="Open data-subject requests with their 10-working-day deadline.")
def requests(ctx: typer.Context,
             all_: Annotated[bool, typer.Option("--all", help="Every request, done ones too.")] = False,
             region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_services(ctx) as services:
        views = services.subjects.requests(region, include_done=all_)
    rows = [v.model_dump(mode="json", exclude_none=True) for v in views]
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
    with open_services(ctx) as services:
        out = services.subjects.hold(assets, ref, reason, who, region)
    console.print(f"hold {out['hold_id']} on {len(out['assets'])} asset(s), log entry {out['log_index']}")


@subject_app.command("release", help="Release a legal hold.")
def release(ctx: typer.Context, hold_id: Annotated[str, typer.Argument(help="The hold's id.")],
            region: RegionOpt = None, as_: AsOpt = None, key: KeyOpt = None) -> None:
    who = actor(as_, key, "releasing a legal hold")
    with open_services(ctx) as services:
        out = services.subjects.release(hold_id, who, region)
    console.print(f"released {out['hold_id']} in log entry {out['released_index']}")


@subject_app.command("holds", help="Legal holds in force.")
def holds(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_services(ctx) as services:
        rows = services.subjects.holds(region)
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
    with open_services(ctx) as services:
        result = services.subjects.retention(who, region, dry_run)
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
    with open_services(ctx) as services:
        policy = services.subjects.retention_settings()
    if fmt == OutputFormat.json:
        print_json(policy)
        return
    if not policy["raw"] and not policy["derived"]:
        console.print("no retention settings: everything is kept until erased (retention.raw in fleetgate.toml)")
    for part, kinds in policy.items():
        for kind, days in kinds.items():
            console.print(f"{part:8} {kind:20} {days} days")
