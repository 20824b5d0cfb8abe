"""Signed statements: a canonical JSON payload in a DSSE envelope, signed by one or more people.

DSSE (the in-toto/Sigstore envelope) signs PAE(payloadType, payload), so a signature over a plan can
never be replayed as an approval: the type is part of what is signed. Envelopes are stored and
logged as their JSON dict form: {"payload": b64, "payloadType": ..., "signatures": [{keyid, sig}]}.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

from securesystemslib import exceptions as sslib_errors
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signature, Signer, SSlibKey

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


CREDENTIAL = "application/vnd.fleetgate.credential.v1+json"

# The payload type of each statement type: what `fleetgate sign` and the server agree on.
PAYLOAD_TYPES = {
    "fleetgate/plan/v1": PLAN,
    "fleetgate/approval/v1": APPROVAL,
    "fleetgate/principal/v1": PRINCIPAL,
    "fleetgate/config/v1": CONFIG,
    "fleetgate/export-run/v1": RUN,
    "fleetgate/basis/v1": BASIS,
    "fleetgate/credential/v1": CREDENTIAL,
    "fleetgate/subject-request/v1": SUBJECT_REQUEST,
}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the exact bytes a signer signs."""
    return Envelope(payload, payload_type, {}).pae()


def signing_request(statement: dict[str, Any], payload_type: str) -> dict[str, Any]:
    """What a person needs to sign a statement elsewhere: the canonical payload and the PAE bytes."""
    payload = canonical_json(statement)
    encoded = pae(payload_type, payload)
    return {"payload_type": payload_type, "payload": payload.decode("utf-8"),
            "pae_base64": base64.b64encode(encoded).decode("ascii"),
            "pae_sha256": hashlib.sha256(encoded).hexdigest()}


def sign_offline(statement: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """`fleetgate sign`: a DSSE envelope over a statement the server showed, with the payload type its
    `type` names; the private key never leaves the signer's machine."""
    kind = statement.get("type")
    if kind not in PAYLOAD_TYPES:
        raise EnvelopeError(f"statement type {kind!r} is not one fleetgate signs ({', '.join(PAYLOAD_TYPES)})")
    return sign_statement(statement, PAYLOAD_TYPES[kind], signer)


class StatementMismatch(EnvelopeError):
    """A signature over another statement than the one the gate makes now."""


class PresignedSigner(Signer):
    """A signature its owner made on their own machine, over one exact statement, standing in for
    their key: it "signs" that statement only (the gate builds the statement itself, and must arrive at
    the very bytes that were signed), and only if the signature verifies with the registered key."""

    def __init__(self, envelope: dict[str, Any], public_key: SSlibKey, payload_type: str) -> None:
        parsed = _parse(envelope)
        if parsed.payload_type != payload_type:
            raise EnvelopeError(f"statement type is {parsed.payload_type!r}, expected {payload_type!r}")
        signature = parsed.signatures.get(public_key.keyid)
        if signature is None:
            raise EnvelopeError("the envelope holds no signature by the signer's registered key")
        try:
            public_key.verify_signature(signature, parsed.pae())
        except sslib_errors.UnverifiedSignatureError:
            raise EnvelopeError("the signature does not verify with the signer's registered key") from None
        self._key = public_key
        self._pae = parsed.pae()
        self._signature = signature

    @property
    def public_key(self) -> SSlibKey:
        return self._key

    def sign(self, payload: bytes) -> Signature:
        if payload != self._pae:
            raise StatementMismatch("the signed statement is not the one the gate makes now (the catalog, the log "
                                    "or a setting changed since it was prepared, or a field was edited); prepare it "
                                    "again and sign that")
        return self._signature

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Any, secrets_handler: Any = None) -> Signer:
        raise NotImplementedError("a presigned statement has no private key")


class VerifyOnlySigner(Signer):
    """A registered public key with nothing to sign with: for preparing a statement someone signs elsewhere."""

    def __init__(self, public_key: SSlibKey) -> None:
        self._key = public_key

    @property
    def public_key(self) -> SSlibKey:
        return self._key

    def sign(self, payload: bytes) -> Signature:
        raise EnvelopeError("this statement is signed by its signer on their own machine, not by the server")

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri: str, public_key: Any, secrets_handler: Any = None) -> Signer:
        raise NotImplementedError("a verify-only key has no private key")
