"""The service layer: every state change and every view of a region, for the CLI and the HTTP API alike.

Each service is a class built from a `Workspace` (its regions: catalog, blob store, key store, and
the settings) and a `Clock`, both injectable; tests pass fakes. The CLI parses options, calls one
method and renders the result; the web layer does the same for HTTP. Neither holds any logic of
its own, so the two interfaces cannot diverge: an approval over HTTP runs the same gate functions,
and the same log replay, as `fleetgate export approve`.
"""

from fleetgate.services.audit import Audit
from fleetgate.services.classifier import Classifier
from fleetgate.services.compute import Compute
from fleetgate.services.context import Services
from fleetgate.services.deid import Deid
from fleetgate.services.export_gate import ExportGate
from fleetgate.services.filings import Filings
from fleetgate.services.ingest import Ingest
from fleetgate.services.ingest_jobs import IngestJob, IngestJobs
from fleetgate.services.inventory import Inventory
from fleetgate.services.principals import Authenticated, Principals
from fleetgate.services.subjects import Subjects
from fleetgate.services.training import Training

__all__ = ["Audit", "Authenticated", "Classifier", "Compute", "Deid", "ExportGate", "Filings", "Ingest", "IngestJob",
           "IngestJobs", "Inventory", "Principals", "Services", "Subjects", "Training"]
