"""What every service is built from: the workspace (regions: catalog, blobs, keys; settings) and a clock."""

from __future__ import annotations

from securesystemslib.signer import SSlibKey

from fleetgate.domain.clock import Clock
from fleetgate.engine import Runner, runner_for
from fleetgate.keys.personal import public_key_from_pem
from fleetgate.people import PrincipalError
from fleetgate.store import PrincipalRepository, Region
from fleetgate.workspace import Workspace


class Service:
    def __init__(self, ws: Workspace, clock: Clock | None = None) -> None:
        self.ws = ws
        self.clock = clock or Clock()

    def region(self, name: str | None = None) -> Region:
        return self.ws.region(name)

    def runner(self) -> Runner:
        """Where the pipeline stages run: the workspace's `[engine]` (this process unless it says ray)."""
        return runner_for(self.ws.config.engine)

    def region_name(self, name: str | None = None) -> str:
        return self.ws.config.region(name).name

    def registered_key(self, name: str, region: str | None = None) -> SSlibKey:
        """The public key of the active principal `name`, from the principals table (a cache of the log,
        which the gate checks again: a row edited by SQL is a finding and the gate refuses)."""
        for row in PrincipalRepository(self.region(region).catalog).all():
            if row["name"] == name and row["removed_index"] is None:
                return public_key_from_pem(row["public_key"].encode(), f"principal {name}")
        raise PrincipalError(f"{name} is not a registered principal")
