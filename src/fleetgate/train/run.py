"""`fleetgate train --region R`: train the reference model in-region, store the checkpoint, write a card.

The checkpoint is a catalog asset of kind `model_checkpoint` in the region's own store (it was
trained on raw data, so it has no policy kind and stays LOCAL_ONLY), tagged with its lineage (which
trajectory assets, how many vehicles and samples), its validation metrics and the hashes of the rule
packs in force. The model card says the same in JSON next to the workspace. Training is logged in
the region's transparency log.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetgate.audit import canonical
from fleetgate.audit.facts import Facts
from fleetgate.audit.log import region_log
from fleetgate.policy.service import packs_for
from fleetgate.store.catalog import utcnow
from fleetgate.train import model as ref
from fleetgate.train.dataset import build_samples, constant_velocity_errors, split_by_vehicle
from fleetgate.workspace import Workspace

MODEL_NAME = "ego-trajectory-mlp"


@dataclass
class TrainResult:
    asset_id: str
    card_path: Path
    card: dict[str, Any]


def model_card(region: str, lineage: dict, metrics: dict, settings: dict, packs: dict[str, str],
               extra: dict | None = None) -> dict[str, Any]:
    return {
        "model": MODEL_NAME,
        "task": "predict the next 3 s of the ego path (x forward, y left, metres) from the past 2 s and speed",
        "region": region,
        "data_lineage": lineage,
        "split": "by vehicle (a hash of the VIN); no vehicle is in both train and validation",
        "metrics": metrics,
        "settings": settings,
        "packs": packs,
        "residency": f"trained from region {region}'s store only; the checkpoint stays in {region}",
        **(extra or {}),
    }


def store_checkpoint(ws: Workspace, region: str, state: bytes, card: dict[str, Any]) -> tuple[str, Path]:
    reg = ws.region(region)
    put = reg.blobs.put_bytes(state)
    asset_id = "as_" + hashlib.sha256(f"{region}\0train\0".encode() + canonical(card)).hexdigest()[:24]
    if not reg.catalog.existing_asset_ids([asset_id]):
        row = {"id": asset_id, "kind": "model_checkpoint", "region": region, "sha256": put.sha256, "bytes": put.size,
               "file_format": "pt", "vehicle": None, "clip_id": None, "t_start": None, "t_end": None,
               "source_drop": None, "source_path": f"models/{MODEL_NAME}/{asset_id}.pt", "parent_id": None,
               "ingest_run": None, "tags": {"derived": "train", "model_card": card}, "created_at": utcnow()}
        with reg.catalog.transaction() as conn:
            reg.catalog.insert_assets(conn, [row])
            region_log(reg).append(conn, "train_run", {
                "asset_id": asset_id, "checkpoint_sha256": put.sha256, "lineage": card["data_lineage"],
                "metrics": card["metrics"], "packs": card.get("packs", {}),
                "facts": {"assets": [Facts.of(reg).asset(row)]}}, at=row["created_at"])
    card_path = ws.home / "models" / region / f"{asset_id}.model_card.json"
    card_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = card_path.with_suffix(".partial")
    tmp.write_text(json.dumps({"asset_id": asset_id, "checkpoint_sha256": put.sha256, **card}, indent=2) + "\n")
    os.replace(tmp, card_path)
    return asset_id, card_path


def train_region(ws: Workspace, region: str | None = None, epochs: int = 40, seed: int = 0,
                 device: str = "auto") -> TrainResult:
    cfg = ws.config.region(region)
    samples = build_samples(ws, cfg.name)
    train, val = split_by_vehicle(samples)
    dev = ref.device(device)
    net = ref.new_model(seed)
    fit = ref.fit(net, train, epochs=epochs, seed=seed, dev=dev)
    metrics = {"validation": ref.evaluate(net, val, dev) if len(val) else None,
               "validation_constant_velocity": constant_velocity_errors(val) if len(val) else None,
               "train": ref.evaluate(net, train, dev), "final_loss": round(fit.final_loss, 6),
               "samples_per_s": round(fit.samples_per_s, 1), "device": dev}
    settings = {"epochs": epochs, "seed": seed, "optimizer": "adamw", "weight_decay": ref.WEIGHT_DECAY,
                "loss": "mean displacement", "lr": 2e-3, "batch": 256}
    packs = {p.id: p.hash_ref for p in packs_for(ws, cfg.name)}
    lineage = {**samples.lineage(), "train_samples": len(train), "validation_samples": len(val)}
    card = model_card(cfg.name, lineage, metrics, settings, packs)
    asset_id, card_path = store_checkpoint(ws, cfg.name, ref.state_bytes(net), card)
    return TrainResult(asset_id, card_path, card)
