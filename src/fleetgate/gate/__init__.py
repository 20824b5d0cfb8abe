"""The export gate: plan, approve and run exports; nothing leaves a region any other way."""

from fleetgate.gate.approvals import approve_plan
from fleetgate.gate.package import PackageInvalid, verify_package
from fleetgate.gate.plan import make_plan, read_plan, write_plan
from fleetgate.gate.run import ExportRefused, ExportResult, list_exports, run_export

__all__ = ["ExportRefused", "ExportResult", "PackageInvalid", "approve_plan", "list_exports", "make_plan",
           "read_plan", "run_export", "verify_package", "write_plan"]
