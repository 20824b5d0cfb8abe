"""`Deid`: de-identify a region's camera media, trajectories and identifier columns."""

from __future__ import annotations

from collections.abc import Callable

from fleetgate.deid import TrajectoryPolicy, deid_region
from fleetgate.deid.detectors import VIDEO, Profile
from fleetgate.deid.pipeline import DeidReport
from fleetgate.deid.video import VideoSettings
from fleetgate.services.base import Service


class Deid(Service):
    def run(self, region: str | None = None, policy: TrajectoryPolicy | None = None,
            video: VideoSettings | None = None, camera: bool = True, detectors: list | None = None,
            profile: Profile = VIDEO, provider: str = "auto",
            on_progress: Callable[[int, int], None] | None = None) -> DeidReport:
        """Derive de-identified children of every raw asset that needs one (logged `derive` entries)."""
        return deid_region(self.ws, region, policy, on_progress=on_progress, video=video, detectors=detectors,
                           camera=camera, profile=profile, provider=provider, runner=self.runner())
