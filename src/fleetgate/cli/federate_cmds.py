"""`fleetgate federate` and `fleetgate federation ...`: federated training across regions with Flower."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, home_of, open_services, print_json
from fleetgate.errors import UsageError

federation_app = typer.Typer(no_args_is_help=True, help="Deploy federated training: SuperLink, SuperNodes, keys.")


def _regions(text: str, option: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if text and not names:
        raise UsageError(f"{option}: give region names separated by commas")
    return names


def _deployment_folder(ctx: typer.Context, folder: Path | None) -> Path:
    from fleetgate.train.deployment import default_folder

    return folder or default_folder(home_of(ctx))


def federate(ctx: typer.Context,
             regions: Annotated[str, typer.Option(help="Regions that train, comma-separated.")]
             = "cn-shanghai,eu-frankfurt",
             evaluate_regions: Annotated[str, typer.Option(
                 help="Regions that only evaluate the global model each round (they send no update).")] = "",
             server_region: Annotated[str, typer.Option(help="Region of the ServerApp that aggregates.")] = "global",
             rounds: Annotated[int, typer.Option(min=1, max=1000, help="Federated rounds.")] = 3,
             local_epochs: Annotated[int, typer.Option(min=1, max=1000, help="Local epochs per round.")] = 5,
             proximal_mu: Annotated[float, typer.Option(min=0.0, help="FedProx proximal weight; 0 = FedAvg.")] = 0.0,
             dp_clip: Annotated[float, typer.Option(min=0.0, help="Clip each update's L2 norm to this; 0 = off.")]
             = 0.0,
             dp_noise: Annotated[float, typer.Option(min=0.0, help="Gaussian noise multiplier on the clip norm.")]
             = 0.0,
             seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
             device: Annotated[str, typer.Option(help="cpu or cuda (clients share the GPU).")] = "cpu",
             deployment: Annotated[Path | None, typer.Option(
                 help="Submit to this deployment's SuperLink (folder of deployment.toml) instead of simulating.")]
             = None,
             on_region_loss: Annotated[str, typer.Option(
                 help="fail: a lost region fails the run; continue: its rounds go on without it.")] = "fail",
             round_timeout: Annotated[float, typer.Option(min=1.0, help="Seconds the server waits for a round.")]
             = 3600.0,
             rejoin_wait: Annotated[float, typer.Option(
                 min=0.0, help="Seconds a lost region's node gets to come back before each round.")] = 0.0,
             verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's logs.")] = False,
             fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")]
             = OutputFormat.table) -> None:
    """Train across regions with Flower (simulation, or a deployment); updates leave only through the gate."""
    from fleetgate.gate.model_updates import DpSettings
    from fleetgate.train.federation import FederationSettings

    settings = FederationSettings(
        regions=_regions(regions, "--regions"), evaluate_regions=_regions(evaluate_regions, "--evaluate-regions"),
        server_region=server_region, rounds=rounds, local_epochs=local_epochs, proximal_mu=proximal_mu,
        dp=DpSettings(clip_norm=dp_clip, noise_multiplier=dp_noise), seed=seed, device=device,
        on_region_loss=on_region_loss, round_timeout_s=round_timeout, rejoin_wait_s=rejoin_wait)
    with open_services(ctx) as services, Progress(TextColumn("{task.description}"), BarColumn(),
                                                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                                  transient=True) as progress:
        task = progress.add_task("federated rounds", total=rounds)
        if deployment is None:
            result = services.training.federate(settings, verbose=verbose,
                                                on_round=lambda record: progress.update(task, advance=1))
        else:
            result = services.training.federate_deployed(deployment, settings, on_status=lambda s: progress.update(
                task, description=f"run on the SuperLink: {s.status}"))
    if fmt == OutputFormat.json:
        print_json(result.to_dict())
        return
    _print_result(result)


def _print_result(result) -> None:
    table = Table("round", "region", "samples", "gate", "rules", "update", "sent", title=f"{result.settings.run_id} "
                  f"({result.settings.strategy}, {len(result.rounds)} rounds, {result.seconds:.1f} s)",
                  title_justify="left")
    for record in result.rounds:
        for u in record.updates:
            table.add_row(str(record.round), u["region"], str(u.get("samples") or ""), str(u.get("outcome") or "-"),
                          ", ".join(u.get("rules") or []), (u.get("update_sha256") or "")[:12],
                          "yes" if u["received"] else f"no: {u.get('reason')}")
        for region, reason in record.lost.items():
            table.add_row(str(record.round), region, "", "-", "", "", f"lost: {reason}")
    console.print(table)
    evaluation = Table("region", "ADE m", "FDE m", "constant velocity ADE m", "validation samples",
                       title="global model on each region's validation vehicles", title_justify="left")
    for region, m in sorted(result.final_evaluation().items()):
        evaluation.add_row(region, f"{m['ade_m']:.3f}", f"{m['fde_m']:.3f}", f"{m['constant_velocity_ade_m']:.3f}",
                           str(m["samples"]))
    console.print(evaluation)
    console.print(f"global checkpoint {result.checkpoint_asset or '(none: no update was released)'} in region "
                  f"{result.settings.server_region}; log entry {result.log_index}; summary {result.summary_path}",
                  highlight=False)


@federation_app.command("init")
def init(ctx: typer.Context,
         regions: Annotated[str, typer.Option(help="Regions that run a SuperNode, comma-separated.")]
         = "cn-shanghai,eu-frankfurt",
         server_region: Annotated[str, typer.Option(help="Region of the SuperLink.")] = "global",
         host: Annotated[str, typer.Option(help="Name or address SuperNodes dial (in the TLS certificate).")]
         = "127.0.0.1",
         port: Annotated[int, typer.Option(min=1, max=65535, help="The SuperLink's port (Fleet and Control API).")]
         = 9092,
         bind: Annotated[str | None, typer.Option(help="Interface the SuperLink listens on (default: --host).")]
         = None,
         folder: Annotated[Path | None, typer.Option("--deployment", help="Deployment folder.")] = None,
         renew_tls: Annotated[bool, typer.Option(help="Issue a new SuperLink certificate.")] = False) -> None:
    """Create or extend a deployment: its CA, the SuperLink's certificate, a node key per region."""
    with open_services(ctx) as services:
        dep = services.training.init_deployment(_regions(regions, "--regions"), server_region, host, port, bind,
                                                _deployment_folder(ctx, folder), renew_tls)
    console.print(f"deployment {dep.folder}: SuperLink of {dep.server_region} at {dep.address}; SuperNodes for "
                  f"{', '.join(sorted(dep.regions))}; CA {dep.ca_cert}", highlight=False)


@federation_app.command("superlink")
def superlink(ctx: typer.Context,
              folder: Annotated[Path | None, typer.Option("--deployment", help="Deployment folder.")] = None) -> None:
    """Run the server region's SuperLink (TLS, node authentication) until stopped."""
    with open_services(ctx) as services:
        code = services.training.superlink(_deployment_folder(ctx, folder), _announce)
    raise typer.Exit(code)


@federation_app.command("supernode")
def supernode(ctx: typer.Context,
              region: Annotated[str, typer.Option(help="The region this SuperNode serves (and only reads).")],
              folder: Annotated[Path | None, typer.Option("--deployment", help="Deployment folder.")] = None,
              runtime_port: Annotated[int, typer.Option(
                  min=0, max=65535, help="Local port of the node's Runtime API; 0 picks a free one.")] = 0,
              join_timeout: Annotated[float, typer.Option(
                  min=0.0, help="Seconds to keep retrying while the SuperLink refuses to activate the node.")]
              = 120.0,
              node_key: Annotated[Path | None, typer.Option(help="The node's private key (default: the region's).")]
              = None,
              threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for local training.")]
              = None) -> None:
    """Run a region's SuperNode, pinned to that region, until stopped."""
    with open_services(ctx) as services:
        code = services.training.supernode(_deployment_folder(ctx, folder), region, runtime_port, join_timeout,
                                           node_key, threads, _announce)
    raise typer.Exit(code)


def _announce(text: str) -> None:
    typer.echo(text)  # one unwrapped line: supervisors and tests wait for it
