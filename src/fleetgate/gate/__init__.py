"""The export gate: plan, approve and run exports; nothing leaves a region any other way."""

from fleetgate.gate.approvals import ApprovalRefused, approve_plan
from fleetgate.gate.basis import record_basis
from fleetgate.gate.package import PackageInvalid, verify_package
from fleetgate.gate.plan import PlanRefused, make_plan, read_plan, write_plan
from fleetgate.gate.run import ExportRefused, ExportResult, list_exports, run_export
from fleetgate.gate.trust import CatalogMismatch, sign_config, verify_region

__all__ = ["ApprovalRefused", "CatalogMismatch", "ExportRefused", "ExportResult", "PackageInvalid", "PlanRefused",
           "approve_plan", "list_exports", "make_plan", "read_plan", "record_basis", "run_export", "sign_config",
           "verify_package", "verify_region", "write_plan"]
