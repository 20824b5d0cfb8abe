"""Dashboard login through an OpenID Connect identity provider: authorization code flow with PKCE.

The ID token is checked with PyJWT against the provider's JWKS (signature, issuer, audience, expiry)
and must carry the nonce this login sent; its `web.oidc.claim` (default `preferred_username`) names
the principal. OIDC says who is logged in, never that they approved anything: approvals still carry
the person's own signature.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from fleetgate.workspace.config import OidcConfig

TIMEOUT = 10.0
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"]
_discovery: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks: dict[str, jwt.PyJWKClient] = {}
_lock = threading.Lock()


class OidcError(Exception):
    """A login through the identity provider that did not complete (the message is safe to show)."""


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OidcLogin:
    def __init__(self, cfg: OidcConfig) -> None:
        if not (cfg.issuer and cfg.client_id):
            raise OidcError("OIDC login is not configured (web.oidc.issuer and web.oidc.client_id)")
        self.cfg = cfg

    def metadata(self) -> dict[str, Any]:
        issuer = self.cfg.issuer.rstrip("/")
        with _lock:
            cached = _discovery.get(issuer)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            doc = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the identity provider's discovery document is unreachable ({type(exc).__name__})") \
                from None
        if doc.get("issuer", "").rstrip("/") != issuer:
            raise OidcError("the identity provider names another issuer than web.oidc.issuer")
        with _lock:
            _discovery[issuer] = (time.monotonic() + 300, doc)
        return doc

    def start(self, session: dict[str, Any], redirect_uri: str) -> str:
        """The provider's authorization URL; state, nonce and the PKCE verifier stay in the session."""
        meta = self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        session.update(oidc_state=state, oidc_nonce=nonce, oidc_verifier=verifier)
        query = {"response_type": "code", "client_id": self.cfg.client_id, "redirect_uri": redirect_uri,
                 "scope": self.cfg.scopes, "state": state, "nonce": nonce, "code_challenge": _s256(verifier),
                 "code_challenge_method": "S256"}
        return f"{meta['authorization_endpoint']}?{urlencode(query)}"

    def finish(self, session: dict[str, Any], code: str, state: str, redirect_uri: str) -> str:
        """The principal's name from a verified ID token, after the code exchange."""
        expected = session.pop("oidc_state", None)
        nonce, verifier = session.pop("oidc_nonce", None), session.pop("oidc_verifier", None)
        if not expected or not secrets.compare_digest(expected, state or ""):
            raise OidcError("the login's state does not match; start again")
        meta = self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": self.cfg.client_id, "code_verifier": verifier}
        auth = (self.cfg.client_id, self.cfg.client_secret) if self.cfg.client_secret else None
        try:
            reply = httpx.post(meta["token_endpoint"], data=form, auth=auth, timeout=TIMEOUT).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the identity provider refused the code exchange ({type(exc).__name__})") from None
        token = reply.get("id_token")
        if not isinstance(token, str):
            raise OidcError("the identity provider sent no ID token")
        claims = self._verify(token, meta)
        if not nonce or claims.get("nonce") != nonce:
            raise OidcError("the ID token's nonce does not match this login")
        name = claims.get(self.cfg.claim)
        if not isinstance(name, str) or not name:
            raise OidcError(f"the ID token has no {self.cfg.claim!r} claim")
        return name

    def _verify(self, token: str, meta: dict[str, Any]) -> dict[str, Any]:
        uri = meta["jwks_uri"]
        with _lock:
            client = _jwks.setdefault(uri, jwt.PyJWKClient(uri, cache_keys=True, timeout=int(TIMEOUT)))
        try:
            key = client.get_signing_key_from_jwt(token)
            return jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=self.cfg.client_id,
                              issuer=meta["issuer"], options={"require": ["exp", "iat", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token does not verify ({type(exc).__name__})") from None
