"""`Principals`: the people of a region, their login credentials, and the settings admins sign.

People sign with their own keys (`fleetgate.people`); this service adds what the HTTP API needs to
know who is calling: API tokens (`fleetgate principals token NAME`) and dashboard passwords, each
issued by a statement signed by an admin (or by the person themselves) and logged whole, stored as
an argon2id hash. A token is `fgt_<region>_<id>_<secret>`: the id finds the row, the secret is checked
against the hash. Checking argon2 costs tens of milliseconds by design, so a verified token is
remembered in memory (by its SHA-256) for `web.token_cache_seconds`; revoking a token or removing
its principal takes effect within that time. After that the row is read again (one query); argon2 runs
again only if the stored hash changed, so a busy client never waits for it twice. A server that follows
the log (`fleetgate serve`) also forgets every verified token as soon as a `credential` or `principal`
entry is appended by anyone (`forget_verified`), so a revocation from the CLI holds at the next request.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from securesystemslib.signer import SSlibKey

from fleetgate.audit.log import digest, region_log
from fleetgate.domain import CredentialStatement, Principal, Role
from fleetgate.errors import NotFoundError, UsageError
from fleetgate.gate import sign_config
from fleetgate.gate.trust import decision_settings
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.people import PrincipalError, add_principal, current_state, list_principals, remove_principal
from fleetgate.services.base import Service
from fleetgate.store import CredentialRepository, PrincipalRepository

TOKEN = re.compile(r"^fgt_([a-z][a-z0-9-]{1,62})_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")
MIN_PASSWORD = 12


@dataclass(frozen=True)
class Authenticated:
    """Who is calling, as their credential and the principals table say (the gate re-checks against the log)."""

    name: str
    role: Role
    keyid: str
    region: str
    credential_id: str
    via: str  # token | password | oidc


@dataclass(frozen=True)
class Issued:
    credential_id: str
    secret: str | None  # the token, shown once; None for a password
    log_index: int


class Principals(Service):
    """People, credentials and signed settings of the workspace's regions."""

    hasher = PasswordHasher()  # argon2id, the library's defaults (RFC 9106 low-memory profile)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verified: dict[str, tuple[float, Authenticated, int]] = {}  # digest -> (until, who, epoch)
        self._epoch = 0  # moved by forget_verified: a check that began before it is not remembered
        self._people_seen: dict[str, int] = {}  # region -> last credential or principal entry seen by `follow`
        self._hashes: dict[str, str] = {}  # token digest -> the argon2 hash its secret was verified against
        self._flights: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # -- people --------------------------------------------------------------------------------------
    def add(self, name: str, role: Role, public_key: SSlibKey, admin: Actor, region: str | None = None) -> Principal:
        return add_principal(self.region(region), name, role, public_key, admin, self.clock)

    def remove(self, name: str, admin: Actor, region: str | None = None) -> Principal:
        return remove_principal(self.region(region), name, admin, self.clock)

    def list(self, region: str | None = None, include_removed: bool = False) -> list[Principal]:
        return list_principals(self.region(region), include_removed)

    # -- signed settings -----------------------------------------------------------------------------
    def sign_config(self, admin: Actor, region: str | None = None) -> int:
        return sign_config(self.ws, self.region_name(region), admin, self.clock)

    def config_status(self, region: str | None = None) -> dict[str, Any]:
        name = self.region_name(region)
        settings = decision_settings(self.ws, name)
        signed = current_state(self.region(name)).config
        signed_settings = signed[1].settings if signed else {}
        return {"region": name, "settings": settings, "signed_in_entry": signed[0] if signed else None,
                "signed_by": signed[1].by if signed else None, "signed_settings": signed_settings,
                "differs": sorted(k for k in settings.keys() | signed_settings.keys()
                                  if settings.get(k) != signed_settings.get(k))}

    # -- credentials -----------------------------------------------------------------------------------
    def issue_token(self, name: str, issuer: Actor, region: str | None = None) -> Issued:
        """A new API token for `name`, issued by an admin or by `name` themselves; the secret is shown once."""
        region_name = self.region_name(region)
        suffix, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        token = f"fgt_{region_name}_{suffix}_{secret}"
        index = self._issue(region_name, f"tok-{suffix}", "token", name, self.hasher.hash(secret), issuer)
        return Issued(f"tok-{suffix}", token, index)

    def set_password(self, name: str, password: str, issuer: Actor, region: str | None = None) -> Issued:
        """A dashboard password for `name` (earlier passwords are revoked in the same step)."""
        if len(password) < MIN_PASSWORD:
            raise UsageError(f"password: at least {MIN_PASSWORD} characters")
        region_name = self.region_name(region)
        repo = CredentialRepository(self.region(region_name).catalog)
        for old in repo.passwords_of(name):
            self.revoke(old["id"], issuer, region_name)
        suffix = secrets.token_hex(8)
        index = self._issue(region_name, f"pwd-{suffix}", "password", name, self.hasher.hash(password), issuer)
        return Issued(f"pwd-{suffix}", None, index)

    def revoke(self, credential_id: str, issuer: Actor, region: str | None = None) -> int:
        region_name = self.region_name(region)
        reg = self.region(region_name)
        row = CredentialRepository(reg.catalog).get(credential_id)
        if row is None:
            raise NotFoundError(f"no credential {credential_id}")
        statement = CredentialStatement(action="revoke", region=region_name, credential_id=credential_id,
                                        kind=row["kind"], name=row["name"], keyid=row["keyid"], by=issuer.name,
                                        at=self.clock.now())
        index = self._log(reg, statement, issuer, lambda conn, i: CredentialRepository(reg.catalog).mark_revoked(
            conn, credential_id, i, issuer.name))
        with self._lock:
            gone = {k for k, v in self._verified.items() if v[1].credential_id == credential_id}
            self._verified = {k: v for k, v in self._verified.items() if k not in gone}
            self._hashes = {k: v for k, v in self._hashes.items() if k not in gone}
        return index

    def credentials(self, region: str | None = None) -> list[dict[str, Any]]:
        rows = CredentialRepository(self.region(region).catalog).all()
        return [{k: v for k, v in r.items() if k != "hash"} for r in rows]

    def _issue(self, region: str, credential_id: str, kind: str, name: str, hashed: str, issuer: Actor) -> int:
        reg = self.region(region)
        state = current_state(reg)
        principal = state.active(name)
        if principal is None:
            raise PrincipalError(f"{name} is not a registered principal of region {region}")
        statement = CredentialStatement(action="issue", region=region, credential_id=credential_id, kind=kind,
                                        name=name, keyid=principal.keyid, hash_digest=digest(hashed.encode()),
                                        by=issuer.name, at=self.clock.now())
        row = {"id": credential_id, "kind": kind, "keyid": principal.keyid, "name": name, "hash": hashed,
               "issued_by": issuer.name}
        return self._log(reg, statement, issuer,
                         lambda conn, i: CredentialRepository(reg.catalog).insert(conn, {**row, "issued_index": i}))

    def _log(self, reg: Any, statement: CredentialStatement, issuer: Actor, write: Any) -> int:
        state = current_state(reg)
        if issuer.keyid != getattr(state.active(issuer.name), "keyid", None):
            raise PrincipalError(f"the key given is not {issuer.name}'s registered key")
        envelope = env.sign_statement(statement.model_dump(mode="json"), env.CREDENTIAL, issuer.signer)
        reason = state.check_credential(state.size, statement, envelope)
        if reason:
            raise PrincipalError(f"credential {statement.action} for {statement.name}: {reason}")
        with reg.catalog.transaction() as conn:
            index, _ = region_log(reg).append(conn, "credential", {"statement": envelope}, at=statement.at)
            write(conn, index)
        return index

    # -- authentication --------------------------------------------------------------------------------
    def cached_token(self, token: str) -> Authenticated | None:
        """The principal of a token verified within `web.token_cache_seconds`, without touching the catalog."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._verified.get(key)
            epoch = self._epoch
        return hit[1] if hit is not None and hit[0] > time.monotonic() and hit[2] == epoch else None

    def forget_verified(self) -> None:
        """Check every token's row again at its next use (a credential or a principal changed somewhere); the
        hashes stay known, so this costs one query per token, not argon2."""
        with self._lock:
            self._epoch += 1
            self._verified.clear()

    def follow(self, region: str, people_version: int) -> None:
        """Told the index of the region's last `credential` or `principal` entry (the server reads it on every
        request): when it moved, whoever appended it, every verified token is checked again."""
        if self._people_seen.get(region) == people_version:
            return
        with self._lock:
            moved = self._people_seen.get(region) != people_version
            self._people_seen[region] = people_version
        if moved:
            self.forget_verified()

    @staticmethod
    def token_region(token: str) -> str | None:
        """The region a token says it belongs to (unchecked: `authenticate_token` checks it)."""
        match = TOKEN.match(token)
        return match.group(1) if match else None

    def refresh_due(self, token: str) -> bool:
        """Whether a remembered token is in the last fifth of its cache time: looked up again now (while it is
        still answered from memory), a busy client never finds it expired and waits for the lookup."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._verified.get(key)
        ttl = self.ws.config.web.token_cache_seconds
        return hit is not None and hit[0] - time.monotonic() < ttl / 5

    def authenticate_token(self, token: str, refresh: bool = False) -> Authenticated | None:
        """The principal a bearer token belongs to, or None (unknown, revoked, removed, wrong secret); with
        `refresh`, its row is read again even while it is remembered (and it is forgotten if that fails)."""
        match = TOKEN.match(token)
        if match is None or match.group(1) not in self.ws.config.regions:
            return None
        hit = None if refresh else self.cached_token(token)
        if hit is not None:
            return hit
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            flight = self._flights.setdefault(key, threading.Lock())
        # one argon2 check per token at a time: fifty requests arriving together with a new token wait for
        # the first check instead of each paying for one (tens of milliseconds and 64 MiB apiece)
        with flight:
            hit = None if refresh else self.cached_token(token)
            if hit is not None:
                return hit
            with self._lock:
                epoch = self._epoch
            region, suffix, secret = match.groups()
            who, hashed = self._check(region, f"tok-{suffix}", secret, "token", self._hashes.get(key))
            with self._lock:
                self._flights.pop(key, None)
                if who is None:
                    self._verified.pop(key, None)
                else:
                    if len(self._verified) > 10_000:
                        self._verified.clear()
                        self._hashes.clear()
                    self._verified[key] = (time.monotonic() + self.ws.config.web.token_cache_seconds, who, epoch)
                    self._hashes[key] = hashed
        return who

    def authenticate_password(self, name: str, password: str, region: str | None = None) -> Authenticated | None:
        region_name = self.region_name(region)
        rows = CredentialRepository(self.region(region_name).catalog).passwords_of(name)
        for row in rows:
            who, _ = self._check(region_name, row["id"], password, "password")
            if who is not None:
                return who
        if not rows:  # the same argon2 work for a name without a password: the reply time names no one
            try:
                self.hasher.verify(_unknown_name_hash(), password)
            except (VerificationError, InvalidHashError):
                pass
        return None

    def by_name(self, name: str, region: str | None = None, via: str = "oidc") -> Authenticated | None:
        """The active principal called `name` (an identity provider vouched for the name)."""
        region_name = self.region_name(region)
        for row in PrincipalRepository(self.region(region_name).catalog).all():
            if row["name"] == name and row["removed_index"] is None:
                return Authenticated(row["name"], Role(row["role"]), row["keyid"], region_name, f"oidc:{name}", via)
        return None

    def _check(self, region: str, credential_id: str, secret: str, via: str,
               verified_hash: str | None = None) -> tuple[Authenticated | None, str]:
        """The credential's live row checked again (revoked? principal removed?); argon2 runs only when this
        secret was not verified against this very hash before (so a cache refresh costs one query)."""
        row = CredentialRepository(self.region(region).catalog).with_principal(credential_id)
        if row is None or row["revoked_index"] is not None or row["principal_removed"] is not None:
            return None, ""
        if verified_hash is None or not secrets.compare_digest(verified_hash, row["hash"]):
            try:
                self.hasher.verify(row["hash"], secret)
            except (VerificationError, InvalidHashError):
                return None, ""
        return Authenticated(row["name"], Role(row["role"]), row["keyid"], region, credential_id, via), row["hash"]


@functools.cache
def _unknown_name_hash() -> str:
    """An argon2 hash of nothing anyone knows, made with the hasher's own parameters."""
    return Principals.hasher.hash(secrets.token_urlsafe(32))
