"""In-region training: a trajectory-prediction reference model trained on one region's own store."""

from fleetgate.train.dataset import FUTURE, PAST, Samples, build_samples, split_by_vehicle

__all__ = ["FUTURE", "PAST", "Samples", "build_samples", "split_by_vehicle"]
