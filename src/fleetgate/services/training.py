"""`Training`: train the reference model in one region, or federate it across regions through the gate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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

    def init_deployment(self, regions: list[str], server_region: str, host: str, port: int, bind: str | None,
                        folder: Path, renew_tls: bool = False) -> Any:
        """Create or extend a deployment: its CA, the SuperLink's certificate, a node key per region (a
        `Deployment`)."""
        from fleetgate.train.deployment import init_deployment

        return init_deployment(self.ws, regions, server_region, host, port, bind, folder, renew_tls)

    def superlink(self, folder: Path, announce: Callable[[str], None]) -> int:
        """Run the server region's SuperLink until stopped; its exit code."""
        from fleetgate.train.deployment import load_deployment
        from fleetgate.train.nodes import run_superlink

        return run_superlink(self.ws, load_deployment(folder), announce=announce)

    def supernode(self, folder: Path, region: str, runtime_port: int, join_timeout: float, node_key: Path | None,
                  threads: int | None, announce: Callable[[str], None]) -> int:
        """Run `region`'s SuperNode, pinned to that region from start-up, until stopped; its exit code."""
        from fleetgate.train.deployment import load_deployment
        from fleetgate.train.nodes import run_supernode

        return run_supernode(self.ws, load_deployment(folder), self.region_name(region), runtime_port, join_timeout,
                             node_key, threads, announce=announce)
