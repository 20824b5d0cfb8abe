"""`Training`: train the reference model in one region, or federate it across regions through the gate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetgate.services.base import Service


class Training(Service):
    def train(self, region: str | None = None, epochs: int = 40, seed: int = 0, device: str = "auto") -> Any:
        """In-region training; the checkpoint and its model card stay in the region (a `TrainResult`)."""
        from fleetgate.train.run import train_region  # torch is imported only when training

        return train_region(self.ws, region, epochs=epochs, seed=seed, device=device)

    def federate(self, settings: Any, verbose: bool = False, on_round: Callable[[Any], None] | None = None) -> Any:
        """Flower rounds across regions in the simulation runtime; each model update leaves only through the
        gate (a `FederationResult`)."""
        from fleetgate.train.federation import run_federation

        return run_federation(self.ws, settings, verbose=verbose, on_round=on_round)

    def federate_deployed(self, deployment: Any, settings: Any, on_status: Callable[[Any], None] | None = None) -> Any:
        """The same run submitted to a deployed SuperLink (one SuperNode per region, TLS, node keys)."""
        from fleetgate.train.deployment import load_deployment, run_deployed

        return run_deployed(self.ws, load_deployment(deployment), settings, on_status=on_status)
