"""The FastAPI application: the API under /api/v1, the dashboard at /, static files, error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from fleetgate.errors import FleetgateError
from fleetgate.services import Services
from fleetgate.web import api, dashboard
from fleetgate.web.auth import MAX_JSON_BODY, STATE_CHANGING, LoginLimiter, SessionStore
from fleetgate.web.errors import ApiError, api_error, error_json, fleetgate_error, internal_error, status_of
from fleetgate.web.views import ViewCache, answer_kept

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("fleetgate.web")


def create_app(services: Services) -> SecurityHeaders:
    """The app over one workspace's services; regions are opened up front (the handlers share them)."""
    for name in services.ws.config.regions:
        services.ws.region(name)
        services.inventory.changes(name)  # the first look reads every entry type once, before any request
        services.inventory.rules(name)  # the packs' titles and citations for the asset pages
    services.principals  # noqa: B018 - built once here, not concurrently by the first requests
    web = services.ws.config.web
    app = FastAPI(title="fleetgate", version="1", openapi_url=None, docs_url=None, redoc_url=None,
                  lifespan=_lifespan(web.worker_threads))
    v1 = FastAPI(title="fleetgate API", version="1", description=API_DESCRIPTION, openapi_url="/openapi.json",
                 docs_url=None, redoc_url=None)
    v1.include_router(api.router)
    for target in (app, v1):
        target.state.services = services
        target.add_exception_handler(FleetgateError, fleetgate_error)
        target.add_exception_handler(ApiError, api_error)
        target.add_exception_handler(Exception, internal_error)
        target.add_exception_handler(BodyTooLarge, _too_large)
    v1.add_exception_handler(RequestValidationError, _validation_error)
    v1.state.views = ViewCache()
    app.state.sessions = SessionStore(web.session_minutes)
    app.state.login_limiter = LoginLimiter(web.login_attempts_per_minute)
    app.add_exception_handler(dashboard.LoginRequired, lambda r, e: RedirectResponse("/login", status_code=303))
    app.add_exception_handler(dashboard.FleetgateCsrf, _csrf_refused)
    app.add_exception_handler(FleetgateError, _page_error)
    app.mount("/api/v1", v1)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(dashboard.router)
    return SecurityHeaders(app, services, v1.state.views)


def _lifespan(threads: int):  # noqa: ANN202 - an async context manager factory
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # A few worker threads, not anyio's 40: the catalog is one SQLite file and the machine has few
        # cores, so more threads only contend for the GIL (measured in bench/web_bench.py).
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    return lifespan


async def _validation_error(_request: Request, exc: Exception) -> object:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return error_json(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")


class BodyTooLarge(Exception):
    """A request body (JSON or form) past MAX_JSON_BODY, sent without a Content-Length that said so."""


def _too_large(_request: Request, _exc: Exception) -> object:
    return error_json(413, "too_large", f"a JSON body of at most {MAX_JSON_BODY >> 10} KiB")


def _capped(receive, limit: int):  # noqa: ANN001, ANN202 - the ASGI receive callable
    """`receive`, raising BodyTooLarge once more than `limit` bytes of body came: a chunked body has no
    Content-Length to refuse it by, and starlette reads JSON and forms whole into memory."""
    seen = 0

    async def capped():  # noqa: ANN202
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return capped


def _csrf_refused(request: Request, _exc: Exception) -> HTMLResponse:
    return HTMLResponse("<p>This form has expired or did not come from this dashboard. Reload the page.</p>",
                        status_code=403)


def _page_error(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, FleetgateError)
    status, code = status_of(exc)
    return HTMLResponse(f"<p>{code}: {_escape(exc.message)}</p>", status_code=status)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# no third-party origins at all: htmx and the styles are served from here, so the dashboard works offline
HEADERS = [(b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                        b"frame-ancestors 'none'; form-action 'self'"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]


UPLOADS = "/api/v1/drops"


class SecurityHeaders:
    """Security headers on every response and a cap on request bodies but uploads (a plain ASGI wrapper: no
    per-request task or body copy); and a GET whose view is kept and current, answered here without the
    routes (`views.answer_kept`: only what the route itself would answer)."""

    def __init__(self, app: FastAPI, services: Services, views: ViewCache) -> None:
        self.app, self.services, self.views = app, services, views
        self.state = app.state  # tests and the server reach the app's state through the wrapper

    async def __call__(self, scope, receive, send):  # noqa: ANN001, ANN204 - the ASGI interface
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith("/api/")
        if api and scope["method"] == "GET" and (body := self._kept(scope)) is not None:
            return await _send_json(send, body)
        if scope["method"] in STATE_CHANGING and scope["path"] != UPLOADS:  # uploads are streamed to disk
            receive = _capped(receive, MAX_JSON_BODY)

        async def with_headers(message):  # noqa: ANN001, ANN202
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [h for h in HEADERS if h[0] not in present]
                if api and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers)

    def _kept(self, scope: dict) -> bytes | None:
        try:
            return answer_kept(scope, self.services, self.views)
        except Exception:  # noqa: BLE001 - the routes answer instead, and report the error as they do
            return None


async def _send_json(send, body: bytes) -> None:  # noqa: ANN001 - the ASGI send callable
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"), *HEADERS,
               (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


API_DESCRIPTION = """The JSON API of a fleetgate workspace.

Authenticate with `Authorization: Bearer <token>` (`fleetgate principals token NAME`). Each route
names the roles it admits (`x-roles`); a missing or bad token is 401 and a wrong role 403, before the
body is read. Errors are `{"error": {"code", "message"}}`.

Signed steps (a plan, an approval, a run) come in two halves: a GET (or the POST that drafts a plan)
returns the statement with the exact bytes to sign (`payload`, and `pae_base64`, the DSSE
pre-authentication encoding); sign it on your machine with `fleetgate sign FILE --key KEY` and POST the
envelope. The server never holds a person's private key, and runs the same gate functions as the CLI.

An uploaded drop (`POST /drops`) is spooled to disk and answered with 202 and a job; the ingest worker
ingests it, and `GET /jobs/{job_id}` (with `wait` to hold the answer) tells what landed and what was
quarantined. The job's id is its ingest run's id in the catalog and in the log.
"""
