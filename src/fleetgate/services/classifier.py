"""`Classifier`: tag every asset of a region and decide each alone; explain one decision."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetgate.classify import classify_region, explain_asset
from fleetgate.policy.decide import Decision
from fleetgate.policy.request import DecisionRequest
from fleetgate.policy.service import decide_in_workspace
from fleetgate.services.base import Service


class Classifier(Service):
    def classify(self, region: str | None = None, to: str | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> Any:
        """Classify every asset of the region (a `ClassifyReport`)."""
        return classify_region(self.ws, region, to, on_progress=on_progress, runner=self.runner())

    def explain(self, asset_id: str, region: str | None = None) -> dict[str, Any]:
        return explain_asset(self.ws, asset_id, region)

    def decide(self, request: DecisionRequest, region: str | None = None, packs: list | None = None) -> Decision:
        """A what-if request decided against the region's packs and ledger (nothing is recorded)."""
        return decide_in_workspace(self.ws, request, region, packs)
