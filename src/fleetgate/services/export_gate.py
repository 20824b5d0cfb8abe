"""`ExportGate`: plan, approve and run exports, from the CLI (a person's key on this machine) or over
HTTP (the person signs elsewhere; the server never holds their key).

Over HTTP each signed step has two halves. First the service runs the gate's own statement builder
(`draft_plan`, `approval_statement`, `prepare_run`: every check, nothing signed or logged) and
returns the statement with the exact bytes to sign. The person signs them with their own key
(`fleetgate sign`) and sends the DSSE envelope back. Then the service runs the very function the
CLI runs (`make_plan`, `approve_plan`, `run_export`) with the signed instant as its clock and a
signer that holds only that signature: the gate rebuilds the statement itself, and the signature
counts only if the gate arrives at the same bytes and it verifies with the person's registered
key. A plan whose assets changed, an approval for another version of a plan, an edited field or a
stale statement are refused by the same code and the same log replay as on the command line.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from fleetgate.domain import ApprovalStatement, BasisStatement, Plan, PlanStatement, RunStatement, SignedPlan
from fleetgate.domain.clock import FixedClock
from fleetgate.errors import NotFoundError, UsageError
from fleetgate.gate import approve_plan, list_exports, make_plan, record_basis, run_export
from fleetgate.gate.approvals import approval_statement
from fleetgate.gate.basis import basis_statement
from fleetgate.gate.plan import draft_plan
from fleetgate.gate.run import ExportResult, package_id_of, prepare_run
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.services.base import Service
from fleetgate.services.models import ApprovalResult, PlanView, RunResult, SigningRequest
from fleetgate.store import GateRecords, PlanRepository

CLOCK_SKEW = dt.timedelta(minutes=1)


class SignatureRefused(UsageError):
    """A signed statement that does not belong to this request (another signer, stale, another plan)."""


class ExportGate(Service):
    # -- the CLI: the person's key is on this machine ---------------------------------------------------
    def plan(self, destination: str, author: Actor, select: str | None = None, purpose: str = "",
             region: str | None = None, as_of: dt.date | None = None) -> SignedPlan:
        return make_plan(self.ws, destination, author, select, purpose, region, as_of, self.clock)

    def approve(self, signed: SignedPlan, ref: str, valid_until: dt.date, approver: Actor,
                kinds: list[str] | None = None, max_subjects: int | None = None) -> ApprovalResult:
        return _approval_result(approve_plan(self.ws, signed, ref, valid_until, approver, kinds, max_subjects,
                                             self.clock))

    def basis(self, signed: SignedPlan, basis_type: str, basis_ref: str, pipia_ref: str,
              officer: Actor) -> tuple[int, BasisStatement]:
        return record_basis(self.ws, signed, basis_type, basis_ref, pipia_ref, officer, self.clock)

    def run(self, signed: SignedPlan, runner: Actor,
            on_progress: Callable[[int, int], None] | None = None) -> ExportResult:
        return run_export(self.ws, signed, runner, self.clock, on_progress)

    def exports(self, region: str | None = None) -> list[dict[str, Any]]:
        return list_exports(self.ws, region)

    # -- HTTP: the person signs elsewhere --------------------------------------------------------------
    def draft(self, destination: str, author: str, select: str | None = None, purpose: str = "",
              region: str | None = None, as_of: dt.date | None = None) -> PlanView:
        """Decide a plan for `author` to sign; kept as a draft (the decision is logged once it is signed)."""
        name = self.region_name(region)
        plan, statement = draft_plan(self.ws, destination, self._verify_only(author, name), select, purpose, name,
                                     as_of, self.clock)
        PlanRepository(self.region(name).catalog).save_draft({
            "plan_id": statement.plan_id, "author": author, "destination": destination,
            "body": plan.model_dump_json(), "statement": _canonical(statement), "created_at": plan.created_at})
        return self.view(statement.plan_id, name)

    def sign_plan(self, plan_id: str, envelope: dict[str, Any], author: str, region: str | None = None) -> PlanView:
        """The author's signature over a draft: the gate decides the plan again as of the draft's instant and
        logs it only if it is the very plan that was signed."""
        name = self.region_name(region)
        repo = PlanRepository(self.region(name).catalog)
        row = self._row(plan_id, name)
        if row["status"] == "signed":
            raise UsageError(f"plan {plan_id} is already signed (log entry {row['log_index']})")
        plan = Plan.model_validate_json(row["body"])
        statement = self._statement(envelope, env.PLAN, PlanStatement)
        self._belongs(statement.author, author, statement.at, "plan")
        if statement.plan_id != plan_id:
            raise SignatureRefused(f"the signed statement is for plan {statement.plan_id}, not {plan_id}")
        signer = self._presigned(author, name, envelope, env.PLAN)

        def record(conn: Any, index: int, signed: SignedPlan) -> None:
            repo.mark_signed(conn, plan_id, signed.model_dump_json(), row["statement"], index)

        make_plan(self.ws, plan.destination.name, signer, plan.select or None, plan.purpose, name, plan.as_of,
                  FixedClock(plan.created_at), also=record)
        return self.view(plan_id, name)

    def approval_request(self, plan_id: str, approver: str, ref: str, valid_until: dt.date,
                         kinds: list[str] | None = None, max_subjects: int | None = None,
                         region: str | None = None) -> SigningRequest:
        """The approval statement `approver` may sign for this plan now (every check of `approve` made)."""
        name = self.region_name(region)
        statement, _ = approval_statement(self.ws, self.signed_plan(plan_id, name), ref, valid_until,
                                          self._verify_only(approver, name), kinds, max_subjects, self.clock)
        return self._request(statement, env.APPROVAL)

    def submit_approval(self, plan_id: str, envelope: dict[str, Any], approver: str,
                        region: str | None = None) -> ApprovalResult:
        name = self.region_name(region)
        st = self._statement(envelope, env.APPROVAL, ApprovalStatement)
        self._belongs(st.approver, approver, st.at, "approval")
        if st.plan_id != plan_id:
            raise SignatureRefused(f"the signed approval is for plan {st.plan_id}, not {plan_id}")
        logged = approve_plan(self.ws, self.signed_plan(plan_id, name), st.ref, st.valid_until,
                              self._presigned(approver, name, envelope, env.APPROVAL), st.kinds, st.max_subjects,
                              FixedClock(st.at))
        return _approval_result(logged)

    def basis_request(self, plan_id: str, officer: str, basis_type: str, basis_ref: str, pipia_ref: str,
                      region: str | None = None) -> SigningRequest:
        """The legal-basis statement `officer` may sign for this plan now (every check of `basis` made)."""
        name = self.region_name(region)
        statement = basis_statement(self.ws, self.signed_plan(plan_id, name), basis_type, basis_ref, pipia_ref,
                                    self._verify_only(officer, name), self.clock)
        return self._request(statement, env.BASIS)

    def submit_basis(self, plan_id: str, envelope: dict[str, Any], officer: str,
                     region: str | None = None) -> dict[str, Any]:
        name = self.region_name(region)
        st = self._statement(envelope, env.BASIS, BasisStatement)
        self._belongs(st.by, officer, st.at, "legal basis")
        if st.plan_id != plan_id:
            raise SignatureRefused(f"the signed legal basis is for plan {st.plan_id}, not {plan_id}")
        index, recorded = record_basis(self.ws, self.signed_plan(plan_id, name), st.legal_basis.type,
                                       st.legal_basis.ref, st.pipia_ref,
                                       self._presigned(officer, name, envelope, env.BASIS), FixedClock(st.at))
        return {"plan_id": plan_id, "log_index": index, "legal_basis": recorded.legal_basis.model_dump(),
                "pipia_ref": recorded.pipia_ref, "by": recorded.by}

    def run_request(self, plan_id: str, runner: str, region: str | None = None) -> SigningRequest:
        name = self.region_name(region)
        statement = prepare_run(self.ws, self.signed_plan(plan_id, name), self._verify_only(runner, name),
                                self.clock)
        return self._request(statement, env.RUN)

    def submit_run(self, plan_id: str, envelope: dict[str, Any], runner: str, region: str | None = None) -> RunResult:
        name = self.region_name(region)
        st = self._statement(envelope, env.RUN, RunStatement)
        self._belongs(st.by, runner, st.at, "run")
        if st.plan_id != plan_id:
            raise SignatureRefused(f"the signed run is for plan {st.plan_id}, not {plan_id}")
        result = run_export(self.ws, self.signed_plan(plan_id, name), self._presigned(runner, name, envelope, env.RUN),
                            FixedClock(st.at))
        return RunResult(package_id=result.package_id, status=result.status, exported=len(result.exported),
                         held=len(result.held), bytes=result.bytes, log_index=result.log_index,
                         ledger_delta=result.ledger_delta, approvals=result.approvals)

    # -- reading ---------------------------------------------------------------------------------------
    def plans(self, region: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        return PlanRepository(self.region(region).catalog).page(limit, offset)

    def view(self, plan_id: str, region: str | None = None) -> PlanView:
        name = self.region_name(region)
        row = self._row(plan_id, name)
        records = GateRecords(self.region(name).catalog)
        if row["status"] == "signed":
            body = SignedPlan.model_validate_json(row["body"]).plan.model_dump(mode="json")
            sign = None
        else:
            body = json.loads(row["body"])
            sign = self._request(PlanStatement.model_validate_json(row["statement"]), env.PLAN)
        approvals = [{k: a[k] for k in ("id", "approver", "ref", "kinds", "outcomes", "max_subjects", "valid_from",
                                        "valid_until", "log_index")} for a in records.approvals(plan_id)]
        export = records.export(package_id_of(plan_id))
        if export is not None:
            export = {k: export[k] for k in ("package_id", "status", "log_index", "bytes", "ledger_delta",
                                             "published_at")} | {"assets": len(export["assets"])}
        return PlanView(plan_id=plan_id, status=row["status"], author=row["author"], destination=row["destination"],
                        created_at=row["created_at"], log_index=row["log_index"], plan=body, sign=sign,
                        approvals=approvals, export=export)

    def signed_plan(self, plan_id: str, region: str | None = None) -> SignedPlan:
        row = self._row(plan_id, self.region_name(region))
        if row["status"] != "signed":
            raise UsageError(f"plan {plan_id} is a draft: its author signs it first")
        return SignedPlan.model_validate_json(row["body"])

    # -- helpers ---------------------------------------------------------------------------------------
    def _row(self, plan_id: str, region: str) -> dict[str, Any]:
        row = PlanRepository(self.region(region).catalog).get(plan_id)
        if row is None:
            raise NotFoundError(f"no plan {plan_id} in region {region}")
        return row

    def _verify_only(self, name: str, region: str) -> Actor:
        return Actor(name, env.VerifyOnlySigner(self.registered_key(name, region)))

    def _presigned(self, name: str, region: str, envelope: dict[str, Any], payload_type: str) -> Actor:
        return Actor(name, env.PresignedSigner(envelope, self.registered_key(name, region), payload_type))

    def _request(self, statement: Any, payload_type: str) -> SigningRequest:
        doc = statement.model_dump(mode="json")
        expires = statement.at + dt.timedelta(minutes=self.ws.config.web.signed_statement_minutes)
        return SigningRequest(statement=doc, **env.signing_request(doc, payload_type), expires_at=expires)

    @staticmethod
    def _statement(envelope: dict[str, Any], payload_type: str, model: Any) -> Any:
        try:
            return model.model_validate(env.read_statement(envelope, payload_type))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise SignatureRefused(f"signed statement: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") \
                from None

    def _belongs(self, signer: str, caller: str, at: dt.datetime, what: str) -> None:
        if signer != caller:
            raise SignatureRefused(f"the {what} statement is signed for {signer}, and you are {caller}")
        now = self.clock.now()
        window = dt.timedelta(minutes=self.ws.config.web.signed_statement_minutes)
        if at > now + CLOCK_SKEW:
            raise SignatureRefused(f"the {what} statement is dated in the future ({at.isoformat()})")
        if at < now - window:
            raise SignatureRefused(f"the {what} statement was prepared more than {window} ago; prepare it again")


def _canonical(statement: Any) -> str:
    return env.canonical_json(statement.model_dump(mode="json")).decode("utf-8")


def _approval_result(logged: Any) -> ApprovalResult:
    st = logged.statement
    return ApprovalResult(approval_id=logged.approval_id, plan_id=st.plan_id, approver=st.approver, ref=st.ref,
                          kinds=st.kinds, max_subjects=st.max_subjects, valid_until=st.valid_until,
                          log_index=logged.index)
