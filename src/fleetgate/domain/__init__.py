"""Typed domain objects shared by the gate, the log and the interfaces: people, statements, plans.

Every model forbids unknown fields, so a statement or plan with an extra or misspelled key is
refused instead of half-read.
"""

from fleetgate.domain.models import (
    ApprovalScope,
    ApprovalStatement,
    BasisStatement,
    Blocked,
    ConfigStatement,
    CredentialStatement,
    Destination,
    HoldStatement,
    IdentifierKind,
    LegalBasisRecord,
    OutcomeSummary,
    Plan,
    PlanItem,
    PlanStatement,
    Principal,
    PrincipalStatement,
    RetentionStatement,
    Role,
    RunStatement,
    SignedPlan,
    SubjectRequestStatement,
    Ytd,
)

__all__ = ["ApprovalScope", "ApprovalStatement", "BasisStatement", "Blocked", "ConfigStatement", "CredentialStatement",
           "Destination", "HoldStatement", "IdentifierKind", "LegalBasisRecord", "OutcomeSummary", "Plan", "PlanItem",
           "PlanStatement", "Principal", "PrincipalStatement", "RetentionStatement", "Role", "RunStatement",
           "SignedPlan", "SubjectRequestStatement", "Ytd"]
