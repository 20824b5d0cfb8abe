"""De-identification: trajectories (trim, excise, coarsen) and identifier columns (keyed pseudonyms).

The names below load on first use (PEP 562): `fleetgate deid video` imports only the camera modules
(fleetgate.deid.video and what it needs), not the catalog, the log and the policy engine that
`deid_region` brings in (measured: 0.9 s of a clip's start-up on 2 cores).
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetgate.deid.pipeline import DeidReport, deid_region
    from fleetgate.deid.tables import DeidError, deidentify_table
    from fleetgate.deid.trajectory import TrajectoryPolicy, deidentify_trajectory

_LAZY = {"DeidReport": "pipeline", "deid_region": "pipeline", "DeidError": "tables", "deidentify_table": "tables",
         "TrajectoryPolicy": "trajectory", "deidentify_trajectory": "trajectory"}

__all__ = ["DeidError", "DeidReport", "TrajectoryPolicy", "deid_region", "deidentify_table",
           "deidentify_trajectory"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
