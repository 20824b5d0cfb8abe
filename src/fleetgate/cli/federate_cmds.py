"""`fleetgate federate`: federated training across regions with Flower; only gated updates cross."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, open_services, print_json
from fleetgate.errors import UsageError


def _regions(text: str, option: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if text and not names:
        raise UsageError(f"{option}: give region names separated by commas")
    return names


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
             verbose: Annotated[bool, typer.Option(help="Show Flower's and Ray's logs.")] = False,
             fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")]
             = OutputFormat.table) -> None:
    """Train across regions with Flower (simulation runtime); each update leaves only through the gate."""
    from fleetgate.gate.model_updates import DpSettings
    from fleetgate.train.federation import FederationSettings

    settings = FederationSettings(
        regions=_regions(regions, "--regions"), evaluate_regions=_regions(evaluate_regions, "--evaluate-regions"),
        server_region=server_region, rounds=rounds, local_epochs=local_epochs, proximal_mu=proximal_mu,
        dp=DpSettings(clip_norm=dp_clip, noise_multiplier=dp_noise), seed=seed, device=device)
    with open_services(ctx) as services, Progress(TextColumn("{task.description}"), BarColumn(),
                                                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                                  transient=True) as progress:
        task = progress.add_task("federated rounds", total=rounds)
        result = services.training.federate(settings, verbose=verbose,
                                            on_round=lambda record: progress.update(task, advance=1))
    if fmt == OutputFormat.json:
        print_json(result.to_dict())
        return
    table = Table("round", "region", "samples", "gate", "rules", "update", "sent", title=f"{result.settings.run_id} "
                  f"({result.settings.strategy}, {len(result.rounds)} rounds, {result.seconds:.1f} s)",
                  title_justify="left")
    for record in result.rounds:
        for u in record.updates:
            table.add_row(str(record.round), u["region"], str(u.get("samples") or ""), str(u.get("outcome") or "-"),
                          ", ".join(u.get("rules") or []), (u.get("update_sha256") or "")[:12],
                          "yes" if u["received"] else f"no: {u.get('reason')}")
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
