"""Flower's SuperNode behind an app pin: `python -m fleetgate.train.flower_node --app-sha256 H -- ARGS`.

A SuperNode runs whatever Flower App the SuperLink hands it, and the SuperLink is abroad. Flower's
own check (`--trusted-entities`) needs an app signed through a licensed SuperLink, so this entry
point wraps the SuperNode's connection instead: the app of every run is accepted only if its bytes
hash to `H`, the app the region builds itself from its own fleetgate (`deployment.app_fab`). That
app carries no code, only the names of fleetgate's components, so what runs in the region is the
region's installed fleetgate. Anything else stops the SuperNode with `APP_REFUSED` (fail closed);
its supervisor reports it and does not restart it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from contextlib import contextmanager

from fleetgate.train.nodes import APP_REFUSED


class AppRefused(RuntimeError):
    """The SuperLink sent an app this region does not run."""


def pin_app(expected_sha256: str) -> None:
    """Wrap Flower's SuperNode connection so that its `get_fab` returns only the expected app."""
    from flwr.supernode import start_client_internal as sci

    connect = sci._init_connection

    @contextmanager
    def pinned(*args, **kwargs):
        with connect(*args, **kwargs) as conn:
            callbacks = list(conn)
            get_fab = callbacks[4]  # (node_id, receive, send, get_run, get_fab, ...) in flwr 1.41

            def checked_fab(fab_hash: str, run_id: int):
                fab = get_fab(fab_hash, run_id)
                actual = hashlib.sha256(fab.content).hexdigest()
                if actual != expected_sha256 or fab.hash_str != expected_sha256:
                    print(f"{APP_REFUSED} of run {run_id}: sha256 {actual}, this region runs {expected_sha256}",
                          file=sys.stderr, flush=True)
                    raise AppRefused(f"app {actual[:12]}… is not fleetgate's")
                return fab

            callbacks[4] = checked_fab
            yield tuple(callbacks)

    sci._init_connection = pinned


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleetgate.train.flower_node")
    parser.add_argument("--app-sha256", required=True)
    parser.add_argument("flower_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.flower_args[1:] if args.flower_args[:1] == ["--"] else args.flower_args
    from fleetgate.train.federation import flower_environment

    flower_environment()
    pin_app(args.app_sha256)
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
