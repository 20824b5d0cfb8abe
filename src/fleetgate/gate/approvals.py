"""`fleetgate export approve`: a compliance officer signs the filing that lets a plan's bound items leave.

An approval is a signed statement (DSSE envelope) over one plan's logged digest, with the decision's
destination country, exporter, purpose and pack hashes, the kinds and outcomes it covers, the volume
(people) and the filing's validity. It goes into the log whole. The approver must hold role
`compliance` and must not be the plan's author; an item whose outcome needs a security assessment
leaves only with as many distinct approvers as `[gate] approvers` asks (two by default). Validity is
capped by the packs (3 years for an assessment or a certificate). LOCAL_ONLY is never covered.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fleetgate.audit.check import approval_row
from fleetgate.audit.log import region_log
from fleetgate.audit.state import LoggedApproval, LogState, approval_id
from fleetgate.domain import ApprovalStatement, PlanItem, Role, SignedPlan
from fleetgate.domain.clock import Clock
from fleetgate.errors import UsageError
from fleetgate.gate.plan import logged_decision
from fleetgate.gate.trust import trusted_state
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.people import PrincipalError, require
from fleetgate.policy.packs import approval_term
from fleetgate.policy.service import packs_for
from fleetgate.policy.vocabulary import Outcome
from fleetgate.store import GateRecords
from fleetgate.workspace import Workspace


class ApprovalRefused(UsageError):
    """An approval that may not be given: wrong role, the plan's author, beyond the filing's validity."""


def max_validity_years(ws: Workspace, region: str, outcomes: list[str], granted_on: dt.date) -> int:
    """The shortest term the packs in force on `granted_on` give the outcomes (a security assessment
    approved before 22 March 2024 lasted 2 years, 3 after); 3 years when no pack states one."""
    packs = packs_for(ws, region)
    terms = [approval_term(packs, Outcome(o), granted_on) for o in outcomes]
    years = [t.valid_years for t in terms if t is not None]
    return min(years) if years else 3


def _years_after(day: dt.date, years: int) -> dt.date:
    return day.replace(year=day.year + years, day=28 if (day.month, day.day) == (2, 29) else day.day)


def approval_statement(ws: Workspace, signed: SignedPlan, ref: str, valid_until: dt.date, approver: Actor,
                       kinds: list[str] | None = None, max_subjects: int | None = None,
                       clock: Clock | None = None) -> tuple[ApprovalStatement, LogState]:
    """The approval `approver` may sign for `signed` now, after every check; nothing is signed or logged.

    `approve_plan` signs and logs exactly this statement; the HTTP API shows it to the approver, who
    signs it with their own key elsewhere (the server never holds it) and sends the signature back."""
    region = signed.plan.region
    state = trusted_state(ws, region)
    decision = logged_decision(state, signed)
    plan = decision.statement
    if approver.name == plan.author or approver.keyid == decision.author_keyid:
        raise ApprovalRefused(f"{approver.name} made plan {plan.plan_id} and may not approve it "
                              "(separation of duties)")
    try:
        require(state, approver, {Role.compliance}, "approving an export")
    except PrincipalError as exc:
        raise ApprovalRefused(exc.message) from None
    if not ref.strip():
        raise ApprovalRefused("--ref: the filing number is required")
    scope = plan.approval_scope
    if not scope.kinds:
        raise ApprovalRefused("the plan has no items that need an approval (LOCAL_ONLY items can never be "
                              "approved)")
    kinds = sorted(kinds or scope.kinds)
    if not set(kinds) <= set(scope.kinds):
        raise ApprovalRefused(f"--kinds: {', '.join(sorted(set(kinds) - set(scope.kinds)))} not among the kinds "
                              f"this plan asks approval for ({', '.join(scope.kinds)})")
    now = (clock or Clock()).now()
    today = now.date()
    years = max_validity_years(ws, region, scope.outcomes, today)
    limit = _years_after(today, years)
    if valid_until <= today:
        raise ApprovalRefused(f"--valid-until: {valid_until} is not after today ({today})")
    if valid_until > limit:
        raise ApprovalRefused(f"--valid-until: {valid_until} is beyond the {years}-year validity of "
                              f"{' / '.join(scope.outcomes)} (at most {limit})")
    statement = ApprovalStatement(
        plan_id=plan.plan_id, plan_digest=plan.plan_digest, decision_index=decision.index, region=region,
        destination_country=plan.destination.country, exporter=plan.exporter, purpose=plan.purpose,
        packs=plan.packs, kinds=kinds, outcomes=list(scope.outcomes),
        max_subjects=scope.subjects if max_subjects is None else max_subjects, ref=ref.strip(),
        valid_from=today, valid_until=valid_until, approver=approver.name, at=now)
    return statement, state


def approve_plan(ws: Workspace, signed: SignedPlan, ref: str, valid_until: dt.date, approver: Actor,
                 kinds: list[str] | None = None, max_subjects: int | None = None,
                 clock: Clock | None = None) -> LoggedApproval:
    """Sign and log an approval of `signed`'s approval-bound items as `approver`."""
    statement, state = approval_statement(ws, signed, ref, valid_until, approver, kinds, max_subjects, clock)
    region, now = statement.region, statement.at
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.APPROVAL, approver.signer)
    aid = approval_id(envelope)
    if aid in state.approvals:
        raise ApprovalRefused(f"{approver.name} already gave this very approval (log entry "
                              f"{state.approvals[aid].index})")
    reg = ws.region(region)
    with reg.catalog.transaction() as conn:
        index, _ = region_log(reg).append(conn, "approval", {"approval_id": aid, "statement": envelope}, at=now)
        logged = LoggedApproval(index, aid, statement, envelope, approver.keyid, now.isoformat())
        GateRecords(reg.catalog).add_approval(conn, approval_row(logged))
    return logged


@dataclass
class Cover:
    """Which approvals let an approval-bound item leave."""

    approvals: list[str]


class ApprovalBook:
    """The valid approvals of one plan in force on a day, with the volume each has left in this run."""

    def __init__(self, state: LogState, plan_id: str, on: dt.date, approvers: dict[str, int]) -> None:
        self.approvals = [a for a in state.approvals_for(plan_id)
                          if a.statement.valid_from <= on <= a.statement.valid_until]
        self.remaining = {a.approval_id: a.statement.max_subjects for a in self.approvals}
        self.approvers = approvers

    def cover(self, item: PlanItem) -> Cover | None:
        """The approvals (one per distinct approver, as many as the outcome needs) that cover the item."""
        outcome = Outcome(item.outcome)
        needed = self.approvers.get(outcome.value, 1)
        chosen: dict[str, LoggedApproval] = {}
        for a in self.approvals:
            st = a.statement
            if item.policy_kind in st.kinds and outcome.value in st.outcomes and \
                    self.remaining[a.approval_id] >= item.subjects and st.approver not in chosen:
                chosen[st.approver] = a  # distinct people, not distinct signatures
        if len(chosen) < needed:
            return None
        picked = list(chosen.values())[:needed]
        for a in picked:
            self.remaining[a.approval_id] -= item.subjects
        return Cover([a.approval_id for a in picked])
