"""Costs as the catalog grows: plan, classify one batch, checkpoint, proof and `audit verify` at 10^4..10^6 assets.

The catalogs are synthetic in their rows and real in their code paths: each asset is a CAN log of a
vehicle (a real Parquet blob from the sample generator, shared), catalogued by `Catalog.insert_assets`
with its `ingest` facts logged per batch of 64 as ingest does, then classified by `classify_region`
(facts per batch of 64). Each figure is then measured on that catalog through the code a user runs.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np

from fleetgate.audit import open_log
from fleetgate.audit.facts import Facts
from fleetgate.classify import classify_region
from fleetgate.classify.assets import ClassifyWork, _save
from fleetgate.domain.clock import FixedClock
from fleetgate.formats.drop_layout import asset_id
from fleetgate.gate import make_plan, verify_region
from fleetgate.policy.service import ledger_ytd
from fleetgate.sample import SampleSpec, generate_sample, identities
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace, init_workspace
from gate_bench import bench_people

CLOCK = FixedClock(dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC))
BATCH = 64


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} / {five:.1f}"


def _add_assets(ws: Workspace, start: int, count: int, sha: str, size: int, vins: list[str]) -> list[str]:
    """Catalog `count` CAN-log assets with their ingest facts, 64 to an entry; returns their ids."""
    region = ws.region()
    ids: list[str] = []
    log, facts = open_log(ws), Facts(region.keys.pseudonym_key())
    for first in range(start, start + count, BATCH):
        rows = []
        for i in range(first, min(first + BATCH, start + count)):
            vin, clip = vins[i % len(vins)], f"c{i:08d}"
            path = f"vehicles/{vin}/clips/{clip}/can.parquet"
            rows.append({"id": asset_id(region.name, path, sha), "kind": "can_telemetry", "region": region.name,
                         "sha256": sha, "bytes": size, "file_format": "parquet", "vehicle": vin, "clip_id": clip,
                         "t_start": CLOCK.now(), "t_end": CLOCK.now(), "source_drop": "bench-drop",
                         "source_path": path, "parent_id": None, "ingest_run": "run_bench", "tags": {},
                         "created_at": CLOCK.now()})
        with region.catalog.transaction() as conn:
            region.catalog.insert_assets(conn, rows)
            log.append(conn, "ingest", {"run": "run_bench", "drop": "bench-drop",
                                        "facts": {"assets": [facts.asset(r) for r in rows], "quarantine": []}},
                       at=CLOCK.now())
        ids += [r["id"] for r in rows]
    return ids


def _catalog(work: Path, n: int) -> tuple[Path, object, str, int, list[str]]:
    home = work / f"ws-{n}"
    init_workspace(home, "cn-shanghai")
    drop = work / "can-drop"
    if not drop.exists():
        generate_sample(drop, SampleSpec(vehicles=1, clips=1, seed=2, video_seconds=0.5, drive_seconds=4.0))
    can = next(drop.glob("vehicles/*/clips/*/can.parquet"))
    rng = np.random.default_rng(7)
    vins = [identities.vin(rng) for _ in range(1000)]
    (work / f"people-{n}").mkdir(exist_ok=True)
    with Workspace.open(home) as ws:
        engineer = bench_people(ws, work / f"people-{n}")
        put = ws.region().blobs.put_file(can)
        _add_assets(ws, 0, n, put.sha256, put.size, vins)
        _classify_like_the_first(ws)
    return home, engineer, put.sha256, put.size, vins


def _classify_like_the_first(ws: Workspace) -> None:
    """Classify the first asset with classify's own work, then store the same classification (with each
    asset's id and its vehicle's subject key) for every asset through classify's own save: the rows and
    facts `classify_region` writes, without deciding a million identical assets one by one."""
    from fleetgate.keys.region_keys import pseudonym

    region = ws.region()
    ledger = Ledger(region.catalog)
    assets = ledger.unclassified_assets(region.name)
    work = ClassifyWork("", region.name, "US", CLOCK.today(), ledger_ytd(ws, region.name, CLOCK.today().year),
                        opened=ws)
    template = work.one(assets[0])
    categories = sorted({c for _, c in template["subjects"]})
    for first in range(0, len(assets), BATCH):
        batch = [(template["row"] | {"asset_id": a["id"]},
                  [(pseudonym(work.key, a["vehicle"], "vin"), c) for c in categories])
                 for a in assets[first:first + BATCH]]
        _save(region, ledger, batch, CLOCK)


def _timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(work: Path, n: int, runs: int) -> dict[str, float]:
    build = time.perf_counter()
    home, engineer, sha, size, vins = _catalog(work, n)
    out: dict[str, float] = {"build_s": time.perf_counter() - build, "load": os.getloadavg()[0]}
    with Workspace.open(home) as ws:
        log = open_log(ws)
        batch, checkpoint, proof = [], [], []
        for run in range(runs):
            new = _add_assets(ws, n + run * BATCH, BATCH, sha, size, vins)
            batch.append(_timed(lambda ids=new: classify_region(ws, clock=CLOCK, asset_ids=ids)) / BATCH)
        for i in range(20):  # a new size each time: one small entry, then its checkpoint
            with ws.region().catalog.transaction() as conn:
                log.append(conn, "model_update", {"bench": i}, at=CLOCK.now())
            checkpoint.append(_timed(log.checkpoint))
        size_now = log.root()[0]
        rng = random.Random(n)
        for _ in range(20):
            index = rng.randrange(size_now)
            proof.append(_timed(lambda i=index: log.prove(i, size_now)))
        verify = [_timed(lambda: verify_region(ws)) for _ in range(max(1, runs // 2))]
        total = n + runs * BATCH
        plan = [_timed(lambda r=r: make_plan(ws, "overseas", engineer, purpose=f"scale {r}", clock=CLOCK))
                for r in range(max(1, runs // 2))]
    out |= {"assets": total, "entries": size_now,
            "classify_batch_us": statistics.median(batch) * 1e6, "checkpoint_ms": statistics.median(checkpoint) * 1e3,
            "proof_ms": statistics.median(proof) * 1e3, "verify_us": statistics.median(verify) / total * 1e6,
            "plan_us": statistics.median(plan) / total * 1e6, "verify_s": statistics.median(verify),
            "plan_s": statistics.median(plan)}
    return out


ROWS = [("plan (per asset planned)", "plan_us", "µs"),
        ("classify one batch of 64 (per asset)", "classify_batch_us", "µs"),
        ("checkpoint (one)", "checkpoint_ms", "ms"),
        ("inclusion proof (one)", "proof_ms", "ms"),
        ("`audit verify` (per asset)", "verify_us", "µs")]


def bench_scale(work: Path, runs: int, sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)) -> list[str]:
    results = {}
    for n in sizes:
        results[n] = measure(work, n, max(3, runs))
        print(f"scale {n}: {results[n]}", flush=True)
    first, last = sizes[0], sizes[-1]
    out = ["## Costs as the catalog grows (issue 18)", "",
           "Catalogs of synthetic CAN-log assets built through the real code paths (catalog rows with their "
           "`ingest` facts per batch of 64; classification rows with their facts through classify's own work and "
           "save), SQLite (WAL). Per size: classify one new batch of 64 assets (`classify_region(asset_ids=…)`, "
           "what a pipeline run classifies after its ingest), checkpoint the log, an inclusion proof of a random "
           "entry and a checkpoint after a one-entry append (medians of 20 each), "
           f"`audit verify` and an export plan over every asset; medians of {max(3, runs)} (classify) "
           f"or {max(1, max(3, runs) // 2)} (verify, plan) runs. Load average (1 min) measured at each size, since "
           "other work shares this 2-core machine.", "",
           "| what | " + " | ".join(f"{n:,} assets" for n in sizes) + f" | {last:,} vs {first:,} |",
           "|---|" + "---:|" * (len(sizes) + 1)]
    verdicts = []
    for label, key, unit in ROWS:
        cells = [f"{results[n][key]:,.2f} {unit}" for n in sizes]
        growth = results[last][key] / results[first][key] - 1
        verdicts.append((label, growth))
        out.append(f"| {label} | " + " | ".join(cells) + f" | {growth:+.0%} |")
    out.append("| log entries | " + " | ".join(f"{results[n]['entries']:,}" for n in sizes) + " | |")
    out.append("| verify, whole catalog | " + " | ".join(f"{results[n]['verify_s']:.1f} s" for n in sizes) + " | |")
    out.append("| plan, whole catalog | " + " | ".join(f"{results[n]['plan_s']:.1f} s" for n in sizes) + " | |")
    out.append("| load average while measured | " + " | ".join(f"{results[n]['load']:.1f}" for n in sizes) + " | |")
    grown = [label for label, g in verdicts if g > 0.20]
    out += ["", "Target: no per-asset cost (per operation for checkpoint and proof) grows more than 20% from "
            f"{first:,} to {last:,} assets: " + ("met." if not grown else "missed for " + ", ".join(grown) + "."), ""]
    return out
