"""Federated learning: gated model updates, DP, FedProx, regional roads, and the residency proof."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fleetgate.audit import open_log
from fleetgate.gate.model_updates import DpSettings, release_model_update
from fleetgate.ingest import ingest_drop
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.sample.tracks import AREAS, drive, turn_radius
from fleetgate.store.residency import read_access_log
from fleetgate.workspace import Workspace, init_workspace

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch==2.13.0)")

from cli_helpers import run_cli  # noqa: E402
from fleetgate.train import model as ref  # noqa: E402
from fleetgate.train.dataset import Samples  # noqa: E402
from fleetgate.train.federation import privatize, update_digest  # noqa: E402


def test_driving_side_sets_which_turn_is_tight() -> None:
    right, left = AREAS["shanghai"][0], AREAS["london"][0]
    assert turn_radius(right, left_turn=False) < turn_radius(right, left_turn=True)  # right turn hugs the kerb
    assert turn_radius(left, left_turn=True) < turn_radius(left, left_turn=False)  # mirrored where traffic keeps left


def test_areas_differ_in_speed_and_curvature() -> None:
    def stats(area: str) -> tuple[float, float]:
        rng = np.random.default_rng(3)
        tracks = [drive(rng, d, 120, 10.0) for d in AREAS[area] for _ in range(2)]
        return (float(np.mean([t.speed.mean() for t in tracks])),
                float(np.mean([np.percentile(np.abs(t.yaw_rate), 99) for t in tracks])))

    shanghai, frankfurt = stats("shanghai"), stats("frankfurt")
    assert frankfurt[0] > 1.3 * shanghai[0]  # faster roads
    assert frankfurt[1] < shanghai[1]  # gentler curves than 90° junction turns


def test_unknown_area_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("sample", str(tmp_path / "d"), "--area", "atlantis", home=tmp_path / "ws")
    assert result.returncode == 2 and "--area must be one of shanghai, frankfurt, london" in result.stderr


def test_update_digest_covers_names_shapes_and_values() -> None:
    arrays = {"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.float32)}
    base = update_digest(arrays)
    assert update_digest(dict(reversed(arrays.items()))) == base  # order of the dict does not matter
    assert update_digest({**arrays, "b": np.ones(4, np.float64)}) != base
    assert update_digest({**arrays, "a": np.zeros((3, 2), np.float32)}) != base
    changed = {**arrays, "b": arrays["b"].copy()}
    changed["b"][2] = np.nextafter(np.float32(1), np.float32(2))
    assert update_digest(changed) != base
    assert update_digest({"c": arrays["a"], "b": arrays["b"]}) != base


def test_privatize_clips_the_update_and_scales_the_noise_to_the_clip() -> None:
    rng = np.random.default_rng(0)
    start = {"w": np.zeros(20_000, np.float32)}
    trained = {"w": np.full(20_000, 0.1, np.float32)}  # update norm = 0.1 * sqrt(20000) ≈ 14.1
    sent, info = privatize(start, trained, DpSettings(clip_norm=1.0), rng)
    assert info["clipped"] == 1.0 and info["update_norm"] == pytest.approx(14.142, rel=1e-3)
    assert float(np.linalg.norm(sent["w"])) == pytest.approx(1.0, rel=1e-4)
    noisy, _ = privatize(start, {"w": start["w"]}, DpSettings(clip_norm=2.0, noise_multiplier=0.5), rng)
    assert float(noisy["w"].std()) == pytest.approx(1.0, rel=0.05)  # sigma = noise × clip
    same, info = privatize(start, trained, DpSettings(), rng)
    assert info["clipped"] == 0.0 and np.array_equal(same["w"], trained["w"])


def test_fedprox_term_keeps_local_training_near_the_start() -> None:
    rng = np.random.default_rng(1)
    samples = Samples("x", rng.normal(0, 5, (512, 41)).astype(np.float32), rng.normal(0, 5, (512, 60)).astype(
        np.float32), np.array(["v"] * 512))

    def drift(mu: float) -> float:
        net = ref.new_model(0)
        start = ref.state_arrays(net)
        ref.fit(net, samples, epochs=5, proximal_mu=mu)
        end = ref.state_arrays(net)
        return float(np.sqrt(sum(((end[k] - start[k]) ** 2).sum() for k in start)))

    assert drift(10.0) < 0.5 * drift(0.0)


@pytest.fixture
def gated(tmp_path: Path) -> Workspace:
    home = tmp_path / "ws"
    for region in ("cn-shanghai", "eu-frankfurt", "global"):
        init_workspace(home, region)
    return Workspace.open(home)


@pytest.mark.parametrize(("region", "samples", "released", "rule"), [
    ("cn-shanghai", 999, False, "MU-1"),
    ("cn-shanghai", 1000, True, "XB-3"),
    ("eu-frankfurt", 999, False, "MU-1"),
    ("eu-frankfurt", 5000, True, "GDPR-44.NO-PERSONAL-DATA"),
])
def test_gate_releases_an_update_only_over_enough_samples_and_logs_it(gated: Workspace, region: str, samples: int,
                                                                      released: bool, rule: str) -> None:
    before = open_log(gated, region).size()
    result = release_model_update(gated, region, "global", update_sha256="ab" * 32, aggregated_samples=samples,
                                  dp=DpSettings(), run_id="fed-test", round_number=1)
    assert result.released is released and rule in result.rules
    log = open_log(gated, region)
    opened = 0 if before else 1  # a region's first entry is log_open, which pins its key
    assert log.size() == before + opened + 1 and result.log_index == before + opened
    entry = log.entry(result.log_index)
    assert entry["type"] == "model_update"
    body = entry
    assert body["update_sha256"] == "ab" * 32 and body["released"] is released
    assert body["aggregated_samples"] == samples and body["destination_country"] == "US"
    log.verify()


def test_gate_records_dp_settings_as_an_obligation(gated: Workspace) -> None:
    result = release_model_update(gated, "cn-shanghai", "global", update_sha256="cd" * 32, aggregated_samples=4000,
                                  dp=DpSettings(clip_norm=1.0, noise_multiplier=1.1), run_id="fed-test",
                                  round_number=2)
    assert result.released and "record_dp_settings" in result.obligations
    assert result.entry["dp"] == {"clip_norm": 1.0, "noise_multiplier": 1.1}


def test_gate_keeps_updates_where_the_model_update_rules_are_not_in_force(gated: Workspace) -> None:
    # a workspace made before the pack existed: its [policy].packs lists only the first five
    from fleetgate.workspace.config import save_config

    gated.config.packs = [p for p in gated.config.packs if p != "fleetgate-model-updates"]
    save_config(gated.config)
    ws = Workspace.open(gated.home)
    result = release_model_update(ws, "cn-shanghai", "global", update_sha256="ef" * 32, aggregated_samples=50_000,
                                  dp=DpSettings(), run_id="fed-test", round_number=1)
    assert not result.released and result.outcome == "LOCAL_ONLY"
    assert result.rules[-1] == "GATE-MODEL-UPDATE-RULES" and "fleetgate-model-updates" in result.reasons[-1]
    assert open_log(ws, "cn-shanghai").entry(result.log_index)["released"] is False


def test_federate_refuses_unknown_or_empty_regions(gated: Workspace) -> None:
    result = run_cli("federate", "--regions", "cn-shanghai,mars-base", home=gated.home)
    assert result.returncode == 2 and "unknown region 'mars-base'" in result.stderr
    result = run_cli("federate", "--regions", "cn-shanghai", "--server-region", "cn-shanghai", home=gated.home)
    assert result.returncode == 2 and "cannot also be a client region" in result.stderr
    result = run_cli("federate", "--regions", "cn-shanghai,eu-frankfurt", home=gated.home)
    assert result.returncode == 2 and "region cn-shanghai has no GNSS tracks" in result.stderr
    result = run_cli("federate", "--dp-noise", "1.0", home=gated.home)
    assert result.returncode == 2 and "--dp-noise needs --dp-clip" in result.stderr


# --- the proof: two regions federated beat the non-China region alone, and raw data never moved ----

@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cn-shanghai and eu-frankfurt with enough driving to train on; cn-beijing with too little to share."""
    pytest.importorskip("flwr", reason="federation needs the [federate] extra (flwr[simulation]==1.41.0)")
    root = tmp_path_factory.mktemp("federation")
    home = root / "ws"
    for region in ("cn-shanghai", "eu-frankfurt", "cn-beijing", "global"):
        init_workspace(home, region)
    ws = Workspace.open(home)
    drops = {"cn-shanghai": SampleSpec(vehicles=6, clips=2, seed=1, video_seconds=0.5, drive_seconds=150),
             "eu-frankfurt": SampleSpec(vehicles=6, clips=2, seed=2, video_seconds=0.5, drive_seconds=150,
                                        area="frankfurt"),
             "cn-beijing": SampleSpec(vehicles=3, clips=1, seed=3, video_seconds=0.5, drive_seconds=30)}
    for region, spec in drops.items():
        generate_sample(root / region, spec)
        ingest_drop(ws.region(region), root / region)
    ws.close()
    return home


def _federate(home: Path, *args: str) -> dict:
    result = run_cli("federate", "--rounds", "5", "--local-epochs", "10", "--format", "json", *args, home=home,
                     check=True)
    return json.loads(result.stdout)


@pytest.mark.slow
def test_federation_beats_the_non_china_region_alone_on_china_and_raw_data_stays(fleets: Path) -> None:
    ws = Workspace.open(fleets)
    access_logs = {r: ws.access_log(r) for r in ("cn-shanghai", "eu-frankfurt", "cn-beijing", "global")}
    seen = {r: len(read_access_log(p)) if p.exists() else 0 for r, p in access_logs.items()}

    federated = _federate(fleets, "--regions", "cn-shanghai,eu-frankfurt,cn-beijing")
    shown = run_cli("federate", "--rounds", "5", "--local-epochs", "10", "--regions", "eu-frankfurt",
                    "--evaluate-regions", "cn-shanghai", home=fleets, check=True).stdout
    assert "global model on each region's validation vehicles" in shown and "EXPORT_FREE" in shown
    summary = next(p for p in (fleets / "federation").glob("fed-*.json") if p.stem != federated["run_id"])
    assert summary.stem in shown
    eu_alone = json.loads(summary.read_text())

    # 1. the model that learned from China's roads (through updates only) predicts them better
    china_fed = federated["final_evaluation"]["cn-shanghai"]
    china_eu = eu_alone["final_evaluation"]["cn-shanghai"]
    assert china_fed["samples"] == china_eu["samples"] > 100  # the same China validation vehicles
    assert china_fed["ade_m"] < 0.9 * china_eu["ade_m"], (china_fed, china_eu)
    assert china_fed["ade_m"] < china_fed["constant_velocity_ade_m"]

    # 2. no process acting for another region read a raw asset of China's regions; nothing was refused
    #    because nothing tried; the server (global) read no region's blobs at all
    for region, path in access_logs.items():
        reads = read_access_log(path)[seen[region]:] if path.exists() else []
        if region == "global":
            assert reads == []
            continue
        assert reads, f"{region} trained without reading its store?"
        assert {r["reader"] for r in reads} == {region} and all(r["allowed"] for r in reads)
        assert {r["namespace"] for r in reads} == {"blobs"}

    # 3. every update was decided and logged at its source; the refused ones never reached the server
    rounds = federated["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4, 5]
    for record in rounds:
        by_region = {u["region"]: u for u in record["updates"]}
        assert by_region["cn-shanghai"]["received"] and by_region["eu-frankfurt"]["received"]
        beijing = by_region["cn-beijing"]
        assert not beijing["received"] and beijing["outcome"] == "LOCAL_ONLY" and "MU-1" in beijing["rules"]
    for region, released in (("cn-shanghai", True), ("eu-frankfurt", True), ("cn-beijing", False)):
        log = open_log(ws, region)
        entries = [e for e in log.entries("model_update") if e["run_id"] ==
                   federated["run_id"]]
        assert len(entries) == 5 and all(e["released"] is released for e in entries)
        logged = {e["update_sha256"] for e in entries}
        sent = {u["update_sha256"] for r in rounds for u in r["updates"] if u["region"] == region}
        assert logged == sent  # the server holds exactly the digests the source logged
        log.verify()
    server_log = open_log(ws, "global")
    fed_rounds = [e for e in server_log.entries("federated_round")
                  if e["run_id"] == federated["run_id"]]
    assert len(fed_rounds) == 5
    run_entry = next(e for e in server_log.entries("federated_run")
                     if e["run_id"] == federated["run_id"])
    body = run_entry
    assert body["contributors"] == ["cn-shanghai", "eu-frankfurt"] and body["updates_refused"] == 5

    # 4. the global checkpoint is a catalog asset of the server region with lineage to the updates
    checkpoint = ws.region("global").catalog.get_asset(federated["checkpoint_asset"])
    lineage = checkpoint["tags"]["model_card"]["data_lineage"]
    assert lineage["trained_in"] == ["cn-shanghai", "eu-frankfurt"] and len(lineage["updates"]) == 10
    assert Path(federated["summary"]).is_file()
