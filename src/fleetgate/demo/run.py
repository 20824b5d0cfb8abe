"""The demo: generate a fleet, ingest it, plan compute, and write a report."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from rich.table import Table

from fleetgate.audit import Witness, open_log
from fleetgate.classify import classify_region
from fleetgate.compute import MODEL_PRESETS, ModelSpec, PlanRow, load_chips, plan_training
from fleetgate.compute.chips import find_chip
from fleetgate.compute.plot import plot_time_vs_chips
from fleetgate.deid import DeidReport, deid_region
from fleetgate.deid.showcase import real_photo_before_after
from fleetgate.domain import Role
from fleetgate.gate import (
    approve_plan,
    make_plan,
    record_basis,
    run_export,
    sign_config,
    verify_package,
    verify_region,
    write_plan,
)
from fleetgate.gate.trust import bootstrap_region, decision_settings
from fleetgate.ingest import IngestReport, ingest_drop
from fleetgate.keys.personal import Actor, new_key_pair
from fleetgate.people import add_principal, current_state
from fleetgate.policy.vocabulary import Outcome
from fleetgate.report import HtmlReport, figure_png
from fleetgate.report.watch import watch_section
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.services import Services
from fleetgate.store import Ledger, Region
from fleetgate.subjects import run_retention
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import save_config

DEMO_REGION = "cn-shanghai"
PEER_REGION = "eu-frankfurt"
SERVER_REGION = "global"
DRIVE_SECONDS = 240.0  # long enough for each region's update to aggregate the 1,000 samples MU-1 asks
# Six vehicles per fleet: with four, one slow validation vehicle and three training vehicles in three
# districts made every model's China ADE a matter of which vehicle the split picked.
FLEET_VEHICLES = 6
DEMO_CHIPS = ["H20", "H100", "Ascend 910B"]
SCALED_CLIPS = 1e9


@dataclass
class DemoResult:
    """What the demo produced."""

    report_path: Path
    ingest: IngestReport
    inventory: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    compute: list[PlanRow] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    export: dict[str, Any] = field(default_factory=dict)
    federation: dict[str, Any] = field(default_factory=dict)
    retention: dict[str, Any] = field(default_factory=dict)

    def summary_tables(self) -> list[Table]:
        """Rich tables for the terminal."""
        inv = Table("region", "kind", "assets", "bytes", title="inventory", title_justify="left")
        for r in self.inventory:
            inv.add_row(r["region"], r["kind"], str(r["assets"]), f"{r['bytes']:,}")
        q = Table("file", "field", "reason", title=f"quarantine ({len(self.quarantine)})", title_justify="left")
        for r in self.quarantine:
            q.add_row(r["source_path"], r["field"], r["reason"])
        c = Table("chip", "chips", "days", "ECCN", "licence (CN)", title="compute plan, 1e9 clips",
                  title_justify="left")
        for r in self.compute:
            c.add_row(r.chip, f"{r.chips:,}", f"{r.days:,.1f}", r.eccn, r.us_licence)
        d = Table("outcome", "assets", "kinds", title="classified and decided alone (to US)", title_justify="left")
        by_outcome: dict[str, list[dict]] = {}
        for row in self.decisions:
            by_outcome.setdefault(row["outcome"], []).append(row)
        for outcome, rows in sorted(by_outcome.items()):
            d.add_row(outcome, str(len(rows)), ", ".join(sorted({r["kind"] for r in rows})))
        e = Table("what", "value", title="export to overseas (US)", title_justify="left")
        for key in ("package", "planned_by", "basis", "approved_by", "left", "stayed", "ledger", "log",
                    "verify-package", "witness"):
            if key in self.export:
                e.add_row(key, str(self.export[key]))
        f = Table("model", "trained in", f"ADE on {DEMO_REGION} m", f"ADE on {PEER_REGION} m", "updates sent / kept",
                  title="federated learning (only gated model updates cross)", title_justify="left")
        for row in self.federation.get("comparison", []):
            f.add_row(*[str(v) for v in row])
        if "skipped" in self.federation:
            f.add_row("skipped", self.federation["skipped"], "", "", "")
        r = Table("kind", "kept (days)", "deleted now", title="retention (fleetgate.toml)",
                  title_justify="left")
        deleted: dict[str, int] = {}
        for a in self.retention.get("assets", []):
            deleted[a["kind"]] = deleted.get(a["kind"], 0) + 1
        for part, kinds in self.retention.get("policy", {}).items():
            for kind, days in kinds.items():
                r.add_row(f"{kind} ({part})", str(days), str(deleted.get(kind, 0) if part == "raw" else 0))
        return [inv, q, d, e, r, f, c]


Step = Callable[..., None]


def run_demo(home: Path, on_step: Step | None = None,
             on_progress: Callable[[int, str], None] | None = None, seed: int = 7) -> DemoResult:
    """Run every stage the project has on a fresh (or existing) workspace at `home`."""
    step = on_step or (lambda *a, **k: None)
    home = Path(home)
    config, _ = init_workspace(home, DEMO_REGION)
    if config.regions[DEMO_REGION].sensitive_areas is None:
        areas = home / "sensitive_areas.geojson"
        areas.write_bytes(resources.files("fleetgate.sample").joinpath("data/sensitive_areas.geojson").read_bytes())
        config.regions[DEMO_REGION].sensitive_areas = areas.name
        save_config(config)
    drop = home / "drops" / f"sample-s{seed}"
    if not (drop / "drop.json").exists():
        step("generating sample fleet", total=FLEET_VEHICLES * 2)
        generate_sample(drop, SampleSpec(vehicles=FLEET_VEHICLES, clips=2, seed=seed, defects=True,
                                         drive_seconds=DRIVE_SECONDS),
                        on_clip=lambda cid: on_progress(1, cid) if on_progress else None)
    with Workspace.open(home) as ws:
        region = ws.region(DEMO_REGION)
        step("registering the people who plan, approve and audit")
        people = demo_people(ws, home)
        step("ingesting")
        ingest = ingest_drop(region, drop, on_start=lambda total: step("ingesting", total=total),
                             on_progress=on_progress)
        step("de-identifying camera video, trajectories and tables")
        deid = deid_region(ws, DEMO_REGION)
        step("classifying")
        classify_region(ws, DEMO_REGION, on_progress=None)
        decisions = decision_rows(region)
        step("exporting what the law permits")
        export = _export(ws, home, people)
        step("deleting what the retention settings say has expired")
        retention = _retention(ws, people)
        federation = _federate(home, seed, step, on_progress)
        step("planning compute")
        model = reference_model_for(region)
        chips = load_chips()
        picked = [find_chip(chips, name) for name in DEMO_CHIPS]
        as_of = date(2026, 11, 21)
        plans = [plan_training(model, SCALED_CLIPS, c, count=1024, as_of=as_of) for c in picked]
        sized = [plan_training(model, SCALED_CLIPS, c, days=30, as_of=as_of) for c in picked]
        plot_path = plot_time_vs_chips(model, SCALED_CLIPS, picked, home / "compute_plan.png", as_of=as_of)
        step("writing report")
        inventory = region.catalog.stats(region.name)
        quarantine = region.catalog.list_quarantine(region.name)
        report = _build_report(region, ingest, inventory, quarantine, decisions, export, model, plans, sized,
                               plot_path, deid, federation)
        _retention_section(report, retention)
        watch_section(report, ws, DEMO_REGION)
        path = report.write(home / "report.html")
    return DemoResult(path, ingest, inventory, quarantine, plans, decisions, export, federation, retention)


# Raw exterior video 90 days, cabin media 30, anonymized derivatives a year (docs/subject-rights.md).
DEMO_RETENTION = {"raw": {"exterior_video": 90, "cabin_audio": 30, "cabin_video": 30},
                  "derived": {"exterior_video": 365}}


def _retention(ws: Workspace, people: dict[str, Actor]) -> dict[str, Any]:
    """A compliance officer runs retention with the demo's settings (written to fleetgate.toml once)."""
    if not ws.config.retention.raw and not ws.config.retention.derived:
        ws.config.retention.raw.update(DEMO_RETENTION["raw"])
        ws.config.retention.derived.update(DEMO_RETENTION["derived"])
        save_config(ws.config)
    return run_retention(ws, _actor(people, Role.compliance), DEMO_REGION)


def _retention_section(report: HtmlReport, retention: dict[str, Any]) -> None:
    report.heading("Retention")
    report.text(f"Retention run as of {retention['as_of'][:10]} ({retention['status']}): {retention['expired']} "
                "asset(s) past their period were deleted the way an erasure deletes (logged first, then their "
                "keys and bytes destroyed); `fleetgate subject erase` erases one person the same way.")
    report.table(["part", "kind", "days"], [[part, kind, days] for part, kinds in retention["policy"].items()
                                            for kind, days in kinds.items()])
    if retention["assets"]:
        report.table(["deleted asset", "kind", "why"], [[a["asset_id"], a["kind"], a["why"]]
                                                         for a in retention["assets"]])


def _federate(home: Path, seed: int, step: Step, on_progress: Callable[[int, str], None] | None) -> dict[str, Any]:
    """A Frankfurt fleet in eu-frankfurt, then two short federated runs with a server in `global`:
    Shanghai + Frankfurt together, and Frankfurt alone; both measured on Shanghai's validation vehicles."""
    missing = [m for m in ("torch", "flwr") if importlib.util.find_spec(m) is None]
    if missing:
        return {"skipped": f"needs {', '.join(missing)}: pip install 'fleetgate[train,federate]' (make demo does)"}
    from fleetgate.train.federation import FederationSettings, run_federation

    for name in (PEER_REGION, SERVER_REGION):
        init_workspace(home, name)
    drop = home / "drops" / f"sample-frankfurt-s{seed}"
    if not (drop / "drop.json").exists():
        step("generating a Frankfurt fleet", total=FLEET_VEHICLES * 2)
        generate_sample(drop, SampleSpec(vehicles=FLEET_VEHICLES, clips=2, seed=seed + 1, video_seconds=1.0,
                                         drive_seconds=DRIVE_SECONDS, area="frankfurt"),
                        on_clip=lambda cid: on_progress(1, cid) if on_progress else None)
    runs = {}
    with Workspace.open(home) as ws:
        step(f"ingesting into {PEER_REGION}")
        ingest_drop(ws.region(PEER_REGION), drop)
        both = FederationSettings(regions=(DEMO_REGION, PEER_REGION), server_region=SERVER_REGION, rounds=5,
                                  local_epochs=10, seed=seed)
        alone = FederationSettings(regions=(PEER_REGION,), evaluate_regions=(DEMO_REGION,),
                                   server_region=SERVER_REGION, rounds=5, local_epochs=10, seed=seed)
        for key, settings in (("federated", both), ("alone", alone)):
            step(f"federated training: {' + '.join(settings.regions)} → {SERVER_REGION}", total=settings.rounds)
            runs[key] = run_federation(ws, settings, on_round=lambda r: on_progress(1, f"round {r.round}")
                                       if on_progress else None)
    comparison = []
    for key, label in (("federated", "federated"), ("alone", f"{PEER_REGION} only")):
        result = runs[key]
        final = result.final_evaluation()
        updates = [u for r in result.rounds for u in r.updates]
        comparison.append([label, " + ".join(result.settings.regions),
                           final.get(DEMO_REGION, {}).get("ade_m"), final.get(PEER_REGION, {}).get("ade_m"),
                           f"{sum(u['received'] for u in updates)} / {sum(not u['received'] for u in updates)}"])
    cv = runs["federated"].final_evaluation().get(DEMO_REGION, {}).get("constant_velocity_ade_m")
    return {"comparison": comparison, "constant_velocity_ade_m": cv,
            "runs": {k: r.to_dict() for k, r in runs.items()}}


@dataclass(frozen=True)
class DemoPerson:
    role: Role
    name: str

    @property
    def key_file(self) -> str:
        return f"{self.role.value}-{self.name.lower().replace(' ', '-')}.key"


# An admin who registers the others, an engineer who plans and runs, two compliance officers who
# approve the approval-bound items, an auditor who verifies.
DEMO_PEOPLE = (DemoPerson(Role.admin, "Wang Fang"), DemoPerson(Role.engineer, "Zhang Wei"),
               DemoPerson(Role.compliance, "Li Na"), DemoPerson(Role.compliance, "Chen Jie"),
               DemoPerson(Role.auditor, "Liu Yang"))
DEMO_FILING = "CAC-SCC-2026-0042"
DEMO_CONSENT = "CONSENT-APP-2026-v3"  # the separate-consent records of the owners, by their version
DEMO_PIPIA = "PIPIA-2026-003"


def demo_people(ws: Workspace, home: Path) -> dict[str, Actor]:
    """The demo's five people, their keys in <home>/demo-people (demo only: real keys stay with their owners),
    registered in the demo region by the admin, who also signs its settings."""
    folder = home / "demo-people"
    actors = {}
    for person in DEMO_PEOPLE:
        path = folder / person.key_file
        if not path.exists():
            new_key_pair(path)
        actors[person.name] = Actor.from_key_file(person.name, path)
    region = ws.region(DEMO_REGION)
    admin = actors[DEMO_PEOPLE[0].name]
    state = current_state(region)
    if not state.principals:
        bootstrap_region(ws, DEMO_REGION, admin)
    for person in DEMO_PEOPLE[1:]:
        if current_state(region).active(person.name) is None:
            add_principal(region, person.name, person.role, actors[person.name].signer.public_key, admin)
    signed = current_state(region).config
    if signed is None or signed[1].settings != decision_settings(ws, DEMO_REGION):
        sign_config(ws, DEMO_REGION, admin)  # the demo changed fleetgate.toml (sensitive areas) since
    _demo_tokens(ws, folder, actors)
    return actors


def _demo_tokens(ws: Workspace, folder: Path, actors: dict[str, Actor]) -> None:
    """An API/dashboard token per demo person, next to their key (demo only), for `make serve`."""
    principals = Services(ws).principals
    for person in DEMO_PEOPLE:
        path = folder / person.key_file.replace(".key", ".token")
        if path.exists():
            continue
        token = principals.issue_token(person.name, actors[DEMO_PEOPLE[0].name], DEMO_REGION).secret
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")


def _actor(people: dict[str, Actor], role: Role, n: int = 0) -> Actor:
    return people[[p.name for p in DEMO_PEOPLE if p.role is role][n]]


def _export(ws: Workspace, home: Path, people: dict[str, Actor]) -> dict[str, Any]:
    """Plan (engineer), approve (two compliance officers), run (engineer) and check (auditor) an export to
    the `overseas` destination; what left, what stayed and why, and who approved what."""
    engineer = _actor(people, Role.engineer)
    signed = make_plan(ws, "overseas", engineer, purpose="train driving models abroad on what may leave",
                       region=DEMO_REGION)
    write_plan(signed, home / "plans" / f"{signed.plan_id}.json")
    plan = signed.plan
    # The officers approve the de-identified trajectories and pseudonymized owner records under the
    # filing; cabin audio (voices) they leave out, so it stays.
    kinds = [k for k in plan.approval_scope.kinds if k != "cabin_audio"]
    approvals = []
    if kinds:
        until = date.today().replace(year=date.today().year + 1)
        for n in (0, 1):
            approvals.append(approve_plan(ws, signed, DEMO_FILING, until, _actor(people, Role.compliance, n),
                                          kinds=kinds))
    basis = None
    if any(i.blocking for i in plan.items):
        # personal information leaves only with its legal basis and a PIPIA on record (PIPL Arts 39, 55, 56)
        _, basis = record_basis(ws, signed, "separate_consent", DEMO_CONSENT, DEMO_PIPIA,
                                _actor(people, Role.compliance, 0))
    result = run_export(ws, signed, engineer)
    verified = verify_region(ws, DEMO_REGION)  # the auditor's check: log, catalog, keys, content, settings
    log = open_log(ws, DEMO_REGION)
    cp = log.latest_checkpoint() or log.checkpoint()
    witness = Witness(home / "witness", "fleetgate-witness")
    last = witness.state(cp.origin)
    proof = log.consistency(int(last["size"]), cp.size) if last and 0 < int(last["size"]) < cp.size else []
    log.store_cosigned(witness.cosign(cp, log.key_name, log.public_key(), proof))
    package = verify_package(result.path) if result.path else None
    left = {a["asset_id"] for a in result.exported}
    stayed: dict[str, list] = {}
    for item in plan.items:
        if item.asset_id not in left:
            why = item.reasons[-1] if item.reasons else item.outcome
            if Outcome(item.outcome).needs_approval and item.policy_kind not in kinds:  # left out by them
                why = "no approval: the compliance officers did not approve this kind"
            stayed.setdefault(f"{item.outcome}: {why}", []).append(item)
    auditor = _actor(people, Role.auditor)
    return {
        "package": f"{result.package_id} ({result.status})",
        "left": f"{len(left)} assets, {sum(a['bytes'] for a in result.exported):,} bytes",
        "stayed": f"{len(plan.items) - len(left)} assets",
        "ledger": f"+{result.ledger_delta} people this year" if result.ledger_delta else "unchanged",
        "log": f"{verified.report.entries} entries verified by {auditor.name} (auditor), "
               f"{len(verified.findings)} findings; checkpoint {cp.size} cosigned by the witness",
        "verify-package": "; ".join(package.checks) if package else "no package",
        "witness": "cosigned",
        "planned_by": f"{plan.author} (engineer), plan {signed.plan_id}",
        "basis": (f"{basis.legal_basis.type} ({basis.legal_basis.ref}) and PIPIA {basis.pipia_ref}, recorded by "
                  f"{basis.by}") if basis else "no personal information needed one",
        "approved_by": "; ".join(f"{a.statement.approver} ({a.statement.ref}: {', '.join(a.statement.kinds)}, "
                                 f"log entry {a.index})" for a in approvals) or "nothing needed an approval",
        "left_rows": [[a["kind"], a["asset_id"], a["outcome"], ", ".join(a["rules"][-2:]),
                       ", ".join(_approvers(approvals, a["approvals"])) or "—"] for a in result.exported],
        "stayed_rows": [[why, len(items), ", ".join(sorted({i.kind for i in items}))]
                        for why, items in sorted(stayed.items())],
        "path": str(result.path),
        "people": [[p.role.value, p.name, f"demo-people/{p.key_file}"] for p in DEMO_PEOPLE],
    }


def _approvers(approvals: list, ids: list[str]) -> list[str]:
    return [a.statement.approver for a in approvals if a.approval_id in ids]


def decision_rows(region: Region) -> list[dict[str, Any]]:
    """One row per classified asset: what it is, what was found in it, and where it may go."""
    rows = []
    for c in Ledger(region.catalog).classifications():
        asset = region.catalog.get_asset(c["asset_id"])
        decision = c["decision"] or {}
        rows.append({"asset": c["asset_id"], "kind": asset["kind"], "path": asset["source_path"],
                     "features": ", ".join(c["features"]), "subjects": c["subjects"], "outcome": c["outcome"],
                     "rules": ", ".join(decision.get("rules", [])),
                     "deciding": (decision.get("reasons") or [""])[-1]})
    return sorted(rows, key=lambda r: (r["kind"], r["path"]))


def reference_model_for(region: Region) -> ModelSpec:
    """The reference video model, with the cameras and frame rate of the fleet in the catalog."""
    base = MODEL_PRESETS["fleet-vit-1.2b"]
    manifests = region.catalog.list_assets(region=region.name, kind="clip_manifest", limit=1)
    if not manifests:
        return base
    cameras = manifests[0]["tags"].get("cameras", {})
    fps = max((c["fps"] for c in cameras.values()), default=10)
    # the model sees 2 s windows resized to its 256×448 input, from every camera the fleet records
    return replace(base, name=f"{base.name} on sample fleet", cameras=max(len(cameras), 1),
                   frames=int(round(2 * fps)))


def _build_report(region: Region, ingest: IngestReport, inventory: list[dict], quarantine: list[dict],
                  decisions: list[dict], export: dict[str, Any], model: ModelSpec, plans: list[PlanRow],
                  sized: list[PlanRow], plot_path: Path, deid: DeidReport, federation: dict[str, Any]) -> HtmlReport:
    report = HtmlReport("fleetgate demo: sample fleet in cn-shanghai")
    report.text(f"Drop {ingest.drop_id} → region {ingest.region}: {ingest.files_seen} files, {ingest.landed} landed, "
                f"{ingest.already_present} already present, {ingest.quarantined} quarantined (run {ingest.run_id}).")
    report.heading("Inventory by region and kind")
    report.table(["region", "kind", "assets", "vehicles", "bytes"],
                 [[r["region"], r["kind"], r["assets"], r["vehicles"], r["bytes"]] for r in inventory])
    report.image(_inventory_plot(inventory), "bytes by kind")
    report.heading("Quarantine")
    if quarantine:
        report.table(["drop", "file", "field", "reason"],
                     [[q["source_drop"], q["source_path"], q["field"], q["reason"]] for q in quarantine])
    else:
        report.text("Nothing was quarantined.")
    report.heading("De-identification")
    videos = [a for a in region.catalog.list_assets(region=region.name)
              if a["kind"] == "exterior_video" and (a["tags"] or {}).get("derived") == "deid"]
    report.text(f"Front-camera clips: faces (CenterFace) and Chinese plates (clp-det) found on key frames, carried and "
                f"interpolated by tracking, blurred, re-encoded as H.264 without audio or metadata, then checked "
                f"again on the output. {len(deid.derived)} assets derived in this run, {deid.already} done before; "
                f"{deid.cabin_kept_local} cabin audio/video assets stay in the region.")
    report.table(["derived clip", "boxes (detected / interpolated / held / backfilled)", "residuals", "anonymized",
                  "models"],
                 [[v["id"], " / ".join(str(v["tags"].get("boxes", {}).get(k, 0))
                                       for k in ("detected", "interpolated", "held", "backfilled")),
                   v["tags"].get("residuals"), v["tags"].get("anonymized"), ", ".join(v["tags"].get("models", []))]
                  for v in videos])
    still = _before_after(region, videos)
    if still:
        report.image(still, "a front-camera frame before (left) and after (right) de-identification")
    real = real_photo_before_after()  # only where ../shared/fixtures/real is at hand
    if real:
        report.image(real.png, real.caption)
        report.text(real.caption, muted=True)
    report.heading("Classification and export decisions")
    report.text("Every asset is classified from its format and content (identifiers in tables, GNSS precision and "
                "sensitive areas, media assumed to show faces and plates until de-identification), then decided "
                "alone for the overseas destination (US) with the region's rule packs and ledger.")
    counts: dict[str, int] = {}
    for row in decisions:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    report.table(["outcome", "assets"], [[k, v] for k, v in sorted(counts.items())])
    report.table(["kind", "file", "features", "subjects", "outcome", "rules that fired", "deciding rule"],
                 [[r["kind"], r["path"], r["features"], r["subjects"], r["outcome"], r["rules"], r["deciding"]]
                  for r in decisions])
    report.heading("Export to the overseas destination (US)")
    report.text(f"Package {export['package']} at {export['path']}: {export['left']} left; "
                f"{export['stayed']} stayed. Ledger: {export['ledger']}. Transparency log: {export['log']}. "
                f"verify-package: {export['verify-package']}.")
    report.text(f"Planned by {export['planned_by']}. Legal basis: {export['basis']}. "
                f"Approved by {export['approved_by']}.")
    report.text("The people of this demo: their keys are files under the workspace (demo only, so a script can "
                "act as each of them with FLEETGATE_AS / FLEETGATE_KEY); in production each person keeps their "
                "own key, outside the workspace, or on a hardware token.", muted=True)
    report.table(["role", "name", "key file (demo only)"], export["people"])
    report.text("What left:")
    report.table(["kind", "asset", "outcome", "deciding rules", "approved by"], export["left_rows"])
    report.text("What stayed, and why:")
    report.table(["outcome and reason", "assets", "kinds"], export["stayed_rows"])
    _federation_section(report, federation)
    report.heading("GNSS tracks (WGS-84)")
    report.image(_tracks_plot(region), "GNSS tracks")
    report.heading("Compute plan under US export controls")
    report.text(f"Model {model.name}: {model.tokens_per_clip:,.0f} tokens per clip, {model.flops_per_token:.3g} "
                f"FLOPs per token, {model.total_flops(SCALED_CLIPS):.3g} FLOPs for {SCALED_CLIPS:.0e} clips.")
    report.table(["chip", "chips", "days", "MFU", "GPU MW", "ECCN 3A090", "US licence for CN"],
                 [[p.chip, p.chips, round(p.days, 1), p.mfu, round(p.gpu_power_mw, 2), p.eccn, p.us_licence]
                  for p in plans])
    report.text("Chips needed to finish in 30 days:")
    report.table(["chip", "chips", "days", "memory floor", "GPU MW"],
                 [[p.chip, p.chips, round(p.days, 1), p.memory_floor_chips, round(p.gpu_power_mw, 2)] for p in sized])
    report.image(plot_path.read_bytes(), "days against chips")
    notes = sorted({n for p in plans for n in p.overlays})
    if notes:
        report.text("Policy overlays in force: " + " | ".join(notes), muted=True)
    return report


def _federation_section(report: HtmlReport, federation: dict[str, Any]) -> None:
    report.heading("Federated learning across regions")
    if "skipped" in federation:
        report.text(f"Skipped: {federation['skipped']}.")
        return
    report.text(f"An ego-trajectory model (the next 3 s of path from the past 2 s) trained with Flower: a ServerApp "
                f"in {SERVER_REGION}, a ClientApp in each region reading only its own store. Every update that "
                f"leaves a region is decided by that region's rule packs (model_update: at least 1,000 samples, "
                f"MU-1) and logged in its transparency log; the server checks each update's SHA-256 against the "
                f"log entry and logs each round. ADE/FDE on each region's validation vehicles (never trained on); "
                f"the constant-velocity baseline on {DEMO_REGION} is {federation['constant_velocity_ade_m']} m.")
    report.table(["model", "trained in", f"ADE on {DEMO_REGION} (m)", f"ADE on {PEER_REGION} (m)",
                  "updates sent / kept in region"], federation["comparison"])
    run = federation["runs"]["federated"]
    report.text(f"Rounds of {run['run_id']} ({run['settings']['strategy']}, {run['settings']['local_epochs']} local "
                f"epochs, {run['seconds']} s) and the gate's decision on every update:")
    report.table(["round", "region", "samples", "gate outcome", "rules", "update SHA-256", "source log entry",
                  "reached the server", "round s"],
                 [[r["round"], u["region"], u.get("samples"), u.get("outcome"), ", ".join(u.get("rules") or []),
                   (u.get("update_sha256") or "")[:16], u.get("log_index"), "yes" if u["received"] else "no",
                   round(r["seconds"], 2)]
                  for r in run["rounds"] for u in r["updates"]])
    report.table(["round", "region evaluated", "ADE m", "FDE m", "validation samples"],
                 [[r["round"], region, m["ade_m"], m["fde_m"], m["samples"]]
                  for r in run["rounds"] for region, m in sorted(r["evaluation"].items())])


def _before_after(region: Region, videos: list[dict]) -> bytes | None:
    """The middle frame of the first de-identified clip next to the same frame of its original."""
    import io

    import av
    from PIL import Image

    if not videos:
        return None
    derived = videos[0]
    parent = region.catalog.get_asset(derived["parent_id"])
    frames = []
    for sha in (parent["sha256"], derived["sha256"]):
        with region.blobs.open(sha) as fh, av.open(io.BytesIO(fh.read())) as container:
            decoded = [f.to_image() for f in container.decode(video=0)]
        frames.append(decoded[len(decoded) // 2].resize((640, 360)))
    pair = Image.new("RGB", (1290, 360), "white")
    pair.paste(frames[0], (0, 0))
    pair.paste(frames[1], (650, 0))
    out = io.BytesIO()
    pair.save(out, format="PNG")
    return out.getvalue()


def _inventory_plot(inventory: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    kinds = [r["kind"] for r in inventory]
    ax.barh(kinds, [r["bytes"] / 1e6 for r in inventory], color="#3b6fb6")
    ax.set_xlabel("MB")
    ax.set_title("bytes landed by kind")
    return figure_png(fig)


def _tracks_plot(region: Region) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for asset in region.catalog.list_assets(region=region.name, kind="gnss_trajectory"):
        with region.blobs.open(asset["sha256"]) as fh:
            table = pq.read_table(fh, columns=["lat", "lon"])
        lat, lon = np.asarray(table["lat"]), np.asarray(table["lon"])
        ax.plot(lon, lat, lw=1.2, label=(asset["vehicle"] or "")[-6:])
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_aspect(1 / np.cos(np.radians(31)))
    ax.grid(alpha=0.3)
    ax.set_title("drives by vehicle (Lingang, Lujiazui, Xuhui)")
    return figure_png(fig)
