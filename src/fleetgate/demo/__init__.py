"""`fleetgate demo`: the whole pipeline on a generated fleet, ending in report.html."""

from fleetgate.demo.run import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
