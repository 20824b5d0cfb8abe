"""`Services`: every service of one workspace, built once from the workspace and one clock."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from fleetgate.domain.clock import Clock
from fleetgate.workspace import Workspace

if TYPE_CHECKING:
    from fleetgate.services.audit import Audit
    from fleetgate.services.classifier import Classifier
    from fleetgate.services.compute import Compute
    from fleetgate.services.deid import Deid
    from fleetgate.services.export_gate import ExportGate
    from fleetgate.services.filings import Filings
    from fleetgate.services.ingest import Ingest
    from fleetgate.services.ingest_jobs import IngestJobs
    from fleetgate.services.inventory import Inventory
    from fleetgate.services.principals import Principals
    from fleetgate.services.subjects import Subjects
    from fleetgate.services.training import Training


class Services:
    """The services of a workspace; each is built on first use (de-identification loads its models only
    when asked for) and shares the workspace and the clock."""

    def __init__(self, ws: Workspace, clock: Clock | None = None) -> None:
        self.ws = ws
        self.clock = clock or Clock()

    @cached_property
    def inventory(self) -> Inventory:
        from fleetgate.services.inventory import Inventory

        return Inventory(self.ws, self.clock)

    @cached_property
    def ingest(self) -> Ingest:
        from fleetgate.services.ingest import Ingest

        return Ingest(self.ws, self.clock)

    @cached_property
    def ingest_jobs(self) -> IngestJobs:
        from fleetgate.services.ingest_jobs import IngestJobs

        return IngestJobs(self.ws, self.clock)

    @cached_property
    def classifier(self) -> Classifier:
        from fleetgate.services.classifier import Classifier

        return Classifier(self.ws, self.clock)

    @cached_property
    def deid(self) -> Deid:
        from fleetgate.services.deid import Deid

        return Deid(self.ws, self.clock)

    @cached_property
    def gate(self) -> ExportGate:
        from fleetgate.services.export_gate import ExportGate

        return ExportGate(self.ws, self.clock)

    @cached_property
    def filings(self) -> Filings:
        from fleetgate.services.filings import Filings

        return Filings(self.ws, self.clock)

    @cached_property
    def audit(self) -> Audit:
        from fleetgate.services.audit import Audit

        return Audit(self.ws, self.clock)

    @cached_property
    def principals(self) -> Principals:
        from fleetgate.services.principals import Principals

        return Principals(self.ws, self.clock)

    @cached_property
    def compute(self) -> Compute:
        from fleetgate.services.compute import Compute

        return Compute(self.ws, self.clock)

    @cached_property
    def training(self) -> Training:
        from fleetgate.services.training import Training

        return Training(self.ws, self.clock)

    @cached_property
    def subjects(self) -> Subjects:
        from fleetgate.services.subjects import Subjects

        return Subjects(self.ws, self.clock)

    def close(self) -> None:
        if "inventory" in self.__dict__:
            self.inventory.close()
        self.ws.close()
