"""`fleetgate export basis`: a compliance officer records the legal basis and PIPIA of a plan's personal data.

Personal information leaves only with a legal basis (a separate consent, contract necessity, …)
and the reference of a PI protection impact assessment (PIPL Arts 13, 39, 55, 56; the 2024
Provisions Art 10 keeps them even under an exemption). The packs give such an item a blocking
obligation until both are recorded; this is where they are recorded: a signed statement over the
plan's logged digest, logged whole. `export run` passes the latest one to every item it decides.
"""

from __future__ import annotations

from fleetgate.audit.log import region_log
from fleetgate.domain import BasisStatement, LegalBasisRecord, Role, SignedPlan
from fleetgate.domain.clock import Clock
from fleetgate.errors import UsageError
from fleetgate.gate.plan import logged_decision
from fleetgate.gate.trust import trusted_state
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.people import require
from fleetgate.policy.vocabulary import LEGAL_BASES
from fleetgate.workspace import Workspace


def basis_statement(ws: Workspace, signed: SignedPlan, basis_type: str, basis_ref: str, pipia_ref: str,
                    officer: Actor, clock: Clock | None = None) -> BasisStatement:
    """The statement `officer` may sign for `signed` now, after every check; nothing is signed or logged
    (the HTTP API shows it to the officer, who signs it with their own key elsewhere)."""
    if basis_type not in LEGAL_BASES:
        raise UsageError(f"--legal-basis: {basis_type!r} is not a legal basis ({', '.join(sorted(LEGAL_BASES))})")
    if not basis_ref.strip() or not pipia_ref.strip():
        raise UsageError("--legal-basis TYPE:REF and --pipia REF: both references are required")
    state = trusted_state(ws, signed.plan.region)
    decision = logged_decision(state, signed)
    require(state, officer, {Role.compliance}, "recording a legal basis")
    basis = LegalBasisRecord(type=basis_type, ref=basis_ref.strip())
    return BasisStatement(plan_id=signed.plan_id, plan_digest=decision.statement.plan_digest,
                          region=signed.plan.region, legal_basis=basis, pipia_ref=pipia_ref.strip(), by=officer.name,
                          at=(clock or Clock()).now())


def record_basis(ws: Workspace, signed: SignedPlan, basis_type: str, basis_ref: str, pipia_ref: str,
                 officer: Actor, clock: Clock | None = None) -> tuple[int, BasisStatement]:
    """Sign and log the legal basis and PIPIA of `signed`'s personal information as `officer`."""
    statement = basis_statement(ws, signed, basis_type, basis_ref, pipia_ref, officer, clock)
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.BASIS, officer.signer)
    reg = ws.region(signed.plan.region)
    with reg.catalog.transaction() as conn:
        index, _ = region_log(reg).append(conn, "basis", {"plan_id": signed.plan_id, "statement": envelope},
                                          at=statement.at)
    return index, statement
