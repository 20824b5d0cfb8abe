"""Ingest fleet drops into a region: validate, store, catalog, quarantine."""

from fleetgate.ingest.drop import DropEntry, open_drop
from fleetgate.ingest.pipeline import IngestReport, ingest_drop
from fleetgate.ingest.validate import validate_file

__all__ = ["DropEntry", "IngestReport", "ingest_drop", "open_drop", "validate_file"]
