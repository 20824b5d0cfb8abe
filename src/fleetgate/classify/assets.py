"""`fleetgate classify`: tag every catalog asset with a policy kind, features and subjects, then decide it.

Features come from format and content: tables are scanned for identifiers (pii_scan), GNSS is
checked for precision and sensitive areas (geo), camera and cabin media are assumed to show faces,
plates or voices until the de-identification detectors say otherwise. Subjects are counted per asset
as keyed pseudonyms (the vehicle's VIN links one person's records across tables), stored beside
the classification for the export gate's ledger. Each asset is then decided alone, against the
region's packs and ledger, so `fleetgate explain` can show why.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetgate.audit.facts import Facts
from fleetgate.audit.log import region_log
from fleetgate.classify.geo import SensitiveAreas, is_precise
from fleetgate.classify.pii_scan import read_table_for_scan, scan_table
from fleetgate.domain.clock import Clock, FixedClock
from fleetgate.engine import LocalRunner, Runner, Work
from fleetgate.errors import FleetgateError, UsageError
from fleetgate.keys.region_keys import pseudonym
from fleetgate.policy.decide import Decision, PolicyEngine
from fleetgate.policy.request import DecisionRequest, Exporter, Item, Ytd
from fleetgate.policy.service import exporter_of, ledger_ytd, packs_for
from fleetgate.policy.vocabulary import KINDS
from fleetgate.store import Ledger, Region
from fleetgate.workspace import Workspace

# Ingest kinds without a policy kind stay LOCAL_ONLY as unclassified (clip.json carries a VIN and
# times; labels.json carries face and plate boxes; the drop manifest lists file hashes).
MEDIA_FEATURES = {
    "exterior_video": ["faces", "plates"],  # assumed until the de-identification detectors run
    "exterior_image": ["faces", "plates"],
    "cabin_video": ["faces"],
    "cabin_audio": ["voice"],
}
VEHICLE_LINKED = {"exterior_video", "exterior_image", "cabin_video", "cabin_audio", "can_telemetry",
                  "gnss_trajectory", "fault_codes"}
CLASSIFY_BATCH = 64  # classifications per transaction and per `classify` log entry
TABLE_KINDS = {"owner_record", "after_sales", "charging_session", "procurement", "inventory", "rd_test",
               "used_car", "quality", "production", "logistics", "rd_design"}


@dataclass
class AssetClassification:
    asset_id: str
    policy_kind: str | None
    features: list[str]
    subject_keys: list[str]
    evidence: list[dict[str, Any]]
    anonymized: bool = False
    pseudonymized: bool = False

    def item(self) -> Item:
        return Item(id=self.asset_id, kind=self.policy_kind or "unmapped", features=tuple(self.features),
                    anonymized=self.anonymized, pseudonymized=self.pseudonymized,
                    subjects=len(self.subject_keys))


@dataclass
class ClassifyReport:
    region: str
    classified: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (asset id, error)
    outcomes: dict[str, int] = field(default_factory=dict)
    features: dict[str, int] = field(default_factory=dict)
    packs: dict[str, str] = field(default_factory=dict)


def classify_asset(ws: Workspace, region: str, asset: dict[str, Any], key: bytes,
                   areas: SensitiveAreas) -> AssetClassification:
    """Kind, features and subject keys of one asset, read from its bytes where needed."""
    kind = asset["kind"]
    tags = asset.get("tags") or {}
    policy_kind = kind if kind in KINDS else None
    features: set[str] = set()
    subjects: set[str] = set()
    evidence: list[dict[str, Any]] = []
    blobs = ws.region(region).blobs

    if kind in MEDIA_FEATURES:
        detected = tags.get("detected_features")
        if detected is None:
            features.update(MEDIA_FEATURES[kind])
            evidence.append({"method": "assumed", "features": MEDIA_FEATURES[kind],
                             "why": "camera and cabin media are assumed to show people until detectors run"})
        else:
            features.update(detected)
            evidence.append({"method": "detectors", "features": list(detected)})
    if policy_kind == "gnss_trajectory":
        table = blobs.read_table(asset["sha256"], columns=["lat", "lon"])
        lat = table.column("lat").to_numpy()
        lon = table.column("lon").to_numpy()
        coarsened = tags.get("coordinate_precision_m")
        if coarsened is not None and coarsened >= 50:
            evidence.append({"method": "lineage", "why": f"de-identified: coordinates coarsened to {coarsened:.0f} m"})
        elif is_precise(lat, lon):
            features.add("geo_precise")
            evidence.append({"method": "coordinates", "feature": "geo_precise",
                             "why": "coordinates finer than the 0.0005° public-map grid"})
        for name, inside in areas.hits(lat, lon):
            features.add("sensitive_area")
            evidence.append({"method": "sensitive_areas", "feature": "sensitive_area", "area": name, "points": inside})
    if kind in VEHICLE_LINKED and asset.get("vehicle"):
        features.add("vin")
        subjects.add(pseudonym(key, asset["vehicle"], "vin"))
        evidence.append({"method": "path", "feature": "vin", "why": "stored under the vehicle's VIN"})
    if kind in TABLE_KINDS and asset["file_format"] == "parquet":
        scan = scan_table(read_table_for_scan(io.BytesIO(blobs.read_bytes(asset["sha256"]))))
        features.update(scan.features)
        evidence.extend({"method": "pii_scan", **hit} for hit in scan.evidence())
        subjects.update(pseudonym(key, value, domain) for domain, value in scan.distinct_subjects())
    if tags.get("pseudonymized_features"):
        features.update(tags["pseudonymized_features"])
        evidence.append({"method": "lineage", "features": tags["pseudonymized_features"],
                         "why": "keyed pseudonyms of these identifiers (still personal information)"})
    if asset.get("parent_id") and tags.get("derived"):
        # a derived asset is about the same people as its parent
        parent = ws.region(region).catalog.get_asset(asset["parent_id"])
        if parent is not None:
            subjects.update(classify_asset(ws, region, parent, key, areas).subject_keys)
    return AssetClassification(
        asset_id=asset["id"], policy_kind=policy_kind, features=sorted(features), subject_keys=sorted(subjects),
        evidence=evidence, anonymized=bool(tags.get("anonymized")), pseudonymized=bool(tags.get("pseudonymized")),
    )


def decide_asset(engine: PolicyEngine, exporter: Exporter, c: AssetClassification, destination: str,
                 ytd: Ytd, as_of: dt.date) -> Decision:
    """The asset decided alone: what would happen if it were exported by itself on `as_of`."""
    request = DecisionRequest(destination=destination, items=(c.item(),), exporter=exporter, as_of=as_of)
    return engine.decide(request, ytd)


def default_destination_country(ws: Workspace) -> str:
    dests = list(ws.config.destinations.values())
    return dests[0].country if dests else "US"


class ClassifyWork:
    """Classify and decide a batch of assets. Built once where the rows are processed (here, or in a Ray
    actor that opens the workspace itself): the packs compile and the engine is made once per actor."""

    def __init__(self, home: str, region: str, destination: str, as_of: dt.date, ytd: Ytd,
                 opened: Workspace | None = None) -> None:
        self.ws = opened or Workspace.open(Path(home))
        cfg = self.ws.config.region(region)
        self.region, self.destination, self.as_of, self.ytd = cfg.name, destination, as_of, ytd
        self.key = self.ws.keys(cfg.name).pseudonym_key()
        self.areas = SensitiveAreas.load(self.ws.config.resolve(cfg.sensitive_areas) if cfg.sensitive_areas else None)
        self.engine, self.exporter = PolicyEngine(packs_for(self.ws, cfg.name)), exporter_of(cfg)

    def __call__(self, assets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.one(asset) for asset in assets]

    def one(self, asset: dict[str, Any]) -> dict[str, Any]:
        try:
            c = classify_asset(self.ws, self.region, asset, self.key, self.areas)
            decision = decide_asset(self.engine, self.exporter, c, self.destination, self.ytd, self.as_of)
        except (FleetgateError, OSError, ValueError) as exc:  # a broken blob must not stop the batch
            return {"id": asset["id"], "failed": f"{asset['source_path']}: {exc}"}
        item = decision.items[0]
        category = item.counted_as or ("spi" if "spi" in item.tags else "pi" if "pi" in item.tags else None)
        row = {"asset_id": c.asset_id, "policy_kind": c.policy_kind, "features": c.features,
               "subjects": len(c.subject_keys), "evidence": c.evidence, "anonymized": c.anonymized,
               "pseudonymized": c.pseudonymized, "packs": decision.packs, "outcome": item.outcome.value,
               "decision": {"destination": self.destination, "as_of": decision.as_of, "tags": item.tags,
                            **item.to_dict(), "obligations": item.obligations}}
        return {"id": asset["id"], "row": row, "subjects": [(k, category) for k in c.subject_keys] if category else []}


def classify_region(ws: Workspace, region: str | None = None, destination: str | None = None,
                    on_progress: Callable[[int, int], None] | None = None, runner: Runner | None = None,
                    clock: Clock | None = None, pending_only: bool = False,
                    asset_ids: list[str] | None = None) -> ClassifyReport:
    """Classify and decide every asset of a region (only the unclassified ones with `pending_only`, which
    resumes an interrupted run; only the unclassified ones among `asset_ids`, say what an ingest landed,
    when given); a failing asset is reported, the rest go on."""
    clock = FixedClock.frozen(clock)
    cfg = ws.config.region(region)
    reg = ws.region(cfg.name)
    ledger = Ledger(reg.catalog)
    packs = packs_for(ws, cfg.name)
    destination = destination or default_destination_country(ws)
    report = ClassifyReport(region=cfg.name, packs={p.id: p.hash_ref for p in packs})
    # One engine, exporter and ledger reading for the whole run, not one per asset.
    as_of = clock.today()
    ytd = ledger_ytd(ws, cfg.name, as_of.year)
    if asset_ids is not None:
        assets = ledger.unclassified_assets(cfg.name, asset_ids)
    else:
        assets = ledger.unclassified_assets(cfg.name) if pending_only else reg.catalog.list_assets(region=cfg.name)
    work = Work(ClassifyWork, str(ws.home.resolve()), cfg.name, {"destination": destination, "as_of": as_of,
                                                                 "ytd": ytd},
                local=lambda: ClassifyWork("", cfg.name, destination, as_of, ytd, opened=ws))
    batch: list[tuple[dict[str, Any], list[tuple[str, str]]]] = []
    done = 0
    for results in (runner or LocalRunner()).map(work, assets, CLASSIFY_BATCH):
        for result in results:
            done += 1
            if "failed" in result:
                report.failed.append((result["id"], result["failed"]))
                continue
            row = result["row"]
            batch.append((row, [tuple(p) for p in result["subjects"]]))
            report.classified += 1
            report.outcomes[row["outcome"]] = report.outcomes.get(row["outcome"], 0) + 1
            for f in row["features"]:
                report.features[f] = report.features.get(f, 0) + 1
            if len(batch) == CLASSIFY_BATCH:
                _save(reg, ledger, batch, clock)
                batch = []
            if on_progress:
                on_progress(done, len(assets))
    if batch:
        _save(reg, ledger, batch, clock)
    return report


def _save(region: Region, ledger: Ledger, batch: list[tuple[dict[str, Any], list[tuple[str, str]]]],
          clock: Clock) -> None:
    """Classifications, their subject keys and their facts (one `classify` log entry) in one transaction."""
    facts = Facts.of(region)
    facts.prefetch(key for _, subjects in batch for key, _ in subjects)  # one keyring read for the batch
    now = clock.now()
    with region.catalog.transaction() as conn:
        ledger.save_classifications(conn, [(row | {"classified_at": now}, subjects) for row, subjects in batch])
        region_log(region).append(conn, "classify", {"facts": {"classifications": [
            facts.classification(row | {"classified_at": now}, subjects) for row, subjects in batch]}}, at=now)


def explain_asset(ws: Workspace, asset_id: str, region: str | None = None) -> dict[str, Any]:
    """Why an asset was classified and decided as it was (from the stored classification)."""
    reg = ws.region(region)
    asset = reg.catalog.get_asset(asset_id)
    if asset is None:
        raise UsageError(f"no asset with id {asset_id!r}")
    stored = Ledger(reg.catalog).classification(asset["id"])
    if stored is None:
        raise UsageError(f"asset {asset['id']} is not classified yet; run `fleetgate classify`")
    return {"asset": {k: asset[k] for k in ("id", "kind", "source_path", "vehicle", "sha256", "bytes")},
            "classification": {k: stored[k] for k in ("policy_kind", "features", "subjects", "anonymized",
                                                      "pseudonymized", "evidence", "packs", "classified_at")},
            "decision": stored["decision"]}


