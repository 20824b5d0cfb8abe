"""`python -m fleetgate` runs the command line."""

from fleetgate.cli.main import run

run()
