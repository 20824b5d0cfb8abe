"""Errors as HTTP: `{"error": {"code", "message"}}` with a status per kind; details only in the server log."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from fleetgate.errors import (
    FleetgateError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    StoreError,
    UsageError,
)
from fleetgate.gate import ApprovalRefused, ExportRefused, PlanRefused
from fleetgate.keys.envelope import EnvelopeError
from fleetgate.people import PrincipalError

log = logging.getLogger("fleetgate.web")

# most specific first
STATUS: list[tuple[type[FleetgateError], int, str]] = [
    (NotFoundError, 404, "not_found"),
    (PrincipalError, 403, "forbidden"),
    (ApprovalRefused, 403, "approval_refused"),
    (EnvelopeError, 422, "bad_signature"),
    (PlanRefused, 409, "plan_refused"),
    (ExportRefused, 409, "export_refused"),
    (IntegrityError, 409, "integrity"),
    (StoreError, 503, "store_unavailable"),
    (InvalidInputError, 400, "invalid_input"),
    (UsageError, 400, "bad_request"),
    (FleetgateError, 400, "refused"),
]


class ApiError(Exception):
    """An error the web layer itself raises (authentication, authorization, bad requests)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_json(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def status_of(exc: FleetgateError) -> tuple[int, str]:
    for kind, status, code in STATUS:
        if isinstance(exc, kind):
            return status, code
    return 400, "refused"


def fleetgate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FleetgateError)
    status, code = status_of(exc)
    # fleetgate's messages are one line written for the user, never with a data subject's personal data
    log.info("%s %s -> %s %s: %s", request.method, request.url.path, status, code, exc.message)
    return error_json(status, code, exc.message)


def api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers or None
    return error_json(exc.status, exc.code, exc.message, headers)


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_json(500, "internal", "internal error; the server log has the details")
