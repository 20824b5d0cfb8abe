"""`fleetgate deid run`: de-identify a region's trajectories and personal tables into derived assets.

Each derived asset is a new blob with lineage to its parent (`parent_id`), tagged with what was done
(`pseudonymized`, the pseudonymized features, the coordinate precision) so classification and the
export gate see its new state. The parent never changes. Every run and every use of the
pseudonymization key is written to the transparency log as digests.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from fleetgate.audit import canonical, digest
from fleetgate.audit.facts import Facts
from fleetgate.audit.log import region_log
from fleetgate.classify.geo import SensitiveAreas
from fleetgate.deid.detectors import IMAGE, VIDEO, Profile, build_detectors
from fleetgate.deid.tables import DeidError, deidentify_table
from fleetgate.deid.trajectory import TrajectoryPolicy, deidentify_trajectory
from fleetgate.deid.verify import Verifier, build_verifier
from fleetgate.deid.video import MediaReport, VideoSettings, anonymize_image, anonymize_video
from fleetgate.errors import FleetgateError
from fleetgate.store.blobs import PutResult
from fleetgate.store.catalog import utcnow
from fleetgate.store.sealed import sealed_for
from fleetgate.workspace import Workspace

_FEATURE = {"face": "faces", "plate": "plates"}
TABLE_KINDS = {"owner_record", "after_sales", "charging_session", "used_car"}
CAMERA_KINDS = {"exterior_video", "exterior_image"}
# cabin media shows and records the occupants; it is never an export candidate, so it is not derived
CABIN_KINDS = {"cabin_video", "cabin_audio"}
DERIVED = "deid"


@dataclass
class DeidReport:
    region: str
    derived: list[dict[str, Any]] = field(default_factory=list)
    already: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    cabin_kept_local: int = 0
    camera: list[dict[str, Any]] = field(default_factory=list)  # per-clip media reports


def _derived_id(region: str, parent: str, settings: dict[str, Any]) -> str:
    key = f"{region}\0{DERIVED}\0{parent}\0".encode() + canonical(settings)
    return "as_" + hashlib.sha256(key).hexdigest()[:24]


@dataclass
class _CameraDetectors:
    """The obscuring detectors and the independent verifier for videos and for stills, built on first use."""

    profile: Profile = VIDEO
    provider: str = "auto"
    given: list | None = None  # detectors a caller passed in (used for videos and stills alike)
    verifier: Verifier | None = None
    _built: dict = field(default_factory=dict)

    def for_kind(self, kind: str) -> tuple[list, Verifier]:
        profile = IMAGE if kind == "exterior_image" else self.profile
        key = "image" if kind == "exterior_image" else "video"
        if key not in self._built:
            detectors = self.given if self.given is not None else build_detectors(provider=self.provider,
                                                                                   profile=profile)
            self._built[key] = (detectors, self.verifier or build_verifier(profile, self.provider))
        return self._built[key]


def _camera_asset(reg: Any, asset: dict[str, Any], detectors: list, verifier: Verifier, settings: VideoSettings,
                  tmp: Path) -> tuple[PutResult, PutResult, MediaReport]:
    """Anonymize one catalogued video or image; returns the stored output, sidecar and report."""
    suffix = {"mp4": ".mp4", "png": ".png", "jpg": ".jpg", "jpeg": ".jpg"}.get(asset["file_format"], ".mp4")
    src = tmp / f"in{suffix}"
    with reg.blobs.open(asset["sha256"]) as fh, open(src, "wb") as out:
        shutil.copyfileobj(fh, out, 1 << 20)
    dst, sidecar = tmp / f"out{suffix}", tmp / "detections.parquet"
    if asset["kind"] == "exterior_image":
        report = anonymize_image(src, dst, detectors, settings, sidecar, verifier=verifier)
    else:
        report = anonymize_video(src, dst, detectors, settings, sidecar, verifier=verifier)
    return reg.blobs.put_file(dst), reg.blobs.put_file(sidecar), report


def deid_region(ws: Workspace, region: str | None = None, policy: TrajectoryPolicy | None = None,
                on_progress: Callable[[int, int], None] | None = None, video: VideoSettings | None = None,
                detectors: list | None = None, camera: bool = True, profile: Profile = VIDEO,
                provider: str = "auto", verifier: Verifier | None = None) -> DeidReport:
    cfg = ws.config.region(region)
    reg = ws.region(cfg.name)
    policy = policy or TrajectoryPolicy()
    areas = SensitiveAreas.load(ws.config.resolve(cfg.sensitive_areas) if cfg.sensitive_areas else None)
    key = ws.keys(cfg.name).pseudonym_key()
    report = DeidReport(cfg.name)
    assets = reg.catalog.list_assets(region=cfg.name)
    originals = [a for a in assets if (a["tags"] or {}).get("derived") != DERIVED]
    parents = [a for a in originals if a["file_format"] == "parquet" and a["kind"] in TABLE_KINDS | {"gnss_trajectory"}]
    if camera:
        parents += [a for a in originals if a["kind"] in CAMERA_KINDS]
    report.cabin_kept_local = sum(a["kind"] in CABIN_KINDS for a in originals)
    video = video or VideoSettings()
    cameras = _CameraDetectors(profile, provider, detectors, verifier)
    existing = reg.catalog.existing_asset_ids
    log, facts = region_log(reg), Facts.of(reg)
    key_uses = 0
    for n, asset in enumerate(parents, 1):
        if asset["kind"] in CAMERA_KINDS:
            kind_detectors, kind_verifier = cameras.for_kind(asset["kind"])
            settings = {"media": video.to_dict(), "models": sorted({d.model_id for d in kind_detectors}),
                        "verifier": kind_verifier.describe()}
        elif asset["kind"] == "gnss_trajectory":
            settings = {"trajectory": policy.to_dict()}
        else:
            settings = {"tables": "default"}
        derived_id = _derived_id(cfg.name, asset["id"], settings)
        if existing([derived_id]):
            report.already += 1
            continue
        # derived from a vehicle's files, it is still its owner's data: sealed under their key
        with sealed_for(asset["vehicle"]):
            try:
                tags: dict[str, Any] = {"derived": DERIVED, "parent_sha256": asset["sha256"], "settings": settings}
                if asset["kind"] in CAMERA_KINDS:
                    with tempfile.TemporaryDirectory(prefix="fleetgate-deid-") as tmp:
                        put, side, media = _camera_asset(reg, asset, kind_detectors, kind_verifier, video, Path(tmp))
                    # what the verification pass still sees is what the policy must assume is there
                    tags |= {"anonymized": media.anonymized,
                             "detected_features": sorted({_FEATURE[r.label] for r in media.residuals}),
                             "removed_features": sorted(_FEATURE[label] for label in media.detected_features),
                             "sidecar_sha256": side.sha256, "residuals": len(media.residuals),
                             "residual_reasons": sorted({r.reason for r in media.residuals}),
                             "verify_frames": media.verify_frames, "verifier": media.verifier,
                             "boxes": media.boxes, "models": media.models}
                    report.camera.append({"asset_id": derived_id, **{k: v for k, v in media.to_dict().items()
                                                                     if k not in ("input", "output", "settings")}})
                    out = None
                elif asset["kind"] == "gnss_trajectory":
                    table = reg.blobs.read_table(asset["sha256"])
                    out, detail = deidentify_trajectory(table, areas, policy)
                    tags |= {"coordinate_precision_m": detail["precision_m"], "trajectory": detail}
                else:
                    result = deidentify_table(reg.blobs.read_table(asset["sha256"]), key)
                    key_uses += 1
                    out = result.table
                    tags |= {"pseudonymized": bool(result.pseudonymized_features),
                             "pseudonymized_features": result.pseudonymized_features, "actions": result.actions}
            except (FleetgateError, DeidError, OSError, ValueError, KeyError) as exc:
                report.failed.append((asset["id"], f"{asset['source_path']}: {exc}"))
                continue
            if out is not None:
                buf = io.BytesIO()
                pq.write_table(out, buf)
                put = reg.blobs.put_bytes(buf.getvalue())
        row = {k: asset[k] for k in ("kind", "region", "file_format", "vehicle", "clip_id", "t_start", "t_end",
                                     "source_drop", "ingest_run")}
        row |= {"id": derived_id, "sha256": put.sha256, "bytes": put.size,
                "source_path": asset["source_path"] + "#deid", "parent_id": asset["id"], "tags": tags,
                "created_at": utcnow()}
        with reg.catalog.transaction() as conn:
            reg.catalog.insert_assets(conn, [row])
            log.append(conn, "derive", {"facts": {"assets": [facts.asset(row)]}, "parent": asset["id"],
                                        "removed": sorted(tags.get("removed_features") or tags.get(
                                            "pseudonymized_features") or []),
                                        "models": settings.get("models", []),
                                        "settings_digest": digest(canonical(settings))}, at=row["created_at"])
        report.derived.append({"asset_id": derived_id, "parent": asset["id"], "kind": asset["kind"],
                               "path": row["source_path"]})
        if on_progress:
            on_progress(n, len(parents))
    if report.derived or report.failed:
        with reg.catalog.transaction() as conn:
            entries = [("deid_run", {"derived": [{"asset_id": d["asset_id"], "parent": d["parent"]}
                                                 for d in report.derived],
                                     "failed": [a for a, _ in report.failed],
                                     "trajectory_policy": policy.to_dict(), "settings_digest": digest(
                                         canonical({"trajectory": policy.to_dict(), "media": video.to_dict()})),
                                     "media": [{"asset_id": c["asset_id"], "anonymized": c["anonymized"],
                                                "residuals": len(c["residuals"]), "boxes": c["boxes"],
                                                "models": c["models"]} for c in report.camera]})]
            if key_uses:
                entries.append(("key_use", {"key": "pseudonym", "purpose": "deid tables", "uses": key_uses}))
            log.append_many(conn, entries)
    return report
