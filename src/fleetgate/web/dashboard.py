"""The dashboard: server-rendered pages (Jinja2) with htmx for partial updates; works offline.

Every page needs a session (login by token, password or OIDC). Forms carry the session's CSRF
token. The approve form shows the exact statement to sign (and its DSSE PAE) and takes the
envelope `fleetgate sign` prints: the server never sees a private key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from fleetgate.domain import Role
from fleetgate.errors import FleetgateError, NotFoundError
from fleetgate.services import Authenticated
from fleetgate.web import plots
from fleetgate.web.auth import AUDITORS, RAW_VIEWERS, SESSION_COOKIE, Session, check_csrf, services_of
from fleetgate.web.errors import status_of
from fleetgate.web.oidc import OidcError, OidcLogin

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["json"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str)
TEMPLATES.env.filters["num"] = lambda value: f"{value:,}" if isinstance(value, int | float) else value
router = APIRouter(include_in_schema=False)
PAGE = 50
logger = logging.getLogger("fleetgate.web")  # not `log`: that is the log page
# what /login?error=CODE may say: fixed lines, never text from the address (a link could make it say anything)
LOGIN_ERRORS = {"expired": "this login form expired; try again",
                "oidc": "the login through the identity provider did not complete; the server log says why",
                "unregistered": "the identity provider's user is not a registered principal"}


class LoginRequired(Exception):
    """No live session: the dashboard sends the browser to /login."""


def _sessions(request: Request):  # noqa: ANN202 - SessionStore
    return request.app.state.sessions


def _session(request: Request) -> Session:
    session = _sessions(request).get(request.cookies.get(SESSION_COOKIE))
    if session is None or session.who is None:
        raise LoginRequired
    return session


def _render(request: Request, template: str, session: Session | None, status: int = 200, **context: Any
            ) -> HTMLResponse:
    who = session.who if session else None
    return TEMPLATES.TemplateResponse(request, template, {"who": who, "csrf": session.csrf if session else "",
                                                          "nav": template.split(".")[0], **context},
                                      status_code=status)


def _partial(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def _form(request: Request, session: Session) -> dict[str, Any]:
    """The posted form, after its CSRF token was checked against the session's."""
    form = await request.form()
    if not check_csrf(session, form.get("csrf") or request.headers.get("x-csrf-token")):
        raise FleetgateCsrf
    return {k: form.getlist(k) if len(form.getlist(k)) > 1 else form.get(k) for k in form}


class FleetgateCsrf(Exception):
    """A form without this session's CSRF token."""


def _record(request: Request, who: Authenticated, form: dict[str, Any]) -> int:
    body = json.dumps({k: v for k, v in form.items() if k != "csrf"}, sort_keys=True).encode()
    entry = {"principal": who.name, "role": who.role.value, "keyid": who.keyid, "credential": who.credential_id,
             "method": request.method, "route": "dashboard:" + request.url.path,
             "path_params": {k: str(v) for k, v in request.path_params.items()},
             "request_id": secrets.token_hex(8), "body": {"sha256": hashlib.sha256(body).hexdigest(),
                                                          "bytes": len(body)}}
    return services_of(request).audit.record_request(who.region, entry)


def _refused(request: Request, session: Session, exc: FleetgateError) -> HTMLResponse:
    status, code = status_of(exc)
    return _render(request, "error.html", session, status=status, code=code, message=exc.message)


# -- login -----------------------------------------------------------------------------------------
def _set_cookie(request: Request, response: Response, sid: str) -> None:
    web = services_of(request).ws.config.web
    response.set_cookie(SESSION_COOKIE, sid, max_age=web.session_minutes * 60, httponly=True,
                        secure=web.secure_cookies, samesite="strict", path="/")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str | None = None) -> HTMLResponse:
    sid, session = _sessions(request).new(None)
    ws = services_of(request).ws
    response = _render(request, "login.html", session, error=LOGIN_ERRORS.get(error or ""),
                       regions=sorted(ws.config.regions),
                       default_region=ws.config.default_region, oidc=bool(ws.config.web.oidc.issuer))
    _set_cookie(request, response, sid)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    store = _sessions(request)
    old = request.cookies.get(SESSION_COOKIE)
    pre = store.get(old)
    form = await request.form()
    if pre is None or not check_csrf(pre, form.get("csrf")):
        return RedirectResponse("/login?error=expired", status_code=303)
    services = services_of(request)
    client = request.client.host if request.client else "?"
    name = str(form.get("name") or "")
    limiter = request.app.state.login_limiter
    keys = (f"ip:{client}",) + ((f"name:{name}",) if name else ())
    if not limiter.begin(*keys):
        return _render(request, "login.html", pre, status=429, error="too many failed logins; wait a minute",
                       regions=sorted(services.ws.config.regions), default_region=services.ws.config.default_region,
                       oidc=bool(services.ws.config.web.oidc.issuer))
    who = None
    try:
        if form.get("token"):
            who = await run_in_threadpool(services.principals.authenticate_token, str(form.get("token")).strip())
        else:
            region = str(form.get("region") or services.ws.config.default_region)
            who = (await run_in_threadpool(services.principals.authenticate_password, name,
                                           str(form.get("password") or ""), region)
                   if region in services.ws.config.regions else None)
    finally:
        limiter.end(*keys, failed=who is None)
    if who is None:
        return _render(request, "login.html", pre, status=401, error="wrong token, name or password",
                       regions=sorted(services.ws.config.regions), default_region=services.ws.config.default_region,
                       oidc=bool(services.ws.config.web.oidc.issuer))
    return _start_session(request, who, old)


def _start_session(request: Request, who: Authenticated, old: str | None) -> Response:
    store = _sessions(request)
    store.drop(old)  # a new session id after login: a planted cookie is worth nothing
    sid, _ = store.new(who)
    response = RedirectResponse("/", status_code=303)
    _set_cookie(request, response, sid)
    return response


@router.get("/login/oidc")
def oidc_start(request: Request) -> Response:
    services = services_of(request)
    cfg = services.ws.config.web.oidc
    sid, session = _sessions(request).new(None)
    try:
        url = OidcLogin(cfg).start(session.data, str(request.url_for("oidc_callback")))
    except OidcError as exc:
        logger.info("OIDC login not started: %s", exc)
        return RedirectResponse("/login?error=oidc", status_code=303)
    response = RedirectResponse(url, status_code=303)
    # SameSite=Lax for this one: the identity provider's redirect back is a cross-site navigation
    response.set_cookie(SESSION_COOKIE, sid, max_age=600, httponly=True, secure=services.ws.config.web.secure_cookies,
                        samesite="lax", path="/")
    return response


@router.get("/login/oidc/callback", name="oidc_callback")
def oidc_callback(request: Request, code: str = "", state: str = "") -> Response:
    services = services_of(request)
    old = request.cookies.get(SESSION_COOKIE)
    session = _sessions(request).get(old)
    if session is None:
        return RedirectResponse("/login?error=expired", status_code=303)
    try:
        name = OidcLogin(services.ws.config.web.oidc).finish(session.data, code, state,
                                                             str(request.url_for("oidc_callback")))
    except OidcError as exc:
        logger.info("OIDC login refused: %s", exc)
        return RedirectResponse("/login?error=oidc", status_code=303)
    who = services.principals.by_name(name, services.ws.config.default_region)
    if who is None:
        return RedirectResponse("/login?error=unregistered", status_code=303)
    return _start_session(request, who, old)


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = _session(request)
    await _form(request, session)
    _sessions(request).drop(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- pages -----------------------------------------------------------------------------------------
def _reader(request: Request) -> Session:
    session = _session(request)
    if session.who.role is Role.ingest:
        raise LoginRequired  # an upload agent has no dashboard
    return session


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    session = _reader(request)
    services = services_of(request)
    region = session.who.region
    ov = services.inventory.overview(region)
    return _render(request, "overview.html", session, ov=ov, regions=services.inventory.regions(),
                   outcomes_svg=plots.outcomes_svg(ov.outcomes), ledger_svg=plots.ledger_svg(ov.ledger))


@router.get("/assets", response_class=HTMLResponse)
def assets(request: Request, kind: str = "", outcome: str = "", vehicle: str = "", offset: int = 0) -> HTMLResponse:
    session = _reader(request)
    services = services_of(request)
    page = services.inventory.assets(region=session.who.region, kind=kind or None, outcome=outcome or None,
                                     vehicle=vehicle or None, limit=PAGE, offset=max(0, offset))
    ov = services.inventory.overview(session.who.region)
    query = {"kind": kind, "outcome": outcome, "vehicle": vehicle}
    template = "partials/assets_table.html" if _partial(request) else "assets.html"
    return _render(request, template, session, page=page, query=query, kinds=[r["kind"] for r in ov.inventory],
                   outcomes=sorted(ov.outcomes), prev=max(0, offset - PAGE), next=offset + PAGE)


@router.get("/assets/{asset_id}", response_class=HTMLResponse)
def asset(request: Request, asset_id: str) -> HTMLResponse:
    session = _reader(request)
    try:
        detail = services_of(request).inventory.asset(asset_id, session.who.region)
    except FleetgateError as exc:
        return _refused(request, session, exc)
    raw_ok = session.who.role in RAW_VIEWERS
    after = next((c for c in detail.children if c.kind == detail.asset.kind), None)
    return _render(request, "asset.html", session, d=detail, raw_ok=raw_ok, after=after)


@router.get("/assets/{asset_id}/still.png")
def still(request: Request, asset_id: str) -> Response:
    """A frame of camera media as PNG: raw media only to roles allowed to see it, de-identified media to all."""
    session = _reader(request)
    services = services_of(request)
    row, data = services.inventory.blob(asset_id, session.who.region)
    if not row["kind"].endswith(("_video", "_image")):
        raise NotFoundError(f"asset {asset_id} is a {row['kind']}: it has no still")
    derived = (row["tags"] or {}).get("derived")
    if not derived and session.who.role not in RAW_VIEWERS:
        return Response("raw media is shown only to engineers, compliance officers and admins", status_code=403)
    return Response(_still(row["kind"], data), media_type="image/png", headers={"Cache-Control": "private, no-store"})


def _still(kind: str, data: bytes) -> bytes:
    from PIL import Image

    if kind.endswith("_video"):
        import av

        with av.open(io.BytesIO(data)) as container:
            frame = next(container.decode(video=0))
            image = frame.to_image()
    else:
        image = Image.open(io.BytesIO(data))
    image.thumbnail((960, 540))
    out = io.BytesIO()
    image.convert("RGB").save(out, "PNG")
    return out.getvalue()


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine(request: Request, offset: int = 0) -> HTMLResponse:
    session = _reader(request)
    page = services_of(request).inventory.quarantine(region=session.who.region, limit=PAGE, offset=max(0, offset))
    return _render(request, "quarantine.html", session, page=page, prev=max(0, offset - PAGE), next=offset + PAGE)


# -- plans -----------------------------------------------------------------------------------------
@router.get("/plans", response_class=HTMLResponse)
def plans(request: Request) -> HTMLResponse:
    session = _reader(request)
    services = services_of(request)
    return _render(request, "plans.html", session, plans=services.gate.plans(session.who.region),
                   exports=services.gate.exports(session.who.region),
                   destinations=sorted(services.ws.config.destinations))


@router.post("/plans", response_class=HTMLResponse)
async def new_plan(request: Request) -> Response:
    session = _reader(request)
    form = await _form(request, session)
    who = session.who
    if who.role is not Role.engineer:
        return _render(request, "error.html", session, status=403, code="forbidden", message="only engineers plan")
    services = services_of(request)
    await run_in_threadpool(_record, request, who, form)
    try:
        view = await run_in_threadpool(services.gate.draft, str(form.get("destination")), who.name,
                                       str(form.get("select") or "") or None, str(form.get("purpose") or ""),
                                       who.region)
    except FleetgateError as exc:
        return _refused(request, session, exc)
    return RedirectResponse(f"/plans/{view.plan_id}", status_code=303)


@router.get("/plans/{plan_id}", response_class=HTMLResponse)
def plan(request: Request, plan_id: str) -> HTMLResponse:
    session = _reader(request)
    try:
        view = services_of(request).gate.view(plan_id, session.who.region)
    except FleetgateError as exc:
        return _refused(request, session, exc)
    who = session.who
    items = view.plan.get("items", [])
    leaving = [i for i in items if i["outcome"] != "LOCAL_ONLY"]
    staying = [i for i in items if i["outcome"] == "LOCAL_ONLY"]
    can_approve = (view.status == "signed" and who.role is Role.compliance and who.name != view.author
                   and bool(view.plan["approval_scope"]["kinds"]))
    can_run = view.status == "signed" and who.role is Role.engineer and view.export is None
    can_sign = view.status == "draft" and who.role is Role.engineer and who.name == view.author
    default_until = (dt.date.today() + dt.timedelta(days=365)).isoformat()
    return _render(request, "plan.html", session, v=view, leaving=leaving, staying=staying, can_approve=can_approve,
                   can_run=can_run, can_sign=can_sign, default_until=default_until)


@router.post("/plans/{plan_id}/sign", response_class=HTMLResponse)
async def sign_plan(request: Request, plan_id: str) -> Response:
    return await _signed_step(request, plan_id, "sign_plan", Role.engineer)


@router.get("/plans/{plan_id}/approve/statement", response_class=HTMLResponse)
def approve_statement(request: Request, plan_id: str, ref: str = "", valid_until: str = "",
                      kind: Annotated[list[str] | None, Query()] = None) -> HTMLResponse:
    """The approval statement to sign (an htmx fragment), after every check the gate makes at approval."""
    session = _reader(request)
    if session.who.role is not Role.compliance:
        return _render(request, "error.html", session, status=403, code="forbidden",
                       message="only compliance officers approve")
    try:
        until = dt.date.fromisoformat(valid_until)
        sign = services_of(request).gate.approval_request(plan_id, session.who.name, ref, until, kind or None, None,
                                                          session.who.region)
    except ValueError:
        return _render(request, "partials/refused.html", session, status=400, message="valid until: a date")
    except FleetgateError as exc:
        return _render(request, "partials/refused.html", session, status=status_of(exc)[0], message=exc.message)
    return _render(request, "partials/sign.html", session, sign=sign, action=f"/plans/{plan_id}/approve",
                   what="approval", plan_id=plan_id)


@router.post("/plans/{plan_id}/approve", response_class=HTMLResponse)
async def approve(request: Request, plan_id: str) -> Response:
    return await _signed_step(request, plan_id, "submit_approval", Role.compliance)


@router.get("/plans/{plan_id}/run/statement", response_class=HTMLResponse)
def run_statement(request: Request, plan_id: str) -> HTMLResponse:
    session = _reader(request)
    if session.who.role is not Role.engineer:
        return _render(request, "error.html", session, status=403, code="forbidden", message="only engineers run")
    try:
        sign = services_of(request).gate.run_request(plan_id, session.who.name, session.who.region)
    except FleetgateError as exc:
        return _render(request, "partials/refused.html", session, status=status_of(exc)[0], message=exc.message)
    return _render(request, "partials/sign.html", session, sign=sign, action=f"/plans/{plan_id}/run", what="run",
                   plan_id=plan_id)


@router.post("/plans/{plan_id}/run", response_class=HTMLResponse)
async def run(request: Request, plan_id: str) -> Response:
    return await _signed_step(request, plan_id, "submit_run", Role.engineer)


async def _signed_step(request: Request, plan_id: str, method: str, role: Role) -> Response:
    """A signed statement pasted into a form: logged as a request, then handed to the same service the API uses."""
    session = _reader(request)
    form = await _form(request, session)
    who = session.who
    if who.role is not role:
        return _render(request, "error.html", session, status=403, code="forbidden",
                       message=f"this needs role {role.value}")
    try:
        envelope = json.loads(str(form.get("envelope") or ""))
    except ValueError:
        return _render(request, "error.html", session, status=422, code="bad_signature",
                       message="the envelope is not JSON: paste what `fleetgate sign` printed")
    await run_in_threadpool(_record, request, who, form)
    try:
        await run_in_threadpool(getattr(services_of(request).gate, method), plan_id,
                                envelope if isinstance(envelope, dict) else {}, who.name, who.region)
    except FleetgateError as exc:
        return _refused(request, session, exc)
    return RedirectResponse(f"/plans/{plan_id}", status_code=303)


# -- the log ---------------------------------------------------------------------------------------
@router.get("/log", response_class=HTMLResponse)
def log(request: Request, start: int | None = None, type: str = "") -> HTMLResponse:
    session = _reader(request)
    if session.who.role.value not in AUDITORS:  # the same roles as /api/v1/log
        return _render(request, "error.html", session, status=403, code="forbidden",
                       message="the log is for auditors, compliance officers and admins")
    audit = services_of(request).audit
    size, entries = audit.entries(session.who.region, start=start, limit=PAGE, kind=type or None)
    cp = audit.latest_checkpoint(session.who.region)
    return _render(request, "log.html", session, size=size, entries=entries, cp=cp, kind=type, start=start,
                   page=PAGE)


@router.get("/log/proof/{index}", response_class=HTMLResponse)
def log_proof(request: Request, index: int) -> HTMLResponse:
    session = _reader(request)
    if session.who.role.value not in AUDITORS:
        return _render(request, "error.html", session, status=403, code="forbidden",
                       message="the log is for auditors, compliance officers and admins")
    try:
        proof = services_of(request).audit.prove(index, session.who.region)
    except FleetgateError as exc:
        return _render(request, "partials/refused.html", session, status=status_of(exc)[0], message=exc.message)
    leaf = json.dumps(proof.entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return _render(request, "partials/proof.html", session, p=proof,
                   leaf_b64=base64.b64encode(leaf).decode("ascii"))


# -- federation and compute ------------------------------------------------------------------------
@router.get("/federation", response_class=HTMLResponse)
def federation(request: Request) -> HTMLResponse:
    session = _reader(request)
    services = services_of(request)
    updates = []
    for region in services.ws.config.regions:
        _, entries = services.audit.entries(region, limit=200, kind="model_update")
        updates += [e.entry | {"log_region": region, "log_index": e.index} for e in entries]
    updates.sort(key=lambda e: (e.get("run_id", ""), e.get("round", 0), e.get("from_region", "")))
    runs: dict[str, list[dict[str, Any]]] = {}
    for u in updates:
        runs.setdefault(u.get("run_id", "?"), []).append(u)
    return _render(request, "federation.html", session, runs=runs)


@router.get("/compute", response_class=HTMLResponse)
def compute(request: Request, clips: float = 1e9) -> HTMLResponse:
    session = _reader(request)
    services = services_of(request)
    return _render(request, "compute.html", session, chips=services.compute.chips(), rows=services.compute.plan(clips),
                   clips=clips)


@router.get("/compute/plot.png")
def compute_plot(request: Request, clips: float = 1e9) -> Response:
    _reader(request)
    with plots._lock:
        png = services_of(request).compute.plot_png(clips)
    return Response(png, media_type="image/png")
