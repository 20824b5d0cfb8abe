"""Making a workspace: a region in `fleetgate.toml`, and its first admin, who signs their own registration.

These run before there is a workspace to build `Services` from, so they take its folder.
"""

from __future__ import annotations

from pathlib import Path

from fleetgate.errors import UsageError
from fleetgate.gate.trust import bootstrap_region
from fleetgate.keys.personal import Actor, new_key_pair
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import WorkspaceConfig


def create_region(home: Path, region: str, country: str | None = None) -> tuple[WorkspaceConfig, bool]:
    """Create the workspace or add the region to it; whether anything changed."""
    return init_workspace(home, region, country)


def admin_key(home: Path, key_file: Path) -> bool:
    """Make the first admin's key pair at `key_file` unless it exists (whether it was made). A personal key
    never lives inside the workspace: whoever can write the workspace could then sign as that person."""
    if key_file.exists():
        return False
    if home.resolve() in key_file.resolve().parents:
        raise UsageError(f"--admin-key: {key_file} is inside the workspace; a personal key stays outside it")
    new_key_pair(key_file)
    return True


def register_first_admin(home: Path, region: str, name: str, key_file: Path) -> int:
    """Register `name` as the region's first admin and sign its settings; the log index of the settings."""
    with Workspace.open(home) as ws:
        return bootstrap_region(ws, region, Actor.from_key_file(name, key_file))
