"""Data-subject requests: signed by the officer who makes them, logged, and kept with their deadline.

A request names the person by one identifier, which is pseudonymized on arrival; what the
officer signs, and what the log and the `subject_requests` table keep, is an HMAC of that pseudonym
under a random salt of the request. The salt stays in the catalog so the region can tell whether a
later request is about the same person, and is wiped when that person is erased: after that no
request names anyone. Deletion on request is due within 10 working days (2021 Automobile Data
Provisions Art 9); the deadline counts Monday to Friday and knows no public holidays.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any

from fleetgate.audit.log import region_log
from fleetgate.audit.state import REQUEST_ROLES, request_id
from fleetgate.domain import SubjectRequestStatement
from fleetgate.domain.clock import Clock
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.people import current_state, require
from fleetgate.store import Region
from fleetgate.store.subjects_repo import SubjectRecords
from fleetgate.subjects.footprint import DOMAINS, SubjectError, seed_pseudonym

WORKING_DAYS = 10
SALT_BYTES = 16
WHAT = {"find": "finding a person's data", "export": "copying a person's data for them",
        "erase": "erasing a person's data"}


def due_by(received: dt.date, working_days: int = WORKING_DAYS) -> dt.date:
    """The day `working_days` Monday-to-Friday days after `received`."""
    day, left = received, working_days
    while left:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


def ref_digest(ref: str) -> str:
    return "sha256:" + hashlib.sha256(ref.encode("utf-8")).hexdigest()


def _identifier_digest(salt: bytes, kind: str, seed: str) -> str:
    return "hmac:" + hmac.new(salt, f"{kind}\x00{seed}".encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Request:
    """A logged request and the pseudonym of the identifier it asks by (in memory only)."""

    request_id: str
    index: int
    action: str
    kind: str
    seed: str
    domain: str
    ref: str
    received_at: dt.datetime
    dry_run: bool


def check_ref(ref: str) -> str:
    ref = ref.strip()
    if not ref or len(ref) > 128:
        raise SubjectError("--ref: the request's reference (a ticket number), 1 to 128 characters")
    return ref


def same_person(row: dict[str, Any], kind: str, seed: str) -> bool:
    """Whether a stored request asked for this identifier (never true once its salt is wiped)."""
    salt = row["identifier_salt"]
    return salt is not None and row["identifier_kind"] == kind and \
        hmac.compare_digest(_identifier_digest(salt, kind, seed), row["identifier_digest"])


def earlier_request(region: Region, ref: str, kind: str, seed: str, action: str) -> dict[str, Any] | None:
    """A request under this ref, for the same action (and the same person while that can be told)."""
    for row in SubjectRecords(region.catalog).requests(ref=ref):
        if row["action"] == action and not row["dry_run"] and (row["identifier_salt"] is None
                                                               or same_person(row, kind, seed)):
            return row
    return None


def sign_request(region: Region, actor: Actor, action: str, kind: str, value: str, ref: str,
                 dry_run: bool = False, clock: Clock | None = None, salt: bytes | None = None) -> Request:
    """Check the actor, pseudonymize the identifier, and log the signed request."""
    ref = check_ref(ref)
    state = current_state(region)
    principal = require(state, actor, REQUEST_ROLES[action], WHAT[action])
    seed = seed_pseudonym(region.keys.pseudonym_key(), kind, value)
    return log_request(region, actor, principal.name, action, kind, seed, ref, dry_run, clock, salt)


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def request_statement(region: Region, name: str, action: str, kind: str, value: str, ref: str, dry_run: bool,
                      at: dt.datetime, salt: bytes) -> SubjectRequestStatement:
    """The statement `name` signs for this request: what `log_request` builds from the same inputs, so a
    statement prepared for signing elsewhere (over HTTP) is the one the request logs."""
    seed = seed_pseudonym(region.keys.pseudonym_key(), kind, value)
    return _statement(region, name, action, kind, seed, check_ref(ref), dry_run, at, salt)


def _statement(region: Region, name: str, action: str, kind: str, seed: str, ref: str, dry_run: bool,
               at: dt.datetime, salt: bytes) -> SubjectRequestStatement:
    return SubjectRequestStatement(action=action, region=region.name, ref_digest=ref_digest(ref),
                                   identifier_kind=kind, identifier_digest=_identifier_digest(salt, kind, seed),
                                   dry_run=dry_run, by=name, at=at)


def _fresh_salt(region: Region, salt: bytes | None) -> bytes:
    """A new random salt, or the given one if no request used it before: a salt used twice would let the
    log tell that two requests are about the same person."""
    if salt is None:
        return new_salt()
    if len(salt) != SALT_BYTES:
        raise SubjectError(f"salt: {SALT_BYTES} bytes, as the prepared statement gave it")
    if any(row["identifier_salt"] == salt for row in SubjectRecords(region.catalog).requests()):
        raise SubjectError("salt: already used by another request; prepare the statement again")
    return salt


def log_request(region: Region, actor: Actor, name: str, action: str, kind: str, seed: str, ref: str,
                dry_run: bool, clock: Clock | None, salt: bytes | None = None) -> Request:
    now = (clock or Clock()).now()
    salt = _fresh_salt(region, salt)
    statement = _statement(region, name, action, kind, seed, ref, dry_run, now, salt)
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.SUBJECT_REQUEST, actor.signer)
    rid = request_id(envelope)
    with region.catalog.transaction() as conn:
        index, _ = region_log(region).append(conn, "subject_request", {"request_id": rid, "statement": envelope},
                                             at=now)
        SubjectRecords(region.catalog).add_request(conn, {
            "id": rid, "ref": ref, "action": action, "identifier_kind": kind, "identifier_salt": salt,
            "identifier_digest": statement.identifier_digest, "requested_by": name, "dry_run": dry_run,
            "received_at": now, "due_by": due_by(now.date()), "status": "open", "log_index": index, "result": {}})
    return Request(rid, index, action, kind, seed, DOMAINS[kind], ref, now, dry_run)


def finish(region: Region, request: Request, result: dict[str, Any], clock: Clock | None = None) -> None:
    """Close a find, copy or preview request with its counts."""
    with region.catalog.transaction() as conn:
        SubjectRecords(region.catalog).finish_request(conn, request.request_id, result, (clock or Clock()).now())


def open_requests(region: Region, today: dt.date | None = None) -> list[dict[str, Any]]:
    """Requests not yet done, oldest first, with the days left to their deadline (negative: late)."""
    today = today or Clock().today()
    out = []
    for row in SubjectRecords(region.catalog).requests(status="open"):
        out.append({"request_id": row["id"], "ref": row["ref"], "action": row["action"],
                     "identifier": row["identifier_kind"], "by": row["requested_by"],
                     "received": row["received_at"].date().isoformat(), "due_by": row["due_by"].isoformat(),
                     "days_left": (row["due_by"] - today).days})
    return out


def all_requests(region: Region) -> list[dict[str, Any]]:
    return [{"request_id": r["id"], "ref": r["ref"], "action": r["action"], "dry_run": r["dry_run"],
             "identifier": r["identifier_kind"], "by": r["requested_by"], "status": r["status"],
             "received": r["received_at"].isoformat(), "due_by": r["due_by"].isoformat(),
             "finished": r["finished_at"].isoformat() if r["finished_at"] else None, "result": r["result"]}
            for r in SubjectRecords(region.catalog).requests()]
