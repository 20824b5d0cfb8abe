"""In-region training: samples from one region's store, vehicle split, checkpoint asset, residency guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fleetgate.ingest import ingest_drop
from fleetgate.store.residency import ResidencyError, acting_for, read_access_log
from fleetgate.train.dataset import (
    FUTURE,
    PAST,
    _track_samples,
    build_samples,
    constant_velocity_errors,
    split_by_vehicle,
)
from fleetgate.workspace import Workspace

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch==2.13.0)")

from cli_helpers import run_cli  # noqa: E402


def test_straight_drive_gives_ego_frame_samples() -> None:
    # heading north-east at 10 m/s, 10 Hz: every input and target lies on the x axis of the ego frame
    n = 100
    t = np.arange(n) / 10
    lat = 31.0 + (t * 10 / np.sqrt(2)) / 111_320.0
    lon = 121.0 + (t * 10 / np.sqrt(2)) / (111_320.0 * np.cos(np.radians(31.0 + 0.0005)))
    x, y = _track_samples(lat, lon)
    assert x.shape[1] == PAST * 2 + 1 and y.shape[1] == FUTURE * 2 and len(x) > 5
    future = y.reshape(len(y), FUTURE, 2)
    assert np.allclose(future[:, :, 1], 0, atol=0.05)  # no sideways motion
    assert np.allclose(future[:, -1, 0], 30.0, atol=0.3)  # 3 s at 10 m/s
    assert np.allclose(x[:, -1], 10.0, atol=0.2)  # speed


def test_training_reads_only_its_region_and_stores_a_checkpoint(workspace: Workspace, sample_drop: Path) -> None:
    ingest_drop(workspace.region(), sample_drop)
    samples = build_samples(workspace, "cn-shanghai")
    train, val = split_by_vehicle(samples)
    assert len(train) and len(val) and not set(train.vehicles) & set(val.vehicles)
    assert constant_velocity_errors(val)["ade_m"] > 0
    reads = read_access_log(workspace.access_log("cn-shanghai"))
    assert reads and all(r["reader"] == "cn-shanghai" and r["allowed"] for r in reads)
    # code acting for another region is refused and the attempt recorded
    asset = next(a for a in workspace.region().catalog.list_assets() if a["kind"] == "gnss_trajectory")
    with acting_for("eu-frankfurt"), pytest.raises(ResidencyError, match="eu-frankfurt"):
        workspace.region().blobs.open(asset["sha256"])
    refused = [r for r in read_access_log(workspace.access_log("cn-shanghai")) if not r["allowed"]]
    assert len(refused) == 1 and refused[0]["reader"] == "eu-frankfurt"

    result = run_cli("train", "--epochs", "30", "--format", "json", home=workspace.home, check=True)
    card = json.loads(result.stdout)
    checkpoint = workspace.region().catalog.get_asset(card["asset_id"])
    assert checkpoint["kind"] == "model_checkpoint" and checkpoint["tags"]["model_card"]["region"] == "cn-shanghai"
    assert card["data_lineage"]["vehicles"] == 2 and card["data_lineage"]["assets"] == samples.lineage()["assets"]
    assert set(card["packs"]) >= {"cn-auto-2021", "cn-xborder-2024"}
    assert all(v.startswith("sha256:") for v in card["packs"].values())
    val_metrics = card["metrics"]["validation"]
    assert val_metrics["ade_m"] < card["metrics"]["validation_constant_velocity"]["ade_m"]  # it learned the roads
    assert Path(card["model_card"]).is_file()
    kinds = [e["type"] for e in __import__("fleetgate.audit", fromlist=["open_log"]).open_log(workspace).entries()]
    assert "train_run" in kinds


def test_train_without_data_is_a_usage_error(workspace: Workspace) -> None:
    result = run_cli("train", home=workspace.home)
    assert result.returncode == 2 and "no GNSS tracks" in result.stderr
