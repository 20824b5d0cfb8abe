"""The rule packs themselves: lint, test, show, and what-if decisions with or without a workspace.

Packs are files, not workspace state, so these need no `Workspace`; a what-if decision inside a
workspace reads the region's packs, switches and ledger through `Classifier.decide`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from fleetgate.policy import builtin_pack_ids, load_pack, load_packs
from fleetgate.policy.decide import Decision, PolicyEngine
from fleetgate.policy.lint import CaseResult, Finding, lint_packs, run_pack_tests
from fleetgate.policy.packs import DEFAULT_PACKS_BY_JURISDICTION, Pack, apply_switches
from fleetgate.policy.request import DecisionRequest
from fleetgate.policy.service import decide_in_workspace, packs_for
from fleetgate.workspace import Workspace
from fleetgate.workspace.config import CONFIG_FILE


def lint(refs: Sequence[str] | None = None) -> tuple[list[str], list[Finding]]:
    """The packs linted (every shipped pack by default) and what lint found."""
    chosen = list(refs or builtin_pack_ids())
    return chosen, lint_packs(chosen)


def test(refs: Sequence[str] | None = None) -> list[CaseResult]:
    """The scenario tests embedded in each pack (every shipped pack by default), run."""
    return run_pack_tests(list(refs or builtin_pack_ids()))


def show(ref: str) -> Pack:
    return load_pack(ref)


def decide(home: Path, request: DecisionRequest, region: str | None = None, pack_refs: Sequence[str] | None = None,
           switches: Mapping[str, bool] | None = None) -> Decision:
    """A what-if decision: in the workspace at `home` if there is one (its region's packs and ledger),
    else against the CN defaults with the year-to-date counts only from the request. Nothing is recorded."""
    overrides = dict(switches or {})
    if (home / CONFIG_FILE).exists():
        with Workspace.open(home) as ws:
            packs = load_packs(list(pack_refs)) if pack_refs else packs_for(ws, region)
            return decide_in_workspace(ws, request, region, apply_switches(packs, overrides, "--switch"))
    packs = load_packs(list(pack_refs or DEFAULT_PACKS_BY_JURISDICTION["CN"]))
    return PolicyEngine(apply_switches(packs, overrides, "--switch")).decide(request)
