"""The workspace: `fleetgate.toml`, its regions and destinations, opened as live objects."""

from fleetgate.workspace.config import (
    CONFIG_FILE,
    DestinationConfig,
    GateConfig,
    RegionConfig,
    RetentionConfig,
    WebConfig,
    WorkspaceConfig,
    init_workspace,
    load_config,
)
from fleetgate.workspace.workspace import Workspace

__all__ = [
    "CONFIG_FILE",
    "DestinationConfig",
    "GateConfig",
    "RegionConfig",
    "RetentionConfig",
    "WebConfig",
    "Workspace",
    "WorkspaceConfig",
    "init_workspace",
    "load_config",
]
