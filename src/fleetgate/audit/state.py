"""What the log says is true: the state a region's log builds when its entries are replayed in order.

Replaying checks every signed statement against the people registered at that point of the log:
a principal added by an admin who was registered then, a plan signed by an engineer, an approval
signed by a compliance officer who is not the plan's author, for a plan whose signed digest was
logged before it. A statement that fails is kept out of the state and recorded as a problem, so
the gate ignores it and `audit verify` reports it. The state never trusts a catalog row.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Connection

from fleetgate.audit.facts import (
    FACT_ENTRY_TYPES,
    FACT_KEYS,
    KEYING,
    WRITE_ONCE,
    LoggedFact,
    differing_fields,
    fact_digest,
)
from fleetgate.audit.log import GENESIS, LogError, TransparencyLog, VerifyReport, canonical
from fleetgate.domain import (
    ApprovalStatement,
    BasisStatement,
    ConfigStatement,
    CredentialStatement,
    HoldStatement,
    PlanStatement,
    Principal,
    PrincipalStatement,
    RetentionStatement,
    Role,
    RunStatement,
    SubjectRequestStatement,
)
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import KeyFileError, public_key_from_pem

_S = TypeVar("_S", bound=BaseModel)


def approval_id(envelope: dict[str, Any]) -> str:
    """An approval's id: a hash of its signed envelope, so the same signature is the same approval."""
    return "appr-" + hashlib.sha256(canonical(envelope)).hexdigest()[:20]


def request_id(envelope: dict[str, Any]) -> str:
    """A data-subject request's id: a hash of its signed envelope."""
    return "dsr-" + hashlib.sha256(canonical(envelope)).hexdigest()[:20]


# Who may sign which data-subject request: seeing and copying a person's data is for compliance
# officers and auditors, erasing it for compliance officers only.
REQUEST_ROLES = {"find": {Role.compliance, Role.auditor}, "export": {Role.compliance, Role.auditor},
                 "erase": {Role.compliance}}
ERASED_TABLES = ("assets", "quarantine", "classifications")


@dataclass(frozen=True)
class Problem:
    """An entry the replay could not accept (a bad signature, an unknown signer, a conflicting fact)."""

    index: int
    what: str


@dataclass
class LoggedDecision:
    index: int
    statement: PlanStatement
    envelope: dict[str, Any]
    author_keyid: str


@dataclass
class LoggedApproval:
    index: int
    approval_id: str
    statement: ApprovalStatement
    envelope: dict[str, Any]
    keyid: str
    at: str


@dataclass
class LoggedExport:
    index: int
    entry: dict[str, Any]
    text: str


@dataclass
class LoggedRequest:
    index: int
    request_id: str
    statement: SubjectRequestStatement
    keyid: str


@dataclass
class LoggedErasure:
    """An erasure (of a person, or by retention): what it removed, and when its destruction finished."""

    index: int
    erasure_id: str
    entry: dict[str, Any]
    done_index: int | None = None
    destroyed_keys: list[str] = field(default_factory=list)


@dataclass
class LoggedHold:
    index: int
    statement: HoldStatement
    released_index: int | None = None
    released_by: str | None = None


@dataclass
class LoggedCredential:
    """An API token or dashboard password, as its signed issuance (and revocation) logged it."""

    index: int
    statement: CredentialStatement
    revoked_index: int | None = None
    revoked_by: str | None = None


@dataclass
class LogState:
    """Everything the log vouches for, after replaying entries 0..size-1."""

    region: str
    size: int = 0
    genesis: dict[str, Any] | None = None
    facts: dict[str, dict[str, LoggedFact]] = field(default_factory=lambda: {table: {} for table in FACT_KEYS})
    principals: dict[str, Principal] = field(default_factory=dict)  # by key id
    decisions: dict[str, LoggedDecision] = field(default_factory=dict)  # by plan id
    approvals: dict[str, LoggedApproval] = field(default_factory=dict)  # valid approvals by id
    exports: dict[str, LoggedExport] = field(default_factory=dict)  # by package id
    published: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    config: tuple[int, ConfigStatement] | None = None
    requests: dict[str, LoggedRequest] = field(default_factory=dict)  # data-subject requests by id
    erasures: dict[str, LoggedErasure] = field(default_factory=dict)  # by erasure id
    # rows an erasure removed, by table and id -> the erasure's log index (until a new fact re-adds one)
    erased: dict[str, dict[str, int]] = field(default_factory=lambda: {t: {} for t in ERASED_TABLES})
    # per package, the ledger rows as the latest erasure left them: (index, {category: {count, digest}})
    ledger_after_erasure: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    holds: dict[str, LoggedHold] = field(default_factory=dict)  # by hold id
    bases: dict[str, tuple[int, BasisStatement]] = field(default_factory=dict)  # the latest valid one per plan
    credentials: dict[str, LoggedCredential] = field(default_factory=dict)  # by credential id
    problems: list[Problem] = field(default_factory=list)
    # reads entry `index` back (set by `replay`): facts are kept as digests and read again when a row differs
    entry_at: Callable[[int], dict[str, Any] | None] | None = field(default=None, repr=False, compare=False)

    # -- queries the gate asks --------------------------------------------------------------------
    def active(self, name: str, index: int | None = None) -> Principal | None:
        """The principal called `name` registered at log position `index` (default: now)."""
        at = self.size if index is None else index
        for p in self.principals.values():
            if p.name == name and p.active_at(at):
                return p
        return None

    def approvals_for(self, plan_id: str) -> list[LoggedApproval]:
        return sorted((a for a in self.approvals.values() if a.statement.plan_id == plan_id), key=lambda a: a.index)

    def export_for_plan(self, plan_id: str) -> LoggedExport | None:
        return next((e for e in self.exports.values() if e.entry.get("plan_id") == plan_id), None)

    def held_assets(self) -> dict[str, str]:
        """Asset id -> hold id, for every hold in force."""
        return {a: hid for hid, h in self.holds.items() if h.released_index is None for a in h.statement.asset_ids}

    def pending_erasures(self) -> list[LoggedErasure]:
        return [e for e in self.erasures.values() if e.done_index is None]

    # -- replay -----------------------------------------------------------------------------------
    def apply(self, index: int, entry: dict[str, Any], text: str | None = None) -> None:
        """Apply entry `index` (already checked by the log's own verification)."""
        self.size = index + 1
        kind = entry.get("type")
        if kind not in _STATEFUL:  # model updates, de-id runs, key uses: nothing the gate relies on
            return
        if kind in FACT_ENTRY_TYPES:
            self._facts(index, entry)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, index, entry, text)

    def _problem(self, index: int, what: str) -> None:
        self.problems.append(Problem(index, what))

    def _facts(self, index: int, entry: dict[str, Any]) -> None:
        for table, rows in (entry.get("facts") or {}).items():
            if table not in FACT_KEYS or not isinstance(rows, list):
                self._problem(index, f"facts for an unknown table {table!r}")
                continue
            known = self.facts[table]
            for fact in rows:
                key = fact.get(FACT_KEYS[table]) if isinstance(fact, dict) else None
                if not isinstance(key, str):
                    self._problem(index, f"{table}: a fact without its {FACT_KEYS[table]}")
                    continue
                keying = KEYING if fact.get("keying") == KEYING else fact.get("keying")  # one str for a million
                earlier, logged = known.get(key), LoggedFact(index, keying, fact_digest(fact) or b"")
                if table in WRITE_ONCE and earlier is not None and earlier.digest != logged.digest:
                    self._second_fact(index, table, key, fact, earlier)
                    continue
                known[key] = logged
                self.erased.get(table, {}).pop(key, None)  # a fact after an erasure: the row is back

    def _second_fact(self, index: int, table: str, key: str, fact: dict[str, Any], earlier: LoggedFact) -> None:
        first = self.read_fact(table, key, earlier)
        if first == fact:  # the same values, written differently (an integer as 1.0): the same fact
            return
        fields = differing_fields(fact, first) if first is not None else []
        self._problem(index, f"{table} {key}: a second, different fact ({', '.join(fields) or '*'}); the first is "
                             f"in entry {earlier.index}")

    def read_fact(self, table: str, key: str, logged: LoggedFact) -> dict[str, Any] | None:
        """The fact for row `key` of `table` as its entry logged it (the state keeps only its digest);
        None when the entry, read again, no longer holds a fact with that digest (changed since)."""
        entry = self.entry_at(logged.index) if self.entry_at is not None else None
        rows = ((entry or {}).get("facts") or {}).get(table)
        for fact in rows if isinstance(rows, list) else []:  # an entry may hold an id twice: the one kept
            if isinstance(fact, dict) and fact.get(FACT_KEYS[table]) == key and fact_digest(fact) == logged.digest:
                return fact
        return None

    def _signed_by(self, envelope: dict[str, Any], name: str, index: int, roles: set[Role]) -> Principal | str:
        """The principal called `name`, active at `index` with one of `roles`, who signed `envelope`;
        or the reason there is none."""
        principal = self.active(name, index)
        if principal is None:
            return f"{name} is not a registered principal at this point of the log"
        if principal.role not in roles:
            return f"{name} has role {principal.role.value}, not {' or '.join(sorted(r.value for r in roles))}"
        if not env.verifies(envelope, public_key_from_pem(principal.public_key.encode())):
            return f"the signature does not verify with {name}'s registered key"
        return principal

    def _statement(self, index: int, envelope: dict[str, Any], model: type[_S], payload_type: str,
                   what: str) -> _S | None:
        """The typed statement inside an envelope, or None (and a problem) when it does not parse."""
        try:
            return model.model_validate(env.read_statement(envelope, payload_type))
        except (env.EnvelopeError, ValidationError) as exc:
            self._problem(index, f"{what} statement: {_short(exc)}")
            return None

    def _principal(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        envelope = entry.get("statement") or {}
        st = self._statement(index, envelope, PrincipalStatement, env.PRINCIPAL, "principal")
        if st is None:
            return
        if st.region != self.region:
            self._problem(index, f"principal statement for region {st.region}, not {self.region}")
            return
        reason = self.check_principal(index, st, envelope)
        if reason:
            self._problem(index, f"principal {st.action} of {st.name}: {reason}; ignored")
            return
        if st.action == "add":
            self.principals[st.keyid] = Principal(name=st.name, role=st.role, keyid=st.keyid,
                                                  public_key=st.public_key, added_index=index, added_by=st.by)
        else:
            old = self.principals[st.keyid]
            self.principals[st.keyid] = old.model_copy(update={"removed_index": index, "removed_by": st.by})

    def check_principal(self, index: int, st: PrincipalStatement, envelope: dict[str, Any]) -> str | None:
        bootstrap = not self.principals
        if st.action == "add":
            if st.role is None or st.public_key is None:
                return "an addition names a role and a public key"
            try:
                key = public_key_from_pem(st.public_key.encode())
            except KeyFileError as exc:
                return exc.message
            if key.keyid != st.keyid:
                return "the key id does not match the public key"
            if st.keyid in self.principals:
                return "this key is already registered (a removed key is never reused)"
            if self.active(st.name, index + 1) is not None:
                return f"{st.name} is already registered"
            if bootstrap:
                # the first admin of a region vouches for themselves; the witness and auditors pin it
                if st.role is not Role.admin or st.by != st.name or not env.verifies(envelope, key):
                    return "the first principal of a region is an admin who signs their own registration"
                return None
        elif st.keyid not in self.principals or not self.principals[st.keyid].active_at(index) \
                or self.principals[st.keyid].name != st.name:
            return "no such registered principal"
        signer = self._signed_by(envelope, st.by, index, {Role.admin})
        return signer if isinstance(signer, str) else None

    def _decision(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        envelope = entry.get("statement") or {}
        st = self._statement(index, envelope, PlanStatement, env.PLAN, "plan")
        if st is None:
            return
        if st.plan_id != entry.get("plan_id") or st.region != self.region:
            self._problem(index, f"plan statement of {st.plan_id}: names another plan or region")
            return
        signer = self._signed_by(envelope, st.author, index, {Role.engineer})
        if isinstance(signer, str):
            self._problem(index, f"plan {st.plan_id}: {signer}; ignored")
            return
        if st.plan_id in self.decisions:
            self._problem(index, f"plan {st.plan_id}: decided before, in entry {self.decisions[st.plan_id].index}; "
                                 "the first decision stands")
            return
        self.decisions[st.plan_id] = LoggedDecision(index, st, envelope, signer.keyid)

    def _approval(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        envelope = entry.get("statement") or {}
        st = self._statement(index, envelope, ApprovalStatement, env.APPROVAL, "approval")
        if st is None:
            return
        aid = approval_id(envelope)
        reason = self.check_approval(index, st, envelope, aid, entry)
        if isinstance(reason, str):
            self._problem(index, f"approval {aid} of {st.plan_id} by {st.approver}: {reason}; ignored")
            return
        self.approvals[aid] = LoggedApproval(index, aid, st, envelope, reason.keyid, entry.get("at", ""))

    def check_approval(self, index: int, st: ApprovalStatement, envelope: dict[str, Any], aid: str,
                        entry: dict[str, Any]) -> Principal | str:
        if entry.get("approval_id") != aid:
            return "the entry's approval id is not the hash of its statement"
        if aid in self.approvals:
            return "the same signed approval was logged before"
        decision = self.decisions.get(st.plan_id)
        if decision is None or decision.index >= index:
            return "no signed decision for this plan was logged before it"
        plan = decision.statement
        if (st.plan_digest, st.decision_index, st.region) != (plan.plan_digest, decision.index, plan.region):
            return "it approves another version of the plan"
        if (st.destination_country, st.exporter, st.purpose, st.packs) != \
                (plan.destination.country, plan.exporter, plan.purpose, plan.packs):
            return "its destination, exporter, purpose or packs differ from the logged decision"
        if not set(st.kinds) <= set(plan.approval_scope.kinds) or \
                not set(st.outcomes) <= set(plan.approval_scope.outcomes):
            return "it covers kinds or outcomes the plan does not ask approval for"
        if st.valid_until < st.valid_from:
            return "it ends before it starts"
        signer = self._signed_by(envelope, st.approver, index, {Role.compliance})
        if isinstance(signer, str):
            return signer
        if signer.keyid == decision.author_keyid or signer.name == plan.author:
            return "the plan's author may not approve it (separation of duties)"
        return signer

    def _export(self, index: int, entry: dict[str, Any], text: str | None) -> None:
        package = entry.get("package_id")
        envelope = entry.get("run") or {}
        st = self._statement(index, envelope, RunStatement, env.RUN, f"export {package}: run")
        if st is not None:
            signer = self._signed_by(envelope, st.by, index, {Role.engineer})
            decision = self.decisions.get(st.plan_id)
            if isinstance(signer, str):
                self._problem(index, f"export {package}: {signer}")
            elif (st.package_id, st.plan_id) != (package, entry.get("plan_id")) or decision is None \
                    or decision.statement.plan_digest != st.plan_digest:
                self._problem(index, f"export {package}: the run statement names another plan or package")
        for aid in entry.get("approvals") or []:
            if aid not in self.approvals or self.approvals[aid].statement.plan_id != entry.get("plan_id"):
                self._problem(index, f"export {package}: relies on approval {aid}, which is not a valid approval "
                                     "of its plan")
        self.exports[package] = LoggedExport(index, entry, text if text is not None else canonical(entry).decode())

    def _publish(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        package = entry.get("package_id")
        if package not in self.exports:
            self._problem(index, f"publication of {package}, which was never exported")
            return
        self.published[package] = (index, entry)

    def _config(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        envelope = entry.get("statement") or {}
        st = self._statement(index, envelope, ConfigStatement, env.CONFIG, "config")
        if st is None:
            return
        signer = self._signed_by(envelope, st.by, index, {Role.admin})
        if isinstance(signer, str) or st.region != self.region:
            self._problem(index, f"config statement by {st.by}: {signer if isinstance(signer, str) else 'region'}; "
                                 "ignored")
            return
        self.config = (index, st)

    # -- data-subject rights ---------------------------------------------------------------------
    def _subject_request(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        envelope = entry.get("statement") or {}
        st = self._statement(index, envelope, SubjectRequestStatement, env.SUBJECT_REQUEST, "subject request")
        if st is None:
            return
        rid = request_id(envelope)
        if entry.get("request_id") != rid or st.region != self.region:
            self._problem(index, f"subject request {rid}: names another request or region; ignored")
            return
        signer = self._signed_by(envelope, st.by, index, REQUEST_ROLES[st.action])
        if isinstance(signer, str):
            self._problem(index, f"subject request {rid} ({st.action}) by {st.by}: {signer}; ignored")
            return
        self.requests[rid] = LoggedRequest(index, rid, st, signer.keyid)

    def _erasure_cause(self, index: int, eid: str, cause: dict[str, Any]) -> str | None:
        """Why an erasure's cause does not hold up, or None: a logged erase request (one erasure each), or a
        signed retention order."""
        if cause.get("type") == "subject":
            rid = cause.get("request_id") or ""
            request = self.requests.get(rid)
            if request is None or request.statement.action != "erase" or request.statement.dry_run:
                return "no logged erase request of a compliance officer is its cause"
            if eid != "er-" + rid.removeprefix("dsr-"):
                return "its id is not the one its request gives (one erasure per request)"
            return None
        if cause.get("type") == "retention":
            envelope = cause.get("statement") or {}
            try:
                st = RetentionStatement.model_validate(env.read_statement(envelope, env.RETENTION))
            except (env.EnvelopeError, ValidationError) as exc:
                return f"retention statement: {_short(exc)}"
            if st.dry_run or st.region != self.region:
                return "the retention statement is a preview or for another region"
            signer = self._signed_by(envelope, st.by, index, {Role.compliance})
            return signer if isinstance(signer, str) else None
        return f"unknown cause {cause.get('type')!r}"

    def _erasure(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        eid = str(entry.get("erasure_id"))
        reason = self._erasure_cause(index, eid, entry.get("cause") or {})
        if reason is None and eid in self.erasures:
            reason = "an erasure with this id was logged before"
        if reason is not None:
            # not applied: the rows it removed stay "missing from the catalog" findings
            self._problem(index, f"erasure {eid}: {reason}; ignored")
            return
        self._facts(index, entry)  # the tables it rewrote, without the person's rows
        for table in ("assets", "quarantine"):
            for row_id in entry.get(table) or []:
                self.facts[table].pop(row_id, None)
                self.erased[table][row_id] = index
                if table == "assets":
                    self.facts["classifications"].pop(row_id, None)
                    self.erased["classifications"][row_id] = index
        for package, rows in (entry.get("ledger") or {}).items():
            self.ledger_after_erasure[package] = (index, rows)
        self.erasures[eid] = LoggedErasure(index, eid, entry)

    def _erasure_done(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        erasure = self.erasures.get(str(entry.get("erasure_id")))
        if erasure is None or erasure.done_index is not None:
            self._problem(index, f"erasure {entry.get('erasure_id')}: finished without a logged start, or twice")
            return
        erasure.done_index = index
        erasure.destroyed_keys = list(entry.get("keys_destroyed") or [])

    def _legal_hold(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        envelope = entry.get("statement") or {}
        st = self._statement(index, envelope, HoldStatement, env.LEGAL_HOLD, "legal hold")
        if st is None:
            return
        signer = self._signed_by(envelope, st.by, index, {Role.compliance})
        held = self.holds.get(st.hold_id)
        if isinstance(signer, str) or st.region != self.region:
            reason = signer if isinstance(signer, str) else "another region"
        elif st.action == "place" and held is not None:
            reason = "a hold with this id exists"
        elif st.action == "release" and (held is None or held.released_index is not None):
            reason = "no such hold in force"
        else:
            reason = None
        if reason is not None:
            self._problem(index, f"legal hold {st.hold_id} ({st.action}) by {st.by}: {reason}; ignored")
        elif st.action == "place":
            self.holds[st.hold_id] = LoggedHold(index, st)
        else:
            held.released_index, held.released_by = index, st.by

    def _basis(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        envelope = entry.get("statement") or {}
        st = self._statement(index, envelope, BasisStatement, env.BASIS, "legal basis")
        if st is None:
            return
        decision = self.decisions.get(st.plan_id)
        signer = self._signed_by(envelope, st.by, index, {Role.compliance})
        if isinstance(signer, str) or decision is None or decision.statement.plan_digest != st.plan_digest \
                or st.region != self.region:
            why = signer if isinstance(signer, str) else "it names a plan the log has no signed decision for"
            self._problem(index, f"legal basis of {st.plan_id} by {st.by}: {why}; ignored")
            return
        self.bases[st.plan_id] = (index, st)
    def _credential(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        envelope = entry.get("statement") or {}
        try:
            st = CredentialStatement.model_validate(env.read_statement(envelope, env.CREDENTIAL))
        except (env.EnvelopeError, ValidationError) as exc:
            self._problem(index, f"credential statement: {_short(exc)}")
            return
        reason = self.check_credential(index, st, envelope)
        if reason:
            self._problem(index, f"credential {st.action} of {st.credential_id} for {st.name}: {reason}; ignored")
            return
        if st.action == "issue":
            self.credentials[st.credential_id] = LoggedCredential(index, st)
        else:
            old = self.credentials[st.credential_id]
            self.credentials[st.credential_id] = LoggedCredential(old.index, old.statement, index, st.by)

    def check_credential(self, index: int, st: CredentialStatement, envelope: dict[str, Any]) -> str | None:
        """Why a credential statement may not stand at log position `index` (None: it may)."""
        if st.region != self.region:
            return f"for region {st.region}, not {self.region}"
        principal = self.principals.get(st.keyid)
        if principal is None or principal.name != st.name or not principal.active_at(index):
            return "no such registered principal"
        if st.credential_id.startswith("tok-") != (st.kind == "token"):
            return "the credential id does not match its kind"
        if st.action == "issue":
            if st.credential_id in self.credentials:
                return "this credential id was issued before"
            if st.hash_digest is None:
                return "an issuance names the digest of its hash"
        elif st.credential_id not in self.credentials or self.credentials[st.credential_id].revoked_index is not None:
            return "no such live credential"
        # an admin issues credentials for anyone; a person may issue their own, signing with their own key
        roles = set(Role) if st.by == st.name else {Role.admin}
        signer = self._signed_by(envelope, st.by, index, roles)
        return signer if isinstance(signer, str) else None

    def _genesis(self, index: int, entry: dict[str, Any], _text: str | None) -> None:
        if index != 0:
            self._problem(index, "a second log_open entry")
            return
        self.genesis = entry


_HANDLERS: dict[str, Callable[[LogState, int, dict[str, Any], str | None], None]] = {
    GENESIS: LogState._genesis,
    "principal": LogState._principal,
    "decision": LogState._decision,
    "approval": LogState._approval,
    "export": LogState._export,
    "publish": LogState._publish,
    "config": LogState._config,
    "subject_request": LogState._subject_request,
    "erasure": LogState._erasure,
    "erasure_done": LogState._erasure_done,
    "legal_hold": LogState._legal_hold,
    "basis": LogState._basis,
    "credential": LogState._credential,
}

_STATEFUL = frozenset(_HANDLERS) | frozenset(FACT_ENTRY_TYPES)


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


def replay(log: TransparencyLog, region: str, conn: Connection | None = None) -> tuple[LogState, VerifyReport]:
    """Verify the log (leaves, chain, checkpoints) and replay it into its state in the same pass."""
    state = LogState(region, entry_at=_entry_reader(log, conn))
    report = log.verify(on_entry=state.apply, conn=conn)
    return state, report


def _entry_reader(log: TransparencyLog, conn: Connection | None) -> Callable[[int], dict[str, Any] | None]:
    """Entry `index` of the log, parsed; in `conn`'s snapshot when given. The last few are kept,
    as the rows that differ from their facts (an edit of many rows) tend to share entries."""

    @functools.lru_cache(maxsize=8)
    def read(index: int) -> dict[str, Any] | None:
        try:
            entry = orjson.loads(log.entry_text(index, conn) if conn is not None else log.repo.entry_text(index) or "")
        except (LogError, ValueError):  # parsed as the replay parsed it (orjson), or not at all
            return None
        return entry if isinstance(entry, dict) else None

    return read
