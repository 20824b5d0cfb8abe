"""Signed statements: a canonical JSON payload in a DSSE envelope, signed by one or more people.

DSSE (the in-toto/Sigstore envelope) signs PAE(payloadType, payload), so a signature over a plan can
never be replayed as an approval: the type is part of what is signed. Envelopes are stored and
logged as their JSON dict form: {"payload": b64, "payloadType": ..., "signatures": [{keyid, sig}]}.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from securesystemslib import exceptions as sslib_errors
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signer, SSlibKey

from fleetgate.errors import UsageError

PLAN = "application/vnd.fleetgate.plan.v1+json"
APPROVAL = "application/vnd.fleetgate.approval.v1+json"
PRINCIPAL = "application/vnd.fleetgate.principal.v1+json"
CONFIG = "application/vnd.fleetgate.config.v1+json"
RUN = "application/vnd.fleetgate.export-run.v1+json"
BASIS = "application/vnd.fleetgate.basis.v1+json"
SUBJECT_REQUEST = "application/vnd.fleetgate.subject-request.v1+json"
RETENTION = "application/vnd.fleetgate.retention.v1+json"
LEGAL_HOLD = "application/vnd.fleetgate.legal-hold.v1+json"


class EnvelopeError(UsageError):
    """An envelope that does not parse, or is not of the expected type."""


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the one byte form of a statement."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_statement(statement: dict[str, Any], payload_type: str, signer: Signer) -> dict[str, Any]:
    """A DSSE envelope over the canonical statement, signed by `signer`."""
    envelope = Envelope(canonical_json(statement), payload_type, {})
    envelope.sign(signer)
    return envelope.to_dict()


def _parse(envelope: dict[str, Any]) -> Envelope:
    try:
        return Envelope.from_dict(copy.deepcopy(envelope))  # from_dict rewrites the dict it is given
    except (KeyError, TypeError, ValueError, sslib_errors.FormatError) as exc:
        raise EnvelopeError(f"not a signed statement (DSSE envelope): {exc}") from None


def read_statement(envelope: dict[str, Any], payload_type: str) -> dict[str, Any]:
    """The statement inside an envelope of the expected type (signatures not checked here)."""
    parsed = _parse(envelope)
    if parsed.payload_type != payload_type:
        raise EnvelopeError(f"statement type is {parsed.payload_type!r}, expected {payload_type!r}")
    try:
        statement = json.loads(parsed.payload)
    except ValueError:
        raise EnvelopeError("the statement is not JSON") from None
    if not isinstance(statement, dict) or canonical_json(statement) != parsed.payload:
        raise EnvelopeError("the statement is not canonical JSON")
    return statement


def signer_keyids(envelope: dict[str, Any]) -> list[str]:
    return list(_parse(envelope).signatures)


def verifies(envelope: dict[str, Any], key: SSlibKey) -> bool:
    """Whether `key` signed this envelope."""
    try:
        _parse(envelope).verify([key], 1)
    except (sslib_errors.VerificationError, ValueError, EnvelopeError):
        return False
    return True
