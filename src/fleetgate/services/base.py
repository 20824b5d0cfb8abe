"""What every service is built from: the workspace (regions: catalog, blobs, keys; settings) and a clock."""

from __future__ import annotations

from fleetgate.domain.clock import Clock
from fleetgate.store import Region
from fleetgate.workspace import Workspace


class Service:
    def __init__(self, ws: Workspace, clock: Clock | None = None) -> None:
        self.ws = ws
        self.clock = clock or Clock()

    def region(self, name: str | None = None) -> Region:
        return self.ws.region(name)

    def region_name(self, name: str | None = None) -> str:
        return self.ws.config.region(name).name
