"""De-identification: trajectories (trim, excise, coarsen) and identifier columns (keyed pseudonyms)."""

from fleetgate.deid.pipeline import DeidReport, deid_region
from fleetgate.deid.tables import DeidError, deidentify_table
from fleetgate.deid.trajectory import TrajectoryPolicy, deidentify_trajectory

__all__ = ["DeidError", "DeidReport", "TrajectoryPolicy", "deid_region", "deidentify_table",
           "deidentify_trajectory"]
