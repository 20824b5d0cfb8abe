"""`fleetgate policy lint|show|test`, `fleetgate decide`, `fleetgate classify`, `fleetgate explain`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, home_of, open_services, print_json
from fleetgate.errors import ExitCode, UsageError
from fleetgate.policy.request import load_request, parse_request_text
from fleetgate.services import policy

app = typer.Typer(no_args_is_help=True)
PacksArg = Annotated[list[str] | None, typer.Argument(help="Pack ids or YAML files (default: every shipped pack).")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]
RegionOpt = Annotated[str | None, typer.Option(help="Region (default: the workspace default).")]


@app.command("lint", help="Compile every rule and check names, fields, duplicate ids and unreachable rules.")
def lint(packs: PacksArg = None) -> None:
    refs, findings = policy.lint(packs)
    for finding in findings:
        console.print(f"[red]✗[/] {finding}", highlight=False)
    if findings:
        raise typer.Exit(int(ExitCode.ERROR))
    console.print(f"[green]✓[/] {len(refs)} packs lint clean: {', '.join(refs)}")


@app.command("test", help="Run the scenario tests embedded in each pack.")
def test(packs: PacksArg = None) -> None:
    results = policy.test(packs)
    for r in results:
        mark = "[green]✓[/]" if r.passed else "[red]✗[/]"
        console.print(f"{mark} {r.pack}: {r.name}" + ("" if r.passed else f"\n    {r.detail}"), highlight=False)
    failed = sum(not r.passed for r in results)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    if failed or not results:
        raise typer.Exit(int(ExitCode.ERROR))


@app.command("show", help="Show a pack: its instrument, sources, hash and rules with citations.")
def show(pack: Annotated[str, typer.Argument(help="Pack id or YAML file.")],
         fmt: FormatOpt = OutputFormat.table) -> None:
    p = policy.show(pack)
    if fmt == OutputFormat.json:
        print_json({"id": p.id, "version": p.version, "title": p.title, "instrument": p.instrument,
                    "jurisdiction": p.jurisdiction, "effective_from": p.effective_from,
                    "effective_until": p.effective_until, "sha256": p.sha256, "sources": p.sources,
                    "approvals": {o.value: {"valid_years": t.valid_years, "cite": t.cite}
                                  for o, t in p.approvals.items()},
                    "switches": {n: {"default": sw.default, "title": sw.title, "cite": sw.cite}
                                 for n, sw in p.switches.items()},
                    "rules": [{"id": r.id, "title": r.title, "stage": r.stage, "priority": r.priority,
                               "when": r.when.source.strip(), "tags": list(r.tags),
                               "outcome": r.outcome.value if r.outcome else None, "obligations": list(r.obligations),
                               "blocking": [b.__dict__ for b in r.blocking],
                               "citation": r.citation.__dict__, "note": r.note} for r in p.rules]})
        return
    console.print(f"[bold]{p.id}[/] {p.version}: {p.title}\n{p.instrument}\n"
                  f"jurisdiction {p.jurisdiction}, in force {p.effective_from} → {p.effective_until or 'open'}\n"
                  f"sha256:{p.sha256}", highlight=False)
    for name, sw in p.switches.items():
        console.print(f"switch {name} (default {str(sw.default).lower()}): {' '.join(sw.title.split())} "
                      f"[{sw.cite}]", highlight=False)
    table = Table("rule", "stage", "effect", "citation", "when", show_lines=True)
    for r in p.rules:
        effect = (r.outcome.value if r.outcome else "tags: " + ", ".join(r.tags) if r.tags
                  else "blocking: " + ", ".join(b.requires for b in r.blocking) if r.blocking else "obligations")
        stage = f"{r.stage} {r.priority}" if r.stage == "decide" else r.stage
        table.add_row(f"{r.id}\n{r.title}", stage, effect,
                      f"{r.citation.short()} [{r.citation.evidence}]", " ".join(r.when.source.split()))
    console.print(table)


def decide(
    ctx: typer.Context,
    request_path: Annotated[Path, typer.Argument(metavar="REQUEST",
                                                 help="Request file (JSON or YAML); '-' reads stdin.")],
    fmt: FormatOpt = OutputFormat.table,
    region: RegionOpt = None,
    pack: Annotated[list[str] | None, typer.Option("--pack", help="Use these packs instead of the region's.")] = None,
    switch: Annotated[list[str] | None, typer.Option(
        "--switch", metavar="NAME=true|false",
        help="Set a pack switch (a debatable reading, docs/policy.md) for this decision.")] = None,
) -> None:
    """Decide an export request against the rule packs."""
    request = (parse_request_text(sys.stdin.read(), "stdin") if str(request_path) == "-"
               else load_request(request_path))
    decision = policy.decide(home_of(ctx), request, region, pack, _switches(switch or []))
    if fmt == OutputFormat.json:
        print_json(decision.to_dict())
        return
    table = Table("item", "outcome", "rules", "blocked until recorded", title=f"{decision.outcome.value}",
                  title_justify="left")
    for item in decision.items:
        table.add_row(item.id, item.outcome.value, ", ".join(item.rules),
                      ", ".join(dict.fromkeys(b.requires for b in item.blocking)))
    console.print(table)
    after = decision.ytd_after
    console.print(f"people this year after this export: PI {after.pi_subjects:,}, SPI {after.spi_subjects:,}")
    for ob in decision.obligations:
        console.print(f"  • {ob}", highlight=False)
    for outcome, term in decision.approval_terms.items():
        console.print(f"a filing for {outcome} granted on {decision.as_of} lasts {term['valid_years']} years "
                      f"({term['cite']})", highlight=False)
    console.print("packs: " + ", ".join(f"{k} {v[:19]}" for k, v in decision.packs.items()), highlight=False)
    console.print("switches: " + ", ".join(f"{k}={str(v).lower()}" for k, v in decision.switches.items()),
                  highlight=False)


def _switches(values: list[str]) -> dict[str, bool]:
    out = {}
    for value in values:
        name, _, flag = value.partition("=")
        if flag.lower() not in ("true", "false") or not name:
            raise UsageError(f"--switch: expected NAME=true or NAME=false, got {value!r}")
        out[name] = flag.lower() == "true"
    return out


def classify(
    ctx: typer.Context,
    region: RegionOpt = None,
    to: Annotated[str | None, typer.Option("--to", help="Destination country to decide against (default: "
                                                        "the first configured destination's).")] = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Classify every asset of a region and decide each alone."""
    with open_services(ctx) as services:
        with Progress(TextColumn("classify"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True, disable=fmt == OutputFormat.json) as progress:
            task = progress.add_task("classify", total=None)
            report = services.classifier.classify(region, to, on_progress=lambda n, total: progress.update(
                task, completed=n, total=total))
    if fmt == OutputFormat.json:
        print_json(report.__dict__)
    else:
        console.print(f"classified {report.classified} assets in {report.region}")
        table = Table("outcome", "assets", title="decided alone", title_justify="left")
        for outcome, n in sorted(report.outcomes.items()):
            table.add_row(outcome, str(n))
        console.print(table)
        console.print("features: " + ", ".join(f"{k} {v}" for k, v in sorted(report.features.items())))
        for asset_id, problem in report.failed:
            console.print(f"[red]✗[/] {asset_id}: {problem}", highlight=False)
    if report.failed:
        raise typer.Exit(int(ExitCode.PARTIAL))


def explain(ctx: typer.Context, asset_id: Annotated[str, typer.Argument(help="Asset id or unique prefix.")],
            region: RegionOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Why an asset was classified and decided as it was."""
    with open_services(ctx) as services:
        info = services.classifier.explain(asset_id, region)
    if fmt == OutputFormat.json:
        print_json(info)
        return
    a, c, d = info["asset"], info["classification"], info["decision"]
    console.print(f"[bold]{a['id']}[/] {a['kind']} {a['source_path']}", highlight=False)
    console.print(f"policy kind: {c['policy_kind'] or '(none: not in the policy vocabulary)'}; "
                  f"features: {', '.join(c['features']) or 'none'}; subjects: {c['subjects']}", highlight=False)
    for ev in c["evidence"]:
        console.print("  evidence: " + ", ".join(f"{k}={v}" for k, v in ev.items()), highlight=False)
    console.print(f"decided alone for {d['destination']} on {d['as_of']}: [bold]{d['outcome']}[/]")
    for reason in d["reasons"]:
        console.print(f"  • {reason}", highlight=False)
    for ob in d.get("obligations", []):
        console.print(f"  obligation: {ob}", highlight=False)
    for b in d.get("blocking", []):
        console.print(f"  blocked until {b['requires']} is recorded ({b['rule']})", highlight=False)
    console.print("packs: " + ", ".join(f"{k} {v[:19]}" for k, v in c["packs"].items()), highlight=False)


