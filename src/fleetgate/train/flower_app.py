"""The Flower App of a deployment: `server` and `client` are the components its pyproject.toml names.

Flower loads this module in the processes it starts per task: the ServerApp under the SuperLink
(server region) and a ClientApp under each region's SuperNode. Neither trusts the run for who it
is: the region comes from the process pin its SuperNode set at start-up (FLEETGATE_ACTING_REGION,
which must match the node's own `region` node config), the destination from the region's copy of
the deployment, and the server takes each region's log key and node registration from its copy.
The run contributes only its settings (`fleetgate-settings` in the run config).
"""

from __future__ import annotations

import os
from pathlib import Path

from fleetgate.store.residency import ACTING_ENV
from fleetgate.train.deployment import Deployment, load_deployment, registered_nodes
from fleetgate.train.federation import (
    SETTINGS_KEY,
    ClientSetup,
    FederationError,
    FederationSettings,
    ServerSetup,
    flower_modules,
    make_client_app,
    serve,
)
from fleetgate.train.nodes import DEPLOYMENT_ENV, HOME_ENV, SUPERNODE_PID_ENV, record_node_event


def _environment() -> tuple[str, Path, Deployment]:
    region, home, folder = (os.environ.get(k) for k in (ACTING_ENV, HOME_ENV, DEPLOYMENT_ENV))
    if not (region and home and folder):
        raise FederationError(f"this process was not started by `fleetgate federation superlink|supernode` "
                              f"({ACTING_ENV}, {HOME_ENV} and {DEPLOYMENT_ENV} must be set): refusing to act")
    return region, Path(home), load_deployment(Path(folder))


def _settings(context) -> FederationSettings:
    encoded = str(context.run_config.get(SETTINGS_KEY, ""))
    if not encoded:
        raise FederationError(f"the run carries no {SETTINGS_KEY}; submit it with `fleetgate federate --deployment`")
    return FederationSettings.decode(encoded)


def client_setup(msg, context) -> ClientSetup:
    """For whom this ClientApp process acts, from its SuperNode's pin and the region's deployment copy."""
    region, home, deployment = _environment()
    if context.node_config.get("region") != region:
        raise FederationError(f"node config region {context.node_config.get('region')!r} is not the region "
                              f"this process is pinned to ({region})")
    deployment.region(region)
    settings = _settings(context)
    if settings.server_region != deployment.server_region:
        raise FederationError(f"the run would send updates to {settings.server_region}; region {region}'s "
                              f"deployment sends them only to {deployment.server_region}")
    if region not in settings.nodes:
        raise FederationError(f"region {region} is not part of run {settings.run_id}")
    record_node_event(home, region, "clientapp", ppid=os.getppid(), supernode_pid=os.environ.get(SUPERNODE_PID_ENV),
                      message_type=msg.metadata.message_type, run_id=settings.run_id, flower_run_id=context.run_id)
    return ClientSetup(home, settings, region)


def server_setup(context) -> ServerSetup:
    """The ServerApp's setup, from the SuperLink's pin and the server's deployment copy."""
    region, home, deployment = _environment()
    settings = _settings(context)
    if not region == settings.server_region == deployment.server_region:
        raise FederationError(f"the run's server region {settings.server_region} is not this SuperLink's "
                              f"({deployment.server_region}, pinned to {region})")
    return ServerSetup(home, settings, log_key=lambda name: deployment.region(name).log_key,
                       registered=registered_nodes(deployment), flower_run_id=int(context.run_id))


def _server_app():
    _, _, serverapp, _ = flower_modules()
    app = serverapp.ServerApp()

    @app.main()
    def main(grid, context) -> None:
        serve(grid, server_setup(context))

    return app


client = make_client_app(client_setup)
server = _server_app()
