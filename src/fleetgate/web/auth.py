"""Who is calling: bearer tokens for the API, sessions for the dashboard, roles checked before the body.

- API: `Authorization: Bearer fgt_…` (`fleetgate principals token NAME`). Missing or bad → 401,
  wrong role → 403, both before the request body is read or validated (`GuardedRoute`).
- Dashboard: a session after login by token, by password (argon2) or through an OIDC identity
  provider. The session lives in the server's memory; its cookie is HttpOnly, SameSite=Strict and
  Secure (`web.secure_cookies`); every form carries the session's CSRF token; failed logins are rate
  limited per client address and per name (`web.login_attempts_per_minute`).
- Every state-changing API request is logged (`web_request`) with the principal before it runs (an
  upload's entry names its job, whose id is the ingest run's). A
  route whose body names a person (`x-personal-body`: the data-subject routes) is logged with the
  body's size only: a plain SHA-256 of a body holding a VIN or a phone number could be found by
  trying the fleet's VINs, and the signed request the route logs is its record.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi.routing import APIRoute
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from fleetgate.domain import Role
from fleetgate.services import Authenticated, Principals, Services
from fleetgate.services.ingest_jobs import new_job_id
from fleetgate.web.errors import ApiError, error_json

READERS = ["engineer", "compliance", "auditor", "admin"]  # everyone but upload agents reads the catalog
AUDITORS = ["auditor", "compliance", "admin"]
RAW_VIEWERS = {Role.engineer, Role.compliance, Role.admin}  # raw stills show faces and plates
SESSION_COOKIE = "fleetgate_session"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# tokens are looked up again when one of these log entry types appears (a revocation from the CLI holds at once)
PEOPLE = frozenset({"credential", "principal"})
MAX_JSON_BODY = 1 << 20  # plans, approvals and runs are a few KiB; drops are streamed, not read whole


def services_of(request: Request) -> Services:
    return request.app.state.services


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(request: Request) -> Authenticated:
    token = bearer(request)
    if token is None:
        raise ApiError(401, "unauthenticated", "missing bearer token")
    services = services_of(request)
    principals = services.principals
    region = principals.token_region(token)
    if region is None or region not in services.ws.config.regions:
        raise ApiError(401, "unauthenticated", "invalid, revoked or expired token")
    # what the region's catalog holds as of this request (microseconds: see store.changes), read once: the
    # kept views answer from it, and a credential or principal entry since the last request (from any
    # process: a revocation by the CLI) makes every remembered token be looked up again
    request.state.changes = changes = services.inventory.changes(region)
    principals.follow(region, changes.last_of(PEOPLE))
    who = remembered(principals, token) or await _looked_up(principals, token)
    if who is None:
        raise ApiError(401, "unauthenticated", "invalid, revoked or expired token")
    return who


# token lookups under way, by (event loop, token digest): the requests that bring a token meanwhile wait for the
# same lookup, on the event loop, instead of each holding a worker thread while it waits for the first
_lookups: dict[tuple[int, str], asyncio.Future[Authenticated | None]] = {}


def remembered(principals: Principals, token: str) -> Authenticated | None:
    """The token's principal if it was verified recently (a dictionary lookup); in the last fifth of its cache
    time one lookup of its row is started in the background, so that busy clients never wait for one."""
    who = principals.cached_token(token)
    if who is not None and principals.refresh_due(token):
        _lookup(principals, token, refresh=True)
    return who


async def _looked_up(principals: Principals, token: str) -> Authenticated | None:
    """A token not remembered: its row read and, if its hash is new to us, argon2 (both off the event loop)."""
    return await asyncio.shield(_lookup(principals, token, refresh=False))


def _lookup(principals: Principals, token: str, refresh: bool) -> asyncio.Future[Authenticated | None]:
    key = (id(asyncio.get_running_loop()), hashlib.sha256(token.encode()).hexdigest())
    running = _lookups.get(key)
    if running is None:
        running = asyncio.ensure_future(run_in_threadpool(principals.authenticate_token, token, refresh))
        _lookups[key] = running
        running.add_done_callback(lambda done: _lookup_done(key, done))
    return running


def _lookup_done(key: tuple[int, str], done: asyncio.Future[Authenticated | None]) -> None:
    _lookups.pop(key, None)
    if not done.cancelled():
        done.exception()  # retrieved: a background refresh has no one waiting to raise it


class GuardedRoute(APIRoute):
    """An API route that authenticates and authorizes before FastAPI reads the body, and logs state changes.

    The roles come from the route's `openapi_extra["x-roles"]` (so OpenAPI documents them too); a route
    without it is public (health, OpenAPI)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()
        roles = (self.openapi_extra or {}).get("x-roles")
        streamed = (self.openapi_extra or {}).get("x-streamed-body", False)
        personal = (self.openapi_extra or {}).get("x-personal-body", False)
        makes_job = (self.openapi_extra or {}).get("x-job", False)
        changes = bool(self.methods & STATE_CHANGING)

        async def guarded(request: Request) -> Response:
            if roles is None:
                return await original(request)
            try:
                who = await authenticate(request)
                if who.role.value not in roles:
                    raise ApiError(403, "forbidden", f"this needs role {' or '.join(roles)}")
                region = request.query_params.get("region")
                if region and region != who.region:
                    raise ApiError(403, "forbidden", "the token is for another region")
            except ApiError as exc:
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                return error_json(exc.status, exc.code, exc.message, headers)
            request.state.principal = who
            if changes and not streamed and int(request.headers.get("content-length") or 0) > MAX_JSON_BODY:
                return error_json(413, "too_large", f"a JSON body of at most {MAX_JSON_BODY >> 10} KiB")
            if changes:
                body = b"" if streamed else await request.body()
                # a route that queues a job names it in its request entry, so the log links the request to
                # the job's own entries (an upload's job id is its ingest run's id)
                request.state.job_id = job = new_job_id() if makes_job else None
                request.state.request_log_index = await writing(_record, request, who, body, streamed, personal, job)
            return await original(request)

        return guarded


_limiters: dict[tuple[str, int], anyio.CapacityLimiter] = {}


async def _on_threads_of(pool: str, fn: Callable[..., Any], *args: Any) -> Any:
    loop = id(asyncio.get_running_loop())
    limiter = _limiters.setdefault((pool, loop), anyio.CapacityLimiter(2))
    return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=limiter)


async def writing(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a catalog write on its own two threads: a write waits for SQLite's write lock (the ingest worker
    may hold it for a while), and waiting on the readers' threads would stall every reader behind it."""
    return await _on_threads_of("catalog writes", fn, *args)


async def polling(fn: Callable[..., Any], *args: Any) -> Any:
    """Read a job's files on two threads of their own: waiting clients look every 50 ms, and their looks
    must not queue behind an upload's fsyncs (nor delay them)."""
    return await _on_threads_of("job polls", fn, *args)


async def spooling(fn: Callable[..., Any], *args: Any) -> Any:
    """Run an upload's file work (writing, fsync, the header check) on two threads of its own: a disk slow
    to sync (tens of milliseconds each on this machine) must not hold the threads views are computed on."""
    return await _on_threads_of("spool", fn, *args)


def _body_fact(request: Request, body: bytes, streamed: bool, personal: bool) -> dict[str, Any]:
    if streamed:
        return {"streamed": True, "content_length": request.headers.get("content-length")}
    if personal:
        return {"personal": True, "bytes": len(body)}
    return {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}


def _record(request: Request, who: Authenticated, body: bytes, streamed: bool, personal: bool = False,
            job: str | None = None) -> int:
    route = request.scope.get("route")
    entry = {"principal": who.name, "role": who.role.value, "keyid": who.keyid, "credential": who.credential_id,
             "method": request.method, "route": getattr(route, "path", request.url.path),
             "path_params": {k: str(v) for k, v in request.path_params.items()},
             "query": dict(request.query_params),
             "request_id": request.headers.get("x-request-id") or secrets.token_hex(8),
             "body": _body_fact(request, body, streamed, personal)}
    if job is not None:
        entry["job"] = job
    return services_of(request).audit.record_request(who.region, entry)


def principal_of(request: Request) -> Authenticated:
    return request.state.principal


# -- dashboard sessions ----------------------------------------------------------------------------
@dataclass
class Session:
    who: Authenticated | None
    csrf: str
    expires: float
    data: dict[str, Any] = field(default_factory=dict)


class SessionStore:
    """Sessions in the server's memory: a restart logs everyone out, and nothing about them is on disk."""

    def __init__(self, minutes: int) -> None:
        self.ttl = minutes * 60
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self, who: Authenticated | None, data: dict[str, Any] | None = None) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(who, secrets.token_urlsafe(32), time.monotonic() + self.ttl, data or {})
        with self._lock:
            now = time.monotonic()
            self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
        if session is None or session.expires <= time.monotonic():
            return None
        return session

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


class LoginLimiter:
    """At most `per_minute` failed logins per client address and per name, in a moving window.

    An attempt reserves its place before its password is checked (`begin`) and is counted as failed or
    released after (`end`): otherwise a burst of parallel guesses would all pass the test while the first
    ones are still in argon2, and the limit would hold only for guesses made one after another."""

    def __init__(self, per_minute: int) -> None:
        self.item = RateLimitItemPerMinute(per_minute)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()

    def begin(self, *keys: str) -> bool:
        """Reserve an attempt, or False while the failures and the attempts still being checked fill the window."""
        with self._lock:
            if not all(self.limiter.test(self.item, "login", key, cost=self._pending[key] + 1) for key in keys):
                return False
            self._pending.update(keys)
            return True

    def end(self, *keys: str, failed: bool) -> None:
        with self._lock:
            self._pending.subtract(keys)
            self._pending = +self._pending  # drop the keys at zero
            if failed:
                for key in keys:
                    self.limiter.hit(self.item, "login", key)


def check_csrf(session: Session, supplied: str | None) -> bool:
    return bool(supplied) and secrets.compare_digest(session.csrf, supplied or "")
