"""`fleetgate compute`: list accelerators with their export-control class; plan training time."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fleetgate.cli._common import OutputFormat, console, print_json

app = typer.Typer(no_args_is_help=True)

FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]
ExtraOpt = Annotated[Path | None, typer.Option("--chips-file", help="YAML file of extra chips.")]
CountryOpt = Annotated[str, typer.Option(help="Country of the data center (ISO alpha-2).")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Date for the policy overlays (YYYY-MM-DD).")]


def _as_of(value: str | None) -> date:
    from fleetgate.errors import UsageError

    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"--as-of: {value!r} is not a YYYY-MM-DD date") from exc


@app.command("chips", help="List accelerators: figures, TPP, PD, ECCN 3A090 class and licence status.")
def chips(fmt: FormatOpt = OutputFormat.table, chips_file: ExtraOpt = None, country: CountryOpt = "CN",
          as_of: AsOfOpt = None) -> None:
    """List accelerators."""
    from fleetgate.compute import chip_status, load_chips

    when = _as_of(as_of)
    rows = []
    for chip in load_chips(chips_file).values():
        status = chip_status(chip, country, when)
        rows.append({**asdict(chip), "tpp": round(chip.tpp), "pd": round(chip.pd, 2) if chip.pd else None,
                     "eccn": status.eccn, "us_licence": status.us_licence, "overlays": status.overlays})
    if fmt == OutputFormat.json:
        print_json({"country": country, "as_of": when.isoformat(), "chips": rows})
        return
    table = Table("chip", "BF16", "FP8", "INT8", "GB", "TB/s", "link GB/s", "die mm²", "W", "TPP", "PD",
                  "ECCN", f"licence for {country} on {when}", title="accelerators (dense peaks)", title_justify="left")
    for r in rows:
        table.add_row(r["name"], _num(r["bf16_tflops"]), _num(r["fp8_tflops"]), _num(r["int8_tops"]),
                      _num(r["memory_gb"]), _num(r["memory_bw_tbs"]), _num(r["interconnect_gbs"]),
                      _num(r["die_mm2"]), _num(r["tdp_w"]), f"{r['tpp']:,}", _num(r["pd"]), r["eccn"],
                      r["us_licence"])
    console.print(table)
    console.print("sources: `fleetgate compute chips --format json` lists a source for each figure")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


@app.command("plan", help="Training time with K chips, or chips needed for D days, per chip type.")
def plan(
    clips: Annotated[float, typer.Option(help="Number of training clips (1e9 works).")],
    model: Annotated[str, typer.Option(help="Preset, YAML file, or key=value list.")] = "fleet-vit-1.2b",
    chips: Annotated[str, typer.Option("--chips", help="Comma-separated chip names.")] = "H20,H100,Ascend 910B",
    count: Annotated[int | None, typer.Option(help="Chips in the cluster.")] = None,
    days: Annotated[float | None, typer.Option(help="Target training days.")] = None,
    mfu: Annotated[float | None, typer.Option(help="Override the chip's default MFU.")] = None,
    goodput: Annotated[float | None, typer.Option(help="Override the chip's default goodput.")] = None,
    precision: Annotated[str, typer.Option(help="bf16 or fp8.")] = "bf16",
    country: CountryOpt = "CN",
    as_of: AsOfOpt = None,
    chips_file: ExtraOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of days against chip count.")] = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Plan training on one or more chip types."""
    from fleetgate.compute import load_chips, parse_model_spec, plan_training
    from fleetgate.compute.chips import find_chip
    from fleetgate.compute.plot import plot_time_vs_chips

    spec = parse_model_spec(model)
    catalog = load_chips(chips_file)
    picked = [find_chip(catalog, name.strip()) for name in chips.split(",") if name.strip()]
    when = _as_of(as_of)
    options = {"precision": precision, "mfu": mfu, "goodput": goodput, "country": country, "as_of": when}
    rows = [plan_training(spec, clips, chip, count=count, days=days, **options) for chip in picked]
    if plot:
        plot_time_vs_chips(spec, clips, picked, plot, **options)
    if fmt == OutputFormat.json:
        print_json({"model": asdict(spec), "tokens_per_clip": spec.tokens_per_clip,
                    "flops_per_token": spec.flops_per_token, "clips": clips, "rows": [asdict(r) for r in rows]})
        return
    console.print(f"model {spec.name}: {spec.tokens_per_clip:,.0f} tokens/clip, "
                  f"{spec.flops_per_token:.3g} FLOPs/token, {spec.total_flops(clips):.3g} FLOPs for {clips:.3g} clips")
    table = Table("chip", "chips", "days", "MFU", "goodput", "mem floor", "step compute s", "all-reduce s",
                  "GPU MW", "ECCN", f"licence ({country})", title="training plan", title_justify="left")
    for r in rows:
        flag = "[bold red]⚠ [/]" if r.needs_licence else ""
        table.add_row(r.chip, f"{r.chips:,}", f"{r.days:,.1f}", f"{r.mfu:.2f}", f"{r.goodput:.2f}",
                      f"{r.memory_floor_chips:,}", f"{r.step_compute_s:.2f}", f"{r.step_comm_s:.2f}",
                      f"{r.gpu_power_mw:.2f}", r.eccn, flag + r.us_licence)
    console.print(table)
    if plot:
        console.print(f"plot: {plot}")
