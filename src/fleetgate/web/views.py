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
from typing import TYPE_CHECKING

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
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
# tokens are looked up again when one of these appears (a revocation from the CLI holds at the next request)
PEOPLE = frozenset({"credential", "principal"})

Key = tuple[str, str, str]


def changes_of(request: Request) -> Changes:
    return request.state.changes


class ViewCache:
    """Per app (each app serves one workspace): (path, query, region) -> (version, JSON)."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self.entries: OrderedDict[Key, tuple[int, bytes]] = OrderedDict()
        self.flights: dict[tuple[Key, int], asyncio.Future[bytes]] = {}

    async def respond(self, request: Request, region: str, compute: Callable[[], BaseModel],
                      version: int) -> Response:
        """The kept page for this request's path and query at `version`, or the page computed (off the event loop)."""
        key = (request.url.path, request.url.query, region)
        hit = self.entries.get(key)
        if hit is not None and hit[0] == version:
            self.entries.move_to_end(key)
            return Response(hit[1], media_type="application/json")
        body = await self._compute_once((key, version), compute)
        kept = self.entries.get(key)
        if kept is None or kept[0] <= version:
            self.entries[key] = (version, body)
            self.entries.move_to_end(key)
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return Response(body, media_type="application/json")

    async def _compute_once(self, flight: tuple[Key, int], compute: Callable[[], BaseModel]) -> bytes:
        # a task of its own, not the first request's: a request that goes away does not take the page with it
        task = self.flights.get(flight)
        if task is None:
            task = asyncio.ensure_future(run_in_threadpool(lambda: compute().model_dump_json().encode()))
            self.flights[flight] = task
            task.add_done_callback(lambda done: self._landed(flight, done))
        return await asyncio.shield(task)

    def _landed(self, flight: tuple[Key, int], task: asyncio.Future[bytes]) -> None:
        self.flights.pop(flight, None)
        if not task.cancelled():
            task.exception()  # retrieved here: the waiters (if any are left) raise it themselves
