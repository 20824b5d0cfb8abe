"""Costs as the catalog grows: plan, classify one batch, checkpoint, proof and `audit verify` at 10^4..10^6 assets.

The catalogs are synthetic in their rows and real in their code paths: each asset is a CAN log of a
vehicle (a real Parquet blob from the sample generator, shared), catalogued by `Catalog.insert_assets`
with its `ingest` facts logged per batch of 64 as ingest does, then classified by `classify_region`
(facts per batch of 64). Each figure is then measured on that catalog through the code a user runs.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import resource
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from fleetgate.audit import open_log
from fleetgate.audit.facts import Facts
from fleetgate.audit.tiles import WIDTH
from fleetgate.classify import classify_region
from fleetgate.classify.assets import ClassifyWork, _save
from fleetgate.domain.clock import FixedClock
from fleetgate.formats.drop_layout import asset_id
from fleetgate.gate import make_plan, verify_region
from fleetgate.keys.personal import Actor
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
    """The catalog of `n` assets in `work` (built once: a folder kept with --scale-keep is reused)."""
    home, built = work / f"ws-{n}", work / f"ws-{n}.built"
    drop = work / "can-drop"
    if not drop.exists():
        generate_sample(drop, SampleSpec(vehicles=1, clips=1, seed=2, video_seconds=0.5, drive_seconds=4.0))
    can = next(drop.glob("vehicles/*/clips/*/can.parquet"))
    rng = np.random.default_rng(7)
    vins = [identities.vin(rng) for _ in range(1000)]
    if built.exists():
        engineer = Actor.from_key_file("Bench Engineer", work / f"people-{n}" / "engineer.key")
        with Workspace.open(home) as ws:
            put = ws.region().blobs.put_file(can)  # already stored: found again by its digest
        return home, engineer, put.sha256, put.size, vins
    shutil.rmtree(home, ignore_errors=True)
    init_workspace(home, "cn-shanghai")
    (work / f"people-{n}").mkdir(exist_ok=True)
    with Workspace.open(home) as ws:
        engineer = bench_people(ws, work / f"people-{n}")
        put = ws.region().blobs.put_file(can)
        _add_assets(ws, 0, n, put.sha256, put.size, vins)
        _classify_like_the_first(ws)
    built.touch()
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


def _timed(fn) -> tuple[float, float]:  # noqa: ANN001
    """(wall, CPU) seconds of one call; CPU time is this process's, which the machine's other work
    (this 2-core machine is shared) changes far less than the wall clock."""
    cpu, start = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def _once(ws: Workspace, run: int, catalog: tuple, out: dict[str, list[float]], whole: bool) -> None:
    """One round of every measurement on one catalog (its size grows by one batch per round). `whole`:
    also `audit verify` and a plan over every asset (minutes each at a million assets)."""
    _home, engineer, sha, size, vins = catalog
    log = open_log(ws)
    first = _asset_count(ws)
    new = _add_assets(ws, first, BATCH, sha, size, vins)
    wall, cpu = _timed(lambda: classify_region(ws, clock=CLOCK, asset_ids=new))
    out["classify_batch_us"].append(wall / BATCH * 1e6)
    out["classify_batch_cpu_us"].append(cpu / BATCH * 1e6)
    for i in range(20):  # a new size each time: one small entry, then its checkpoint
        with ws.region().catalog.transaction() as conn:
            log.append(conn, "model_update", {"bench": [first, run, i]}, at=CLOCK.now())
        wall, cpu = _timed(log.checkpoint)
        out["checkpoint_ms"].append(wall * 1e3)
        out["checkpoint_cpu_ms"].append(cpu * 1e3)
    size_now = log.root()[0]
    rng = random.Random(first + run)
    for _ in range(20):
        index = rng.randrange(size_now)
        wall, cpu = _timed(lambda i=index: log.prove(i, size_now))
        out["proof_ms"].append(wall * 1e3)
        out["proof_cpu_ms"].append(cpu * 1e3)
    out["entries"].append(size_now)
    out["load"].append(os.getloadavg()[0])
    if not whole:
        return
    total = first + BATCH
    wall, cpu = _timed(lambda: verify_region(ws))
    out["verify_us"].append(wall / total * 1e6)
    out["verify_cpu_us"].append(cpu / total * 1e6)
    wall, cpu = _timed(lambda: make_plan(ws, "overseas", engineer, purpose=f"scale {first}", clock=CLOCK))
    out["plan_us"].append(wall / total * 1e6)
    out["plan_cpu_us"].append(cpu / total * 1e6)
    out["verify_s"].append(out["verify_us"][-1] * total / 1e6)
    out["plan_s"].append(out["plan_us"][-1] * total / 1e6)
    if run == 0:  # sizes go up within a round: the process's peak so far is this size's peak
        out["peak_gb"].append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6)


def _asset_count(ws: Workspace) -> int:
    return sum(int(s["assets"]) for s in ws.region().catalog.stats())


def _available_gb() -> float:
    with open("/proc/meminfo", encoding="ascii") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    return int(fields["MemAvailable"].split()[0]) / 1e6


def measure(work: Path, sizes: tuple[int, ...], runs: int) -> tuple[dict[int, dict[str, float]], list[str]]:
    """Build every catalog, then measure them in turns (each round visits every size, so a busy spell
    of the machine falls on all of them); the largest gets fewer rounds when it takes minutes each.
    Verify keeps a digest of every asset's logged facts and a plan holds one item per asset: a size
    whose projected peak (from the peak of the size before it) exceeds the memory available skips
    them, and the notes say so."""
    catalogs, builds = {}, {}
    for n in sizes:
        start, found = time.perf_counter(), (work / f"ws-{n}.built").exists()
        catalogs[n] = _catalog(work, n)
        builds[n] = -1.0 if found else time.perf_counter() - start
        print(f"scale {n}: {'found' if found else f'built in {builds[n]:.0f} s'}", flush=True)
    samples: dict[int, dict[str, list[float]]] = {n: defaultdict(list) for n in sizes}
    notes: list[str] = []
    for run in range(runs):
        for before, n in zip((None, *sizes), sizes, strict=False):
            whole = run < _rounds(n, runs)
            if whole and before is not None and samples[before]["peak_gb"]:
                projected = max(samples[before]["peak_gb"]) * n / before
                whole = projected < 0.8 * _available_gb()
                if not whole and run == 0:
                    notes.append(f"{n:,} assets: verify and plan not run; their peak memory, projected from "
                                 f"{before:,} assets, is {projected:.0f} GB, more than 80% of the "
                                 f"{_available_gb():.0f} GB available.")
            with Workspace.open(catalogs[n][0]) as ws:
                _once(ws, run, catalogs[n], samples[n], whole)
            print(f"scale {n} round {run}: {({k: round(v[-1], 2) for k, v in samples[n].items()})}", flush=True)
    results = {n: {k: statistics.median(v) for k, v in samples[n].items()} | {"build_s": builds[n],
                                                                            "rounds": _rounds(n, runs)}
               for n in sizes}
    return results, notes


def _rounds(n: int, runs: int) -> int:
    """Rounds with verify and plan over the whole catalog (minutes each at a million assets)."""
    return runs if n < 1_000_000 else max(1, runs // 3)


ROWS = [("plan (per asset planned)", "plan_cpu_us", "plan_us", "µs"),
        ("classify one batch of 64 (per asset)", "classify_batch_cpu_us", "classify_batch_us", "µs"),
        ("checkpoint (one)", "checkpoint_cpu_ms", "checkpoint_ms", "ms"),
        ("inclusion proof (one)", "proof_cpu_ms", "proof_ms", "ms"),
        ("`audit verify` (per asset)", "verify_cpu_us", "verify_us", "µs")]


def bench_scale(work: Path, runs: int, sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)) -> list[str]:
    runs = max(3, runs)
    results, notes = measure(work, sizes, runs)
    for n in sizes:
        print(f"scale {n}: {results[n]}", flush=True)
    first, last = sizes[0], sizes[-1]
    rounds = ", ".join(f"{int(results[n]['rounds'])} at {n:,}" for n in sizes)
    rounds = f"{rounds}; {runs} rounds of the rest at every size"
    out = ["## Costs as the catalog grows (issue 18)", "",
           "Catalogs of synthetic CAN-log assets built through the real code paths (catalog rows with their "
           "`ingest` facts per batch of 64; classification rows with their facts through classify's own work and "
           "save), SQLite (WAL). Every catalog is built first; then rounds visit each size in turn (so a busy spell "
           "of this shared 2-core machine falls on all sizes alike). A round: classify one new batch of 64 assets "
           "(`classify_region(asset_ids=…)`, what a pipeline run classifies after its ingest), 20 checkpoints each "
           "after a one-entry append, 20 inclusion proofs of random entries, `audit verify` and an export plan over "
           f"every asset (rounds with those two: {rounds}). Medians over the rounds. Each cell gives the CPU time of "
           "the process and, after the slash, the wall time; the target is judged on CPU time, which the "
           "machine's other work changes far less.", "",
           "| what (CPU / wall) | " + " | ".join(f"{n:,} assets" for n in sizes) + f" | {last:,} vs {first:,} (CPU) |",
           "|---|" + "---:|" * (len(sizes) + 1)]
    verdicts = []
    for label, cpu_key, wall_key, unit in ROWS:
        measured = [n for n in sizes if cpu_key in results[n]]
        cells = [f"{results[n][cpu_key]:,.2f} / {results[n][wall_key]:,.2f} {unit}" if n in measured else "–"
                 for n in sizes]
        growth = results[measured[-1]][cpu_key] / results[first][cpu_key] - 1
        verdicts.append((label, growth, measured[-1]))
        out.append(f"| {label} | " + " | ".join(cells) + f" | {growth:+.0%}"
                   + (f" (to {measured[-1]:,})" if measured[-1] != last else "") + " |")
    def line(label: str, cell) -> str:  # noqa: ANN001
        return f"| {label} | " + " | ".join(cell(results[n]) for n in sizes) + " | |"

    out += [line("log entries", lambda r: f"{int(r['entries']):,}"),
            line("build (catalog, facts, classifications)",
                 lambda r: f"{r['build_s']:.0f} s" if r["build_s"] >= 0 else "kept from an earlier run"),
            line("verify, whole catalog (wall)", lambda r: f"{r['verify_s']:.1f} s" if "verify_s" in r else "–"),
            line("plan, whole catalog (wall)", lambda r: f"{r['plan_s']:.1f} s" if "plan_s" in r else "–"),
            line("peak memory of the process (verify and plan, first round)",
                 lambda r: f"{r['peak_gb']:.1f} GB" if "peak_gb" in r else "–"),
            line("load average while measured", lambda r: f"{r['load']:.1f}")]
    grown = [label for label, g, _ in verdicts if g > 0.20]
    short = [f"{label} (measured to {upto:,})" for label, _, upto in verdicts if upto != last]
    out += [""] + [f"- {note}" for note in notes]
    out += ["", "Target: no per-asset cost (per operation for checkpoint and proof) grows more than 20% from "
            f"{first:,} to {last:,} assets: " + ("met" if not grown else "missed for " + ", ".join(grown))
            + (f"; not measured at {last:,} for " + ", ".join(short) if short else "") + ".", ""]
    out += [_proof_note(results[first]["entries"], results[last]["entries"]), ""]
    return out


def _proof_note(small: float, large: float) -> str:
    """Why an inclusion proof costs more in a longer log, from the two logs' sizes."""
    def tiles(entries: float) -> int:
        return -(-int(entries) // WIDTH)

    return (f"An inclusion proof is O(log n) by design, per operation: the log grows from {int(small):,} to "
            f"{int(large):,} entries, its path from {math.ceil(math.log2(small))} to {math.ceil(math.log2(large))} "
            f"hashes, and its level-0 tiles from {tiles(small)} to {tiles(large)}: with {tiles(small)} tiles a "
            "random entry's tile is one an earlier proof or checkpoint kept, with "
            f"{tiles(large)} it is mostly read and hashed afresh ({WIDTH - 1} hashes). Per asset of the catalog, a "
            "proof costs less the larger the catalog.")
