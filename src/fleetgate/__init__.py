"""fleetgate: the in-region data platform and export gate for connected-vehicle fleets."""

__version__ = "0.1.0"
