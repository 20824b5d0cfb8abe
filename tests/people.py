"""The people a test workspace needs: an admin, an engineer, two compliance officers and an auditor."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from fleetgate.domain import Role
from fleetgate.domain.clock import FixedClock
from fleetgate.gate.trust import bootstrap_region
from fleetgate.keys.personal import Actor, new_key_pair
from fleetgate.people import add_principal
from fleetgate.workspace import Workspace

AS_OF = dt.date(2026, 11, 21)
CLOCK = FixedClock.at(AS_OF)


@dataclass
class Team:
    admin: Actor
    engineer: Actor
    compliance: list[Actor]
    auditor: Actor
    folder: Path

    def key_file(self, actor: Actor) -> Path:
        return self.folder / f"{actor.name.replace(' ', '-').lower()}.key"

    def env(self, actor: Actor) -> dict[str, str]:
        """FLEETGATE_AS / FLEETGATE_KEY for a CLI run as `actor`."""
        return {"FLEETGATE_AS": actor.name, "FLEETGATE_KEY": str(self.key_file(actor))}


def new_actor(folder: Path, name: str) -> Actor:
    path = folder / f"{name.replace(' ', '-').lower()}.key"
    if not path.exists():
        new_key_pair(path)
    return Actor.from_key_file(name, path)


def make_team(ws: Workspace, folder: Path, region: str | None = None) -> Team:
    """Keys in `folder` (outside the workspace), the admin bootstrapped, the others registered, settings signed."""
    name = ws.config.region(region).name
    team = Team(admin=new_actor(folder, "Ada Admin"), engineer=new_actor(folder, "Eng Zhang"),
                compliance=[new_actor(folder, "Li Na"), new_actor(folder, "Chen Jie")],
                auditor=new_actor(folder, "Liu Yang"), folder=folder)
    bootstrap_region(ws, name, team.admin)
    reg = ws.region(name)
    for actor, role in ((team.engineer, Role.engineer), (team.compliance[0], Role.compliance),
                        (team.compliance[1], Role.compliance), (team.auditor, Role.auditor)):
        add_principal(reg, actor.name, role, actor.signer.public_key, team.admin)
    return team


def load_team(folder: Path) -> Team:
    """The team whose keys were written to `folder` by make_team."""
    return Team(admin=new_actor(folder, "Ada Admin"), engineer=new_actor(folder, "Eng Zhang"),
                compliance=[new_actor(folder, "Li Na"), new_actor(folder, "Chen Jie")],
                auditor=new_actor(folder, "Liu Yang"), folder=folder)
