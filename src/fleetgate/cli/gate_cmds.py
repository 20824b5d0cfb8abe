"""`fleetgate export plan|approve|run|ls`, `fleetgate audit ...` and `fleetgate verify-package`."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from fleetgate.cli._common import (
    AsOpt,
    KeyOpt,
    OutputFormat,
    actor,
    console,
    human_bytes,
    open_services,
    print_json,
)
from fleetgate.errors import ExitCode, UsageError
from fleetgate.gate import read_plan, write_plan
from fleetgate.gate.package import verify_package_at
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import load_signer

export_app = typer.Typer(no_args_is_help=True)
audit_app = typer.Typer(no_args_is_help=True)
RegionOpt = Annotated[str | None, typer.Option(help="Region (default: the workspace default).")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]


def _date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option}: not a date (YYYY-MM-DD): {value!r}") from None


@export_app.command("plan", help="Decide the selected assets for a destination and write a signed plan.")
def plan(ctx: typer.Context,
         to: Annotated[str, typer.Option("--to", help="Destination name from fleetgate.toml.")],
         out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the plan (JSON).")],
         select: Annotated[str | None, typer.Option(help="CEL over `asset` (kind, vehicle, clip_id, t_start, "
                                                         "t_end, features, source_path, bytes).")] = None,
         purpose: Annotated[str, typer.Option(help="Why the data leaves; approvals are locked to it.")] = "",
         region: RegionOpt = None,
         as_of: Annotated[str | None, typer.Option("--as-of", help="Decide as on this date.")] = None,
         as_: AsOpt = None, key: KeyOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    author = actor(as_, key, "an export plan")
    with open_services(ctx) as services:
        signed = services.gate.plan(to, author, select, purpose, region, _date(as_of, "--as-of") if as_of else None)
    write_plan(signed, out)
    p = signed.plan
    if fmt == OutputFormat.json:
        print_json({"plan_id": signed.plan_id, **p.model_dump(mode="json", exclude={"items"})})
        return
    title = f"{signed.plan_id} → {to} ({p.destination.country}), signed by {p.author}"
    table = Table("outcome", "assets", "bytes", "subjects", title=title, title_justify="left")
    for outcome, s in sorted(p.summary.items()):
        table.add_row(outcome, str(s.assets), human_bytes(s.bytes), f"{s.subjects:,}")
    console.print(table)
    blocked = [i for i in p.items if i.blocking]
    if blocked:
        needs = sorted({b.requires for i in blocked for b in i.blocking})
        console.print(f"{len(blocked)} item(s) with personal information leave only once {' and '.join(needs)} "
                      f"are recorded: `fleetgate export basis {out} --legal-basis TYPE:REF --pipia REF`")
    console.print(f"wrote {out}")


@export_app.command("approve", help="Sign an approval of a plan's contract/assessment items under a filing.")
def approve(ctx: typer.Context, plan_path: Annotated[Path, typer.Argument(metavar="PLAN")],
            ref: Annotated[str, typer.Option(help="Filing number of the assessment, contract or certificate.")],
            valid_until: Annotated[str, typer.Option("--valid-until", help="Last day the approval holds.")],
            kinds: Annotated[list[str] | None, typer.Option("--kind", help="Approve only these policy kinds "
                                                                          "(repeat; default: all asked).")] = None,
            max_subjects: Annotated[int | None, typer.Option(help="Most people the approval covers "
                                                                  "(default: the plan's count).")] = None,
            as_: AsOpt = None, key: KeyOpt = None) -> None:
    approver = actor(as_, key, "an approval")
    signed = read_plan(plan_path)
    with open_services(ctx) as services:
        a = services.gate.approve(signed, ref, _date(valid_until, "--valid-until"), approver, kinds, max_subjects)
    console.print(f"approval {a.approval_id} ({a.ref}) by {a.approver} for {', '.join(a.kinds)} → "
                  f"{signed.plan.destination.country}, up to {a.max_subjects:,} people, valid until {a.valid_until}; "
                  f"log entry {a.log_index}")


@export_app.command("basis", help="Record the legal basis and PIPIA of a plan's personal information "
                                   "(compliance-signed, logged).")
def basis(ctx: typer.Context, plan_path: Annotated[Path, typer.Argument(metavar="PLAN")],
          legal_basis: Annotated[str, typer.Option("--legal-basis", help="TYPE:REF, e.g. "
                                                   "separate_consent:CONSENT-2026-7 or contract_necessity:C-1.")],
          pipia: Annotated[str, typer.Option("--pipia", help="Reference of the PI protection impact assessment.")],
          as_: AsOpt = None, key: KeyOpt = None) -> None:
    officer = actor(as_, key, "a legal basis")
    basis_type, sep, basis_ref = legal_basis.partition(":")
    if not sep:
        raise UsageError(f"--legal-basis: TYPE:REF, got {legal_basis!r}")
    signed = read_plan(plan_path)
    with open_services(ctx) as services:
        index, st = services.gate.basis(signed, basis_type, basis_ref, pipia, officer)
    console.print(f"recorded {st.legal_basis.type} ({st.legal_basis.ref}) and PIPIA {st.pipia_ref} for "
                  f"{signed.plan_id} by {st.by}; log entry {index}")


@export_app.command("run", help="Re-check a signed plan and publish what may leave as a signed package.")
def run(ctx: typer.Context, plan_path: Annotated[Path, typer.Argument(metavar="PLAN")],
        as_: AsOpt = None, key: KeyOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    runner = actor(as_, key, "an export run")
    signed = read_plan(plan_path)
    with open_services(ctx) as services:
        with Progress(TextColumn("export"), BarColumn(), MofNCompleteColumn(), console=console, transient=True,
                      disable=fmt == OutputFormat.json) as progress:
            task = progress.add_task("export", total=None)
            result = services.gate.run(signed, runner, on_progress=lambda n, t: progress.update(task, completed=n,
                                                                                                total=t))
    if fmt == OutputFormat.json:
        print_json({"package_id": result.package_id, "path": str(result.path) if result.path else None,
                    "status": result.status, "exported": len(result.exported), "held": len(result.held),
                    "ledger_delta": result.ledger_delta, "bytes": result.bytes, "log_index": result.log_index,
                    "approvals": result.approvals})
        return
    console.print(f"{result.package_id}: {result.status}" + (f" at {result.path}" if result.path else ""))
    if result.status == "published":
        console.print(f"  {len(result.exported)} assets, {human_bytes(result.bytes)}, ledger +{result.ledger_delta}, "
                      f"log entry {result.log_index}")
        for a in result.approvals:
            console.print(f"  under {a['ref']}, approved by {a['approver']} ({', '.join(a['kinds'])})")


@export_app.command("ls", help="List exports of a region.")
def ls(ctx: typer.Context, region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    with open_services(ctx) as services:
        rows = services.gate.exports(region)
    if fmt == OutputFormat.json:
        print_json(rows)
        return
    table = Table("package", "destination", "status", "assets", "bytes", "log entry", title="exports",
                  title_justify="left")
    for r in rows:
        table.add_row(r["package_id"], r["destination"], r["status"], str(len(r["assets"])), human_bytes(r["bytes"]),
                      str(r["log_index"]))
    console.print(table)


@audit_app.command("verify", help="Recompute the log and check every catalog row the gate reads against it.")
def verify(ctx: typer.Context, region: RegionOpt = None,
           content: Annotated[bool, typer.Option(help="Also check each blob's bytes against its kind.")] = True,
           fmt: FormatOpt = OutputFormat.table) -> None:
    with open_services(ctx) as services:
        result = services.audit.verify(region, content)
    if fmt == OutputFormat.json:
        print_json({"entries": result.report.entries, "checkpoints": result.report.checkpoints,
                    "root": result.report.root, "findings": [f.__dict__ for f in result.findings]})
    elif result.findings:
        table = Table("table", "row", "field", "finding", title=f"{len(result.findings)} finding(s)",
                      title_justify="left")
        for f in result.findings:
            table.add_row(f.table, f.row, f.field, f.problem)
        console.print(table)
    else:
        console.print(f"[green]✓[/] log verified: {result.report.entries:,} entries, {result.report.checkpoints} "
                      f"checkpoints, root {result.report.root[:16]}…; the catalog matches it")
    if result.findings:
        raise typer.Exit(int(ExitCode.INTEGRITY))


@audit_app.command("checkpoint", help="Sign and print a checkpoint of the log (C2SP format).")
def checkpoint(ctx: typer.Context, region: RegionOpt = None) -> None:
    with open_services(ctx) as services:
        cp = services.audit.checkpoint(region)
    typer.echo(cp.text(), nl=False)


@audit_app.command("prove", help="Inclusion proof of a log entry under the latest checkpoint.")
def prove(ctx: typer.Context, entry: Annotated[int, typer.Argument(help="Entry index.")], region: RegionOpt = None,
          size: Annotated[int | None, typer.Option(help="Tree size (default: latest checkpoint).")] = None) -> None:
    with open_services(ctx) as services:
        proof = services.audit.prove(entry, region, size)
    print_json(proof.model_dump(mode="json"))


@audit_app.command("log", help="Show the latest log entries.")
def show_log(ctx: typer.Context, region: RegionOpt = None,
             kind: Annotated[str | None, typer.Option(help="Only entries of this type.")] = None,
             limit: Annotated[int, typer.Option(help="At most this many.")] = 20) -> None:
    with open_services(ctx) as services:
        _, entries = services.audit.entries(region, limit=limit, kind=kind)
    print_json([e.entry for e in reversed(entries)])


@audit_app.command("witness", help="Cosign the latest checkpoint after checking it extends the last one cosigned.")
def witness(ctx: typer.Context, region: RegionOpt = None,
            folder: Annotated[Path | None, typer.Option(help="The witness's own folder (key and state).")] = None,
            name: Annotated[str, typer.Option(help="Witness key name.")] = "fleetgate-witness") -> None:
    with open_services(ctx) as services:
        cosigned = services.audit.witness(region, folder, name)
    typer.echo(cosigned.text(), nl=False)


def verify_package_cmd(path: Annotated[str, typer.Argument(metavar="DIR", help="The package folder (or its "
                                                                            "s3:// URL).")],
                       key: Annotated[str | None, typer.Option(help="Pin the region's Ed25519 public key (hex).")]
                       = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Check a received package: signature, hashes, and inclusion of its export entry."""
    report = verify_package_at(path, key)
    if fmt == OutputFormat.json:
        print_json(report.__dict__)
        return
    console.print(f"[green]✓[/] {report.package_id}: {report.files} files, {human_bytes(report.bytes)}; "
                  + "; ".join(report.checks))
    if not key:
        console.print(f"  signed by {report.key[:16]}… (pin it with --key to check it is the region's key)")




def sign_cmd(statement_file: Annotated[Path, typer.Argument(metavar="STATEMENT", help="The statement to sign, as the "
                                                             "server showed it (JSON; '-' reads stdin).")],
             key: KeyOpt = None,
             out: Annotated[Path | None, typer.Option("-o", "--out", help="Write the envelope here.")] = None) -> None:
    """Sign a statement the server showed (a plan, an approval, a run) with your own key, on your machine.

    Accepts the statement itself or the whole signing request (`statement`, `payload`, `payload_type`);
    prints the DSSE envelope to paste into the dashboard or send to the API."""
    if key is None:
        raise UsageError("--key: your own private key file (or FLEETGATE_KEY)")
    text = sys.stdin.read() if str(statement_file) == "-" else statement_file.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except ValueError:
        raise UsageError(f"{statement_file}: not JSON") from None
    if isinstance(doc, dict) and "payload" in doc and "payload_type" in doc:
        statement = json.loads(doc["payload"])
        if env.PAYLOAD_TYPES.get(statement.get("type")) != doc["payload_type"]:
            raise UsageError(f"{statement_file}: payload_type does not match the statement's type")
    else:
        statement = doc.get("statement", doc) if isinstance(doc, dict) else doc
    if not isinstance(statement, dict):
        raise UsageError(f"{statement_file}: not a statement (a JSON object)")
    envelope = env.sign_offline(statement, load_signer(key))
    text = json.dumps(envelope, indent=2)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {out}")
    else:
        sys.stdout.write(text + "\n")
