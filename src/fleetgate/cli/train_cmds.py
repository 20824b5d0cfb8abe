"""`fleetgate train`: train the reference model in one region, from that region's store only."""

from __future__ import annotations

from typing import Annotated

import typer

from fleetgate.cli._common import OutputFormat, console, open_services, print_json


def train(ctx: typer.Context,
          region: Annotated[str | None, typer.Option(help="Region to train in (default: the workspace default).")]
          = None,
          epochs: Annotated[int, typer.Option(min=1, max=10_000, help="Passes over the training split.")] = 40,
          seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
          device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
          fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table) -> None:
    """Train the ego-trajectory model in-region; the checkpoint and its model card stay in the region."""
    with open_services(ctx) as services, console.status("training", spinner="dots"):
        result = services.training.train(region, epochs=epochs, seed=seed, device=device)
    if fmt == OutputFormat.json:
        print_json({"asset_id": result.asset_id, "model_card": str(result.card_path), **result.card})
        return
    card = result.card
    val = card["metrics"]["validation"] or {}
    console.print(f"checkpoint {result.asset_id} in region {card['region']}: "
                  f"{card['data_lineage']['train_samples']} train / {card['data_lineage']['validation_samples']} "
                  f"validation samples from {card['data_lineage']['vehicles']} vehicles; validation ADE "
                  f"{val.get('ade_m')} m, FDE {val.get('fde_m')} m; {card['metrics']['samples_per_s']} samples/s "
                  f"on {card['metrics']['device']}", highlight=False)
    console.print(f"model card: {result.card_path}", highlight=False)
