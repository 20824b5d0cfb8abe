"""`Inventory`: what a region holds, for people to browse: assets with their decision, quarantine, ledger."""

from __future__ import annotations

import threading
import time
from typing import Any

from fleetgate.errors import NotFoundError, UsageError
from fleetgate.policy.service import packs_for
from fleetgate.services.base import Service
from fleetgate.services.models import (
    AssetDetail,
    AssetSummary,
    LedgerLine,
    Page,
    QuarantineItem,
    RegionOverview,
    RuleCitation,
)
from fleetgate.store import Browse
from fleetgate.store.changes import ChangeFeed, Changes

RULES_TTL_S = 60.0
MAX_PAGE = 10_000  # the API pages by at most 500
# the classification as `fleetgate explain` shows it
CLASSIFICATION_FIELDS = ("policy_kind", "features", "subjects", "anonymized", "pseudonymized", "evidence", "packs",
                         "classified_at")
MEDIA_KINDS = {"exterior_video", "exterior_image", "cabin_video"}
# The yearly thresholds of the Cross-Border Data Flow Provisions 2024 (the packs decide with them:
# cn-xborder-2024 XB-8.PI, XB-7B.PI, XB-7B.SPI); the overview draws the ledger against them.
THRESHOLDS = {"pi": [(100_000, "STANDARD_CONTRACT_OR_CERT", "Art 8"), (1_000_000, "SECURITY_ASSESSMENT", "Art 7(2)")],
              "spi": [(10_000, "SECURITY_ASSESSMENT", "Art 7(2)")]}


def _page_args(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit: between 1 and {MAX_PAGE}")
    if offset < 0:
        raise UsageError("offset: 0 or more")
    return limit, offset


class Inventory(Service):
    """Read-only views of a region's catalog."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rules_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._feeds: dict[str, ChangeFeed] = {}
        self._feeds_lock = threading.Lock()

    def assets(self, *, region: str | None = None, kind: str | None = None, vehicle: str | None = None,
               outcome: str | None = None, drop: str | None = None, limit: int = 50,
               offset: int = 0) -> Page[AssetSummary]:
        limit, offset = _page_args(limit, offset)
        name = self.region_name(region)
        total, rows = Browse(self.region(name).catalog).assets(region=name, kind=kind, vehicle=vehicle,
                                                                outcome=outcome, drop=drop, limit=limit, offset=offset)
        return Page[AssetSummary](total=total, offset=offset, limit=limit,
                                  items=[AssetSummary.model_validate(r) for r in rows])

    def asset(self, asset_id: str, region: str | None = None) -> AssetDetail:
        """One asset: its decision and why (rules with their citations), lineage and derived children."""
        name = self.region_name(region)
        browse = Browse(self.region(name).catalog)
        row = browse.asset(asset_id)
        if row is None:
            raise NotFoundError(f"no asset with id {asset_id!r}")
        stored = row["classification"]
        classification = {k: stored[k] for k in CLASSIFICATION_FIELDS} if stored else None
        decision = stored["decision"] if stored else None
        lineage, parent = [], row["parent_id"]
        while parent and len(lineage) < 16:
            up = browse.asset(parent)
            if up is None:
                break
            lineage.append(self._summary(up))
            parent = up["parent_id"]
        children = [AssetSummary.model_validate(c) for c in browse.children(row["id"])]
        return AssetDetail(asset=self._summary(row), tags=row["tags"] or {}, classification=classification,
                           decision=decision, rules=self._rules(name, (decision or {}).get("rules", [])),
                           lineage=lineage, children=children, media=row["kind"] in MEDIA_KINDS)

    @staticmethod
    def _summary(row: dict[str, Any]) -> AssetSummary:
        fields = {k: row[k] for k in AssetSummary.model_fields if k in row}
        cls = row.get("classification")
        if cls:
            fields |= {"outcome": cls["outcome"], "policy_kind": cls["policy_kind"], "anonymized": cls["anonymized"]}
        return AssetSummary.model_validate(fields)

    def _rules(self, region: str, rule_ids: list[str]) -> list[RuleCitation]:
        by_id = self._rule_index(region)
        out = []
        for rule_id in rule_ids:
            rule = by_id.get(rule_id)
            if rule is None:  # a rule of the gate itself (GATE-RAW-MEDIA, ...)
                out.append(RuleCitation(rule=rule_id))
            else:
                out.append(RuleCitation(rule=rule_id, pack=rule.pack, title=rule.title,
                                        citation=rule.citation.short(), url=rule.citation.url))
        return out

    def rules(self, region: str | None = None) -> dict[str, Any]:
        """The region's rules by id (loaded now if they were not)."""
        return self._rule_index(self.region_name(region))

    def _rule_index(self, region: str) -> dict[str, Any]:
        """The region's rules by id, for titles and citations; loaded at most once a minute (display only:
        decisions always load the packs themselves)."""
        now = time.monotonic()
        cached = self._rules_cache.get(region)
        if cached is None or cached[0] < now:
            cached = (now + RULES_TTL_S, {r.id: r for p in packs_for(self.ws, region) for r in p.rules})
            self._rules_cache[region] = cached
        return cached[1]

    def blob(self, asset_id: str, region: str | None = None) -> tuple[dict[str, Any], bytes]:
        """An asset's row and bytes (for the dashboard's stills; callers check the role first)."""
        name = self.region_name(region)
        row = Browse(self.region(name).catalog).asset(asset_id)
        if row is None:
            raise NotFoundError(f"no asset with id {asset_id!r}")
        return row, self.region(name).blobs.read_bytes(row["sha256"])

    def quarantine(self, *, region: str | None = None, limit: int = 50, offset: int = 0) -> Page[QuarantineItem]:
        limit, offset = _page_args(limit, offset)
        name = self.region_name(region)
        total, rows = Browse(self.region(name).catalog).quarantine(region=name, limit=limit, offset=offset)
        return Page[QuarantineItem](total=total, offset=offset, limit=limit,
                                    items=[QuarantineItem.model_validate(r) for r in rows])

    def overview(self, region: str | None = None) -> RegionOverview:
        """A region at a glance: inventory, outcomes, quarantine, the ledger against the thresholds."""
        name = self.region_name(region)
        reg = self.region(name)
        browse = Browse(reg.catalog)
        inventory = reg.catalog.stats(name)
        quarantined, _ = browse.quarantine(region=name, limit=1, offset=0)
        return RegionOverview(
            name=name, country=reg.country, assets=sum(r["assets"] for r in inventory),
            bytes=sum(int(r["bytes"] or 0) for r in inventory), quarantined=quarantined, inventory=inventory,
            outcomes=browse.outcomes(name), ledger=self.ledger(name), log_size=browse.log_size(),
            exports=browse.export_count())

    def ledger(self, region: str | None = None) -> list[LedgerLine]:
        out = []
        for row in Browse(self.region(region).catalog).ledger_years():
            steps = THRESHOLDS.get(row["category"], [])
            above = [s for s in steps if row["subjects"] < s[0]] or steps[-1:]
            if above:
                limit, outcome, _ = above[0]
                out.append(LedgerLine(**row, threshold=limit, threshold_outcome=outcome))
        return out

    def runs(self, region: str | None = None) -> list[dict[str, Any]]:
        """Ingest runs, newest first."""
        return self.region(region).catalog.list_runs()

    def version(self, region: str | None = None) -> int:
        """A number that changes whenever any fact of the region does (its log's last index)."""
        return Browse(self.region(region).catalog).version()

    def changes(self, region: str | None = None) -> Changes:
        """What the region's catalog holds as of now: a count of the commits seen and each log entry type's
        last index (cheap: see `store.changes`), for views kept while what they show has not changed."""
        name = self.region_name(region)
        feed = self._feeds.get(name)
        if feed is None:
            with self._feeds_lock:
                feed = self._feeds.setdefault(name, ChangeFeed(self.region(name).catalog))
        return feed.poll()

    def close(self) -> None:
        with self._feeds_lock:
            for feed in self._feeds.values():
                feed.close()
            self._feeds.clear()

    def regions(self) -> list[dict[str, str]]:
        return [{"name": r.name, "country": r.country} for r in self.ws.config.regions.values()]
