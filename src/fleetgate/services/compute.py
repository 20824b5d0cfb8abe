"""`Compute`: the accelerators under export controls and training-time plans, for the dashboard and the CLI."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fleetgate.compute import chip_status, load_chips, parse_model_spec, plan_training
from fleetgate.compute.chips import find_chip
from fleetgate.compute.plot import plot_time_vs_chips
from fleetgate.services.base import Service

DEFAULT_CHIPS = ("H20", "H100", "Ascend 910B")


class Compute(Service):
    def chips(self, country: str = "CN", as_of: dt.date | None = None) -> list[dict[str, Any]]:
        when = as_of or self.clock.today()
        out = []
        for chip in load_chips().values():
            status = chip_status(chip, country, when)
            out.append({**asdict(chip), "tpp": round(chip.tpp), "eccn": status.eccn, "us_licence": status.us_licence})
        return out

    def plan(self, clips: float, chips: tuple[str, ...] = DEFAULT_CHIPS, days: float = 30.0,
             model: str = "fleet-vit-1.2b", country: str = "CN") -> list[dict[str, Any]]:
        spec, catalog = parse_model_spec(model), load_chips()
        return [asdict(plan_training(spec, clips, find_chip(catalog, c), days=days, country=country,
                                     as_of=self.clock.today())) for c in chips]

    def plot_png(self, clips: float, chips: tuple[str, ...] = DEFAULT_CHIPS, model: str = "fleet-vit-1.2b",
                 country: str = "CN") -> bytes:
        spec, catalog = parse_model_spec(model), load_chips()
        with tempfile.TemporaryDirectory() as tmp:
            path = plot_time_vs_chips(spec, clips, [find_chip(catalog, c) for c in chips], Path(tmp) / "plan.png",
                                      country=country, as_of=self.clock.today())
            return Path(path).read_bytes()
