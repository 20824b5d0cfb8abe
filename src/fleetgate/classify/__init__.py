"""Content classification of catalog assets: PII scan of tables, GNSS precision and sensitive areas."""

from fleetgate.classify.assets import ClassifyReport, classify_region, explain_asset
from fleetgate.classify.pii_scan import ScanResult, scan_table

__all__ = ["ClassifyReport", "ScanResult", "classify_region", "explain_asset", "scan_table"]
