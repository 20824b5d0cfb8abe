"""Policy inside a workspace: which packs a region applies, its exporter facts, and its ledger."""

from __future__ import annotations

from fleetgate.policy.decide import Decision, PolicyEngine
from fleetgate.policy.packs import Pack, default_packs_for, jurisdiction_of, load_packs
from fleetgate.policy.request import DecisionRequest, Exporter, Ytd
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace
from fleetgate.workspace.config import RegionConfig


def pack_ids_for(ws: Workspace, region: str | None = None) -> list[str]:
    """The region's own list, else [policy].packs for Chinese regions, else the jurisdiction's defaults."""
    cfg = ws.config.region(region)
    if cfg.packs is not None:
        return list(cfg.packs)
    if jurisdiction_of(cfg.country) == "CN":
        return list(ws.config.packs)
    return default_packs_for(cfg.country)


def packs_for(ws: Workspace, region: str | None = None) -> list[Pack]:
    return load_packs(pack_ids_for(ws, region))


def exporter_of(cfg: RegionConfig) -> Exporter:
    """The exporter facts a region's config states (CIIO, zone, surveying approval)."""
    return Exporter(ciio=cfg.ciio, zone=cfg.zone, surveying_approval=cfg.surveying_approval)


def ledger_ytd(ws: Workspace, region: str | None, year: int) -> Ytd:
    """Distinct people the region's exporter has exported this year, from the ledger."""
    cfg = ws.config.region(region)
    counts = Ledger(ws.region(cfg.name).catalog).counts(cfg.exporter_id, year)
    return Ytd(pi_subjects=counts["pi"], spi_subjects=counts["spi"])


def decide_in_workspace(ws: Workspace, request: DecisionRequest, region: str | None = None,
                        packs: list[Pack] | None = None) -> Decision:
    """Decide with the region's packs; a request without ytd reads it from the region's ledger."""
    engine = PolicyEngine(packs if packs is not None else packs_for(ws, region))
    ytd = request.ytd if request.ytd is not None else ledger_ytd(ws, region, request.as_of.year)
    return engine.decide(request, ytd)


