"""Policy inside a workspace: which packs a region applies, its exporter facts, and its ledger."""

from __future__ import annotations

from fleetgate.errors import ConfigError
from fleetgate.policy.decide import Decision, PolicyEngine
from fleetgate.policy.packs import Pack, apply_switches, default_packs_for, jurisdiction_of, load_packs
from fleetgate.policy.request import DecisionRequest, Exporter, ListRenewal, Ytd
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace
from fleetgate.workspace.config import CONFIG_FILE, RegionConfig


def pack_ids_for(ws: Workspace, region: str | None = None) -> list[str]:
    """The region's own list, else [policy].packs for Chinese regions, else the jurisdiction's defaults."""
    cfg = ws.config.region(region)
    if cfg.packs is not None:
        return list(cfg.packs)
    if jurisdiction_of(cfg.country) == "CN":
        return list(ws.config.packs)
    return default_packs_for(cfg.country)


def packs_for(ws: Workspace, region: str | None = None) -> list[Pack]:
    """The region's packs with the switch values of [policy].switches, so every engine built on them agrees.

    A switch only other regions' packs declare leaves this region alone; one no region's packs
    declare is a configuration error.
    """
    declared = {name: pack for r in ws.config.regions for pack in load_packs(pack_ids_for(ws, r))
                for name in pack.switches}
    unknown = sorted(set(ws.config.switches) - set(declared))
    if unknown:
        raise ConfigError(f"{ws.home / CONFIG_FILE}: policy.switches.{unknown[0]}: no pack of any region declares "
                          "this switch (`fleetgate policy show PACK` lists a pack's switches)")
    packs = load_packs(pack_ids_for(ws, region))
    mine = {name for p in packs for name in p.switches}
    return apply_switches(packs, {k: v for k, v in ws.config.switches.items() if k in mine})


def exporter_of(cfg: RegionConfig) -> Exporter:
    """The exporter facts a region's config states (CIIO, zone, surveying approval, Lingang list renewal,
    people whose PI it processes)."""
    renewal = cfg.lingang_list_renewal
    return Exporter(ciio=cfg.ciio, zone=cfg.zone, surveying_approval=cfg.surveying_approval,
                    lingang_list_renewal=ListRenewal(renewal.ref, renewal.until) if renewal else None,
                    processed_pi_subjects=cfg.processed_pi_subjects)


def ledger_ytd(ws: Workspace, region: str | None, year: int) -> Ytd:
    """Distinct people the region's exporter has exported this year and the year before, from the ledger."""
    cfg = ws.config.region(region)
    ledger = Ledger(ws.region(cfg.name).catalog)
    counts, prev = ledger.counts(cfg.exporter_id, year), ledger.counts(cfg.exporter_id, year - 1)
    return Ytd(pi_subjects=counts["pi"], spi_subjects=counts["spi"],
               prev_pi_subjects=prev["pi"], prev_spi_subjects=prev["spi"])


def decide_in_workspace(ws: Workspace, request: DecisionRequest, region: str | None = None,
                        packs: list[Pack] | None = None) -> Decision:
    """Decide with the region's packs; a request without ytd reads it from the region's ledger."""
    engine = PolicyEngine(packs if packs is not None else packs_for(ws, region))
    ytd = request.ytd if request.ytd is not None else ledger_ytd(ws, region, request.as_of.year)
    return engine.decide(request, ytd)
