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
from fleetgate.domain.clock import Clock, FixedClock
from fleetgate.engine import LocalRunner, Runner, Work
from fleetgate.errors import FleetgateError
from fleetgate.store.blobs import PutResult
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


class DeidWork:
    """De-identify a batch of assets into derived blobs; the catalog rows are committed by the caller.

    Built once where the rows are processed (here, or in a Ray actor that opens the workspace): the
    detector models load once per actor, on the first camera asset."""

    def __init__(self, home: str, region: str, policy: TrajectoryPolicy, video: VideoSettings,
                 profile: Profile = VIDEO, provider: str = "auto", opened: Workspace | None = None,
                 cameras: _CameraDetectors | None = None) -> None:
        self.ws = opened or Workspace.open(Path(home))
        cfg = self.ws.config.region(region)
        self.reg, self.policy, self.video = self.ws.region(cfg.name), policy, video
        self.cameras = cameras or _CameraDetectors(profile, provider)
        self.areas = SensitiveAreas.load(self.ws.config.resolve(cfg.sensitive_areas) if cfg.sensitive_areas else None)
        self.key = self.ws.keys(cfg.name).pseudonym_key()

    def __call__(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.one(job) for job in jobs]

    def one(self, job: dict[str, Any]) -> dict[str, Any]:
        # derived from a vehicle's files, it is still its owner's data: sealed under their key
        with sealed_for(job["asset"]["vehicle"]):
            return self._derive(job)

    def _derive(self, job: dict[str, Any]) -> dict[str, Any]:
        asset, settings = job["asset"], job["settings"]
        tags: dict[str, Any] = {"derived": DERIVED, "parent_sha256": asset["sha256"], "settings": settings}
        out, camera, key_uses = None, None, 0
        try:
            if asset["kind"] in CAMERA_KINDS:
                detectors, verifier = self.cameras.for_kind(asset["kind"])
                with tempfile.TemporaryDirectory(prefix="fleetgate-deid-") as tmp:
                    put, side, media = _camera_asset(self.reg, asset, detectors, verifier, self.video, Path(tmp))
                # what the verification pass still sees is what the policy must assume is there
                tags |= {"anonymized": media.anonymized,
                         "detected_features": sorted({_FEATURE[r.label] for r in media.residuals}),
                         "removed_features": sorted(_FEATURE[label] for label in media.detected_features),
                         "sidecar_sha256": side.sha256, "residuals": len(media.residuals),
                         "residual_reasons": sorted({r.reason for r in media.residuals}),
                         "verify_frames": media.verify_frames, "verifier": media.verifier,
                         "boxes": media.boxes, "models": media.models}
                camera = {"asset_id": job["derived_id"], **{k: v for k, v in media.to_dict().items()
                                                            if k not in ("input", "output", "settings")}}
            elif asset["kind"] == "gnss_trajectory":
                table = self.reg.blobs.read_table(asset["sha256"])
                out, detail = deidentify_trajectory(table, self.areas, self.policy)
                tags |= {"coordinate_precision_m": detail["precision_m"], "trajectory": detail}
            else:
                result = deidentify_table(self.reg.blobs.read_table(asset["sha256"]), self.key)
                key_uses = 1
                out = result.table
                tags |= {"pseudonymized": bool(result.pseudonymized_features),
                         "pseudonymized_features": result.pseudonymized_features, "actions": result.actions}
            if out is not None:
                buf = io.BytesIO()
                pq.write_table(out, buf)
                put = self.reg.blobs.put_bytes(buf.getvalue())
        except (FleetgateError, DeidError, OSError, ValueError, KeyError) as exc:
            return {**job, "failed": f"{asset['source_path']}: {exc}"}
        return {**job, "sha256": put.sha256, "bytes": put.size, "tags": tags, "camera": camera,
                "key_uses": key_uses}


def deid_region(ws: Workspace, region: str | None = None, policy: TrajectoryPolicy | None = None,
                on_progress: Callable[[int, int], None] | None = None, video: VideoSettings | None = None,
                detectors: list | None = None, camera: bool = True, profile: Profile = VIDEO,
                provider: str = "auto", verifier: Verifier | None = None, runner: Runner | None = None,
                clock: Clock | None = None) -> DeidReport:
    """De-identify a region's tables, trajectories and camera media into derived assets, on `runner`
    (in this process by default). Workers elsewhere build their own detectors from `profile` and
    `provider`; `detectors` and `verifier` given here are used only by the local engine."""
    clock = FixedClock.frozen(clock)
    cfg = ws.config.region(region)
    reg = ws.region(cfg.name)
    policy = policy or TrajectoryPolicy()
    report = DeidReport(cfg.name)
    assets = reg.catalog.list_assets(region=cfg.name)
    originals = [a for a in assets if (a["tags"] or {}).get("derived") != DERIVED]
    parents = [a for a in originals if a["file_format"] == "parquet" and a["kind"] in TABLE_KINDS | {"gnss_trajectory"}]
    if camera:
        parents += [a for a in originals if a["kind"] in CAMERA_KINDS]
    report.cabin_kept_local = sum(a["kind"] in CABIN_KINDS for a in originals)
    video = video or VideoSettings()
    cameras = _CameraDetectors(profile, provider, detectors, verifier)
    jobs = []
    for asset in parents:
        if asset["kind"] in CAMERA_KINDS:
            kind_detectors, kind_verifier = cameras.for_kind(asset["kind"])
            settings = {"media": video.to_dict(), "models": sorted({d.model_id for d in kind_detectors}),
                        "verifier": kind_verifier.describe()}
        elif asset["kind"] == "gnss_trajectory":
            settings = {"trajectory": policy.to_dict()}
        else:
            settings = {"tables": "default"}
        jobs.append({"asset": asset, "settings": settings, "derived_id": _derived_id(cfg.name, asset["id"], settings)})
    already = reg.catalog.existing_asset_ids(j["derived_id"] for j in jobs)  # resume: derived before
    report.already = sum(j["derived_id"] in already for j in jobs)
    jobs = [j for j in jobs if j["derived_id"] not in already]
    work = Work(DeidWork, str(ws.home.resolve()), cfg.name,
                {"policy": policy, "video": video, "profile": profile, "provider": provider},
                local=lambda: DeidWork("", cfg.name, policy, video, opened=ws, cameras=cameras))
    log, facts = region_log(reg), Facts.of(reg)
    key_uses, n = 0, report.already
    for results in (runner or LocalRunner()).map(work, jobs, 1):
        for result in results:
            n += 1
            if "failed" in result:
                report.failed.append((result["asset"]["id"], result["failed"]))
                continue
            key_uses += result["key_uses"]
            if result["camera"] is not None:
                report.camera.append(result["camera"])
            _commit_derived(reg, log, facts, result, clock, report)
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
            log.append_many(conn, entries, at=clock.now())
    return report


def _commit_derived(reg: Any, log: Any, facts: Facts, result: dict[str, Any], clock: Clock,
                    report: DeidReport) -> None:
    """The derived asset's row and its `derive` fact, in one transaction."""
    asset, tags, settings = result["asset"], result["tags"], result["settings"]
    row = {k: asset[k] for k in ("kind", "region", "file_format", "vehicle", "clip_id", "t_start", "t_end",
                                 "source_drop", "ingest_run")}
    row |= {"id": result["derived_id"], "sha256": result["sha256"], "bytes": result["bytes"],
            "source_path": asset["source_path"] + "#deid", "parent_id": asset["id"], "tags": tags,
            "created_at": clock.now()}
    with reg.catalog.transaction() as conn:
        reg.catalog.insert_assets(conn, [row])
        log.append(conn, "derive", {"facts": {"assets": [facts.asset(row)]}, "parent": asset["id"],
                                    "removed": sorted(tags.get("removed_features") or tags.get(
                                        "pseudonymized_features") or []),
                                    "models": settings.get("models", []),
                                    "settings_digest": digest(canonical(settings))}, at=row["created_at"])
    report.derived.append({"asset_id": row["id"], "parent": asset["id"], "kind": asset["kind"],
                           "path": row["source_path"]})
