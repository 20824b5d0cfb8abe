"""Principals: the people who may act in a region, each with a role and their own public key.

The first admin of a region registers themselves with a statement signed by their own key; after
that only an admin adds or removes people, each change a signed statement logged whole. Removal
never rewrites history: what a person signed while registered stays valid. The `principals` table is
a cache of the log, checked against it by `audit verify`.
"""

from __future__ import annotations

from securesystemslib.signer import SSlibKey

from fleetgate.audit.log import region_log
from fleetgate.audit.state import LogState, replay
from fleetgate.domain import Principal, PrincipalStatement, Role
from fleetgate.domain.clock import Clock
from fleetgate.errors import UsageError
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor, key_pem
from fleetgate.store import PrincipalRepository, Region


class PrincipalError(UsageError):
    """A principal that cannot be added or removed, or an actor who is not who they claim."""


def current_state(region: Region) -> LogState:
    """The region's log, verified and replayed."""
    return replay(region_log(region), region.name)[0]


def _apply(region: Region, statement: PrincipalStatement, actor: Actor) -> Principal:
    state = current_state(region)
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.PRINCIPAL, actor.signer)
    reason = state.check_principal(state.size, statement, envelope)
    if reason:
        raise PrincipalError(f"principal {statement.action} of {statement.name}: {reason}")
    log, repo = region_log(region), PrincipalRepository(region.catalog)
    with region.catalog.transaction() as conn:
        index, _ = log.append(conn, "principal", {"statement": envelope}, at=statement.at)
        if statement.action == "add":
            principal = Principal(name=statement.name, role=statement.role, keyid=statement.keyid,
                                  public_key=statement.public_key, added_index=index, added_by=statement.by)
            repo.insert(conn, principal.model_dump(mode="json"))
            return principal
        repo.mark_removed(conn, statement.keyid, index, statement.by)
    return state.principals[statement.keyid].model_copy(update={"removed_index": index,
                                                                "removed_by": statement.by})


def bootstrap_admin(region: Region, actor: Actor, clock: Clock | None = None) -> Principal:
    """Register the first admin of a region, who signs their own registration."""
    if current_state(region).principals:
        raise PrincipalError(f"region {region.name} already has principals; an admin adds people with "
                             "`fleetgate principals add`")
    return _apply(region, _add(region, actor.name, Role.admin, actor.signer.public_key, actor.name, clock), actor)


def add_principal(region: Region, name: str, role: Role, public_key: SSlibKey, admin: Actor,
                  clock: Clock | None = None) -> Principal:
    """An admin registers a person."""
    return _apply(region, _add(region, name, role, public_key, admin.name, clock), admin)


def remove_principal(region: Region, name: str, admin: Actor, clock: Clock | None = None) -> Principal:
    """An admin removes a person; what they signed while registered stays valid."""
    state = current_state(region)
    principal = state.active(name)
    if principal is None:
        raise PrincipalError(f"{name} is not a registered principal of region {region.name}")
    admins = [p for p in state.principals.values() if p.role is Role.admin and p.active_at(state.size)]
    if principal.role is Role.admin and len(admins) == 1:
        raise PrincipalError(f"{name} is the last admin of region {region.name}; add another admin first")
    statement = PrincipalStatement(action="remove", region=region.name, name=name, keyid=principal.keyid,
                                   by=admin.name, at=(clock or Clock()).now())
    return _apply(region, statement, admin)


def _add(region: Region, name: str, role: Role, key: SSlibKey, by: str, clock: Clock | None) -> PrincipalStatement:
    try:
        return PrincipalStatement(action="add", region=region.name, name=name, role=role, public_key=key_pem(key),
                                  keyid=key.keyid, by=by, at=(clock or Clock()).now())
    except ValueError as exc:  # pydantic's ValidationError: a name outside the allowed characters
        raise PrincipalError(f"principal name {name!r}: letters, digits, spaces and . _ ' - only") from exc


def list_principals(region: Region, include_removed: bool = False) -> list[Principal]:
    state = current_state(region)
    people = sorted(state.principals.values(), key=lambda p: p.added_index)
    return [p for p in people if include_removed or p.removed_index is None]


def require(state: LogState, actor: Actor, roles: set[Role], what: str) -> Principal:
    """The registered principal `actor` claims to be, holding one of `roles` and this very key."""
    principal = state.active(actor.name)
    if principal is None:
        raise PrincipalError(f"{actor.name} is not a registered principal; an admin adds them with "
                             "`fleetgate principals add`")
    if principal.keyid != actor.keyid:
        raise PrincipalError(f"the key given is not {actor.name}'s registered key")
    if principal.role not in roles:
        raise PrincipalError(f"{what} needs role {' or '.join(sorted(r.value for r in roles))}; {actor.name} has "
                             f"role {principal.role.value}")
    return principal
