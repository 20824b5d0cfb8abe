"""A realistic, reproducible sample fleet drop for demos, tests and benchmarks."""

from fleetgate.sample.generate import SampleSpec, generate_sample

__all__ = ["SampleSpec", "generate_sample"]
