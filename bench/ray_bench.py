"""Ray scaling: ingest + classify of the same drop on Ray Data with 1 and 2 workers (and the local engine),
and from the per-core figures the nodes a fleet of 10,000 hours of 1080p video a day needs."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path

from fleetgate.classify import classify_region
from fleetgate.engine import LocalRunner
from fleetgate.engine.runner import RayRunner
from fleetgate.ingest import ingest_drop
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import EngineConfig

HOURS_PER_DAY = 10_000
BITRATE_MBIT = 8.0  # a 1080p30 H.264 dashcam stream
FPS = 30
NODE_CORES = 16


def _drop_bytes(drop: Path) -> int:
    return sum(p.stat().st_size for p in drop.rglob("*") if p.is_file())


def _run(work: Path, drop: Path, runner, tag: str) -> float:  # noqa: ANN001
    home = work / f"ws-{tag}"
    shutil.rmtree(home, ignore_errors=True)
    init_workspace(home, "cn-shanghai")
    with Workspace.open(home) as ws:
        start = time.perf_counter()
        # batches of 8 files, so two workers have batches to share (the same for every engine)
        ingest_drop(ws.region(), drop, runner=runner, home=home, batch_size=8)
        classify_region(ws, runner=runner)
        elapsed = time.perf_counter() - start
    shutil.rmtree(home)
    return elapsed


def bench_ray(work: Path, runs: int, deid_fps_per_core: float | None = None) -> list[str]:
    import ray

    from run import big_video  # the large-video maker of the ingest benchmark

    drop = work / "drop"
    generate_sample(drop, SampleSpec(vehicles=2, clips=2, seed=12, resolution="1080p", video_seconds=1.0,
                                     drive_seconds=20.0))
    videos = sorted(drop.glob("vehicles/*/clips/*/cam_front.mp4"))
    for video in videos:  # 1080p H.264 of 6 s each, large as a dashcam's high-quality stream
        video.unlink()
        big_video(video, seconds_of_gop=1, repeats=6)
    size = _drop_bytes(drop)
    video_s = len(videos) * 6.0
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        engines = {"local engine (this process)": LocalRunner(),
                   "Ray Data, 1 worker": RayRunner(EngineConfig(kind="ray", workers=1)),
                   "Ray Data, 2 workers": RayRunner(EngineConfig(kind="ray", workers=2))}
        for name, runner in engines.items():  # warm-up: actors, imports, packs
            if name != "local engine (this process)":
                _run(work, drop, runner, "warm")
        times: dict[str, list[float]] = {name: [] for name in engines}
        loads = []
        for _ in range(runs):
            for name, runner in engines.items():
                loads.append(os.getloadavg()[0])
                times[name].append(_run(work, drop, runner, name.split()[0]))
    finally:
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    one = med["Ray Data, 1 worker"]
    out = ["## Ray scaling: ingest + classify (issue 18)", "",
           f"The same drop ({size / 1e6:,.0f} MB: 2 vehicles × 2 clips of 6 s 1080p H.264 video at a high bitrate, "
           "CAN, GNSS and the business tables) ingested in batches of 8 files (validated, stored, catalogued with "
           "facts) and classified, on a local Ray "
           f"cluster of 2 CPUs, median of {runs} runs after a warm-up; load average (1 min) while measured: "
           f"{min(loads):.1f}–{max(loads):.1f} (other work shares this 2-core machine).", "",
           "| engine | median s | MB/s | video s per s | vs 1 worker |", "|---|---:|---:|---:|---:|"]
    for name, value in med.items():
        out.append(f"| {name} | {value:.2f} | {size / value / 1e6:,.1f} | {video_s / value:.1f} | {one / value:.2f}× |")
    per_core_mbs = size / one / 1e6
    out += ["", f"2 workers run at **{one / med['Ray Data, 2 workers']:.2f}×** one worker on this 2-core machine, "
            "where the driver's commits and everything else on the machine share the same two cores.", ""]
    out += sizing(per_core_mbs, deid_fps_per_core)
    return out


def sizing(ingest_mbs_per_core: float, deid_fps_per_core: float | None) -> list[str]:
    """Cores and nodes for HOURS_PER_DAY of 1080p video a day, from measured per-core throughput."""
    bytes_per_day = HOURS_PER_DAY * 3600 * BITRATE_MBIT / 8 * 1e6
    frames_per_day = HOURS_PER_DAY * 3600 * FPS
    ingest_cores = bytes_per_day / (ingest_mbs_per_core * 1e6 * 86400)
    rows = [("ingest + classify", f"{ingest_mbs_per_core:,.1f} MB/s", ingest_cores)]
    if deid_fps_per_core:
        rows.append(("de-identify video (faces, plates, verification pass)", f"{deid_fps_per_core:,.1f} fps",
                     frames_per_day / (deid_fps_per_core * 86400)))
    out = [f"Sizing for {HOURS_PER_DAY:,} hours of 1080p30 video a day ({BITRATE_MBIT:g} Mbit/s: "
           f"{bytes_per_day / 1e12:,.0f} TB and {frames_per_day / 1e9:.2f} billion frames a day), from the per-core "
           f"figures measured here, {NODE_CORES}-core nodes, running around the clock at the measured rate:", "",
           "| stage | per core (measured) | cores | nodes |", "|---|---:|---:|---:|"]
    total = 0.0
    for stage, rate, cores in rows:
        total += cores
        out.append(f"| {stage} | {rate} | {cores:,.0f} | {cores / NODE_CORES:,.1f} |")
    out += [f"| **all stages** | | **{total:,.0f}** | **{total / NODE_CORES:,.0f}** |", ""]
    if not deid_fps_per_core:  # a total without the stage that decides the cluster's size would mislead
        out += ["- De-identification is not in this total: the file has no de-identification speed section to "
                "read its rate from (run `bench/run.py --only deid` first).", ""]
    return out
