"""Training throughput of the reference model: samples per second on CPU (and CUDA when present)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from fleetgate.ingest import ingest_drop
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.workspace import Workspace, init_workspace


def bench_train(work: Path, runs: int) -> list[str]:
    try:
        import torch
    except ImportError:
        return ["## Training throughput", "", "Not measured: torch is not installed (`pip install '.[train]'`).", ""]
    from fleetgate.train import build_samples
    from fleetgate.train import model as ref

    drop = work / "drop"
    generate_sample(drop, SampleSpec(vehicles=8, clips=2, seed=3, video_seconds=0.5, drive_seconds=60.0))
    init_workspace(work / "ws", "cn-shanghai")
    with Workspace.open(work / "ws") as ws:
        ingest_drop(ws.region(), drop)
        t = time.perf_counter()
        samples = build_samples(ws, "cn-shanghai")
        load_s = time.perf_counter() - t
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        rates = []
        for run in range(runs):
            net = ref.new_model(run)
            rates.append(ref.fit(net, samples, epochs=20, seed=run, dev=dev).samples_per_s)
        rows.append(f"| {dev} ({torch.get_num_threads()} threads) | {statistics.median(rates):,.0f} |")
    return ["## Training throughput", "",
            f"Reference model (MLP, 41 → 256 → 256 → 60, a correction to constant velocity), batch 256, AdamW, "
            f"20 epochs over {len(samples):,} samples "
            f"from 16 one-minute drives of the sample fleet; torch {torch.__version__}; median of {runs} runs. "
            f"Building the samples from the region's store took {load_s:.2f} s.", "",
            "| device | training samples/s |", "|---|---|", *rows, "",
            *([] if "cuda" in devices else ["No GPU on this machine: the CUDA row appears where one is.", ""])]
