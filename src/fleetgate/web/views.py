"""Rendered JSON of catalog views, kept while nothing they show has changed.

Each view names the log entry types that cannot change it; its version is the index of the last
entry of any other type (`store.changes`: commits of every process count, the ingest worker's and
the CLI's too). Every fact row is written in the same transaction as its log entry, so a page
computed at version v is still the page while the version is v. The version is read (once per
request, before anything else) before the page is computed, so a kept page is never older than
the version it is kept under, and a request that starts after a commit never gets a page from
before it. A page being computed is computed once: the requests that want it meanwhile wait for it.
Authentication and roles are checked before a view is looked up.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from fleetgate.web.auth import PEOPLE, remembered

if TYPE_CHECKING:
    from fleetgate.services import Services
    from fleetgate.services.inventory import Changes

# Entry types whose writes touch none of the tables the catalog views read (assets, classifications,
# quarantine, ledger, exports): requests, people, credentials, plans, approvals, legal bases, legal
# holds, signed settings and subject requests (the rows they write are principals, credentials, plans,
# export_approvals, legal_holds, subject_requests). Any other type, and a type this list does not
# know, makes every view compute again.
NOT_CATALOG = frozenset({"web_request", "credential", "principal", "decision", "approval", "basis", "config",
                         "legal_hold", "subject_request"})
# One asset's page (by its full id): an ingest only inserts assets that are new, never children (derived
# assets come with `derive`), so an ingest of other files cannot change it.
NOT_ONE_ASSET = NOT_CATALOG | {"ingest"}

Key = tuple[str, bytes, str]
Version = int | tuple[int, int]


@dataclass(frozen=True)
class Depends:
    """How a view's version is read from the catalog's changes: the last index of the entry types that can
    change it (`unaffected`: those that cannot), or, for the latest signed checkpoint (a row no entry
    records), that row's size and note."""

    unaffected: frozenset[str] = frozenset()
    checkpoint: bool = False

    def version(self, changes: Changes) -> Version:
        return changes.checkpoint if self.checkpoint else changes.version(self.unaffected)


ON_ANY_ENTRY = Depends()
ON_CATALOG = Depends(NOT_CATALOG)
ON_ONE_ASSET = Depends(NOT_ONE_ASSET)
ON_CHECKPOINT = Depends(checkpoint=True)


@dataclass(frozen=True)
class Kept:
    version: Version
    body: bytes
    depends: Depends
    roles: frozenset[str]  # the route's x-roles: who may be answered from it without the route


def changes_of(request: Request) -> Changes:
    return request.state.changes


def key_of(scope: dict, region: str) -> Key:
    return scope["path"], scope["query_string"], region


class ViewCache:
    """Per app (each app serves one workspace): (path, query, region) -> the view as JSON, its version."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.entries: OrderedDict[Key, Kept] = OrderedDict()
        self.flights: dict[tuple[Key, Version], asyncio.Future[bytes]] = {}

    async def respond(self, request: Request, region: str, compute: Callable[[], BaseModel], depends: Depends,
                      roles: frozenset[str]) -> Response:
        """The kept view for this request's path and query as of its changes, or the view computed (off the
        event loop)."""
        key, version = key_of(request.scope, region), depends.version(changes_of(request))
        hit = self.entries.get(key)
        if hit is not None and hit.version == version:
            self.entries.move_to_end(key)
            return Response(hit.body, media_type="application/json")
        body = await self._compute_once((key, version), compute)
        kept = self.entries.get(key)
        if kept is None or kept.version <= version:  # a later version may have been kept meanwhile: leave it
            self.entries[key] = Kept(version, body, depends, roles)
            self.entries.move_to_end(key)
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return Response(body, media_type="application/json")

    def current(self, key: Key, changes: Changes, role: str) -> bytes | None:
        """The kept view under `key` if it is current as of `changes` and `role` may see it, else None."""
        hit = self.entries.get(key)
        if hit is None or role not in hit.roles or hit.depends.version(changes) != hit.version:
            return None
        self.entries.move_to_end(key)
        return hit.body

    async def _compute_once(self, flight: tuple[Key, Version], compute: Callable[[], BaseModel]) -> bytes:
        # a task of its own, not the first request's: a request that goes away does not take the page with it
        task = self.flights.get(flight)
        if task is None:
            task = asyncio.ensure_future(run_in_threadpool(lambda: compute().model_dump_json().encode()))
            self.flights[flight] = task
            task.add_done_callback(lambda done: self._landed(flight, done))
        return await asyncio.shield(task)

    def _landed(self, flight: tuple[Key, Version], task: asyncio.Future[bytes]) -> None:
        self.flights.pop(flight, None)
        if not task.cancelled():
            task.exception()  # retrieved here: the waiters (if any are left) raise it themselves


def answer_kept(scope: dict, services: Services, views: ViewCache) -> bytes | None:
    """A GET answered from a kept view without the routes, or None to let the routes answer it.

    Only when the route would give exactly this: the token is one verified within the cache time and
    not forgotten since (`Principals.follow` runs first, as in `auth.authenticate`), its role is one of
    the route's `x-roles`, and the view is current as of the changes read now. The view's key holds the
    raw query and the token's region, so a query the route refuses (another region, a bad parameter)
    has no view to be answered from. Anything else (no token, a new or stale one, no view, an error)
    goes to the routes, which decide and say why."""
    token = _bearer(scope)
    if token is None or not views.entries:
        return None
    principals = services.principals
    region = principals.token_region(token)
    if region is None or region not in services.ws.config.regions:
        return None
    changes = services.inventory.changes(region)
    principals.follow(region, changes.last_of(PEOPLE))
    who = remembered(principals, token)
    if who is None or who.region != region:
        return None
    return views.current(key_of(scope, region), changes, who.role.value)


def _bearer(scope: dict) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None
