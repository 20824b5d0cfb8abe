"""Compute planning under US export controls: chip classification (ECCN 3A090) and training time."""

from fleetgate.compute.chips import Chip, ChipStatus, chip_status, classify_3a090, load_chips
from fleetgate.compute.plan import MODEL_PRESETS, ModelSpec, PlanRow, parse_model_spec, plan_training

__all__ = [
    "MODEL_PRESETS",
    "Chip",
    "ChipStatus",
    "ModelSpec",
    "PlanRow",
    "chip_status",
    "classify_3a090",
    "load_chips",
    "parse_model_spec",
    "plan_training",
]
