"""Federated round overhead: what the gate (decide + log at the source) and the server's audit
(digest checks + round log) add to a Flower round, measured inside the same rounds."""

from __future__ import annotations

import platform
import statistics
from pathlib import Path

from fleetgate.ingest import ingest_drop
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.workspace import Workspace, init_workspace

REGIONS = ("cn-shanghai", "eu-frankfurt")


def bench_federate(work: Path, runs: int, rounds: int = 6, local_epochs: int = 10) -> list[str]:
    try:
        import flwr
        import torch
    except ImportError:
        return ["## Federated round overhead", "",
                "Not measured: needs `pip install '.[train,federate]'` (torch and flwr).", ""]
    from fleetgate.train.federation import FederationSettings, run_federation

    home = work / "ws"
    for region in (*REGIONS, "global"):
        init_workspace(home, region)
    with Workspace.open(home) as ws:
        for region, area, seed in (("cn-shanghai", "shanghai", 1), ("eu-frankfurt", "frankfurt", 2)):
            generate_sample(work / region, SampleSpec(vehicles=6, clips=2, seed=seed, video_seconds=0.5,
                                                      drive_seconds=240.0, area=area))
            ingest_drop(ws.region(region), work / region)
        rows, shares, warm_rounds = [], [], []
        for run in range(runs):
            result = run_federation(ws, FederationSettings(regions=REGIONS, rounds=rounds, local_epochs=local_epochs,
                                                           seed=run))
            for record in result.rounds:
                # clients run in parallel: the slowest region's gate call is on the round's critical path
                gate = max((u.get("gate_seconds") or 0.0) for u in record.updates)
                overhead = gate + record.audit_seconds
                if record.round > 1:  # round 1 includes Ray starting the actors
                    shares.append(overhead / record.seconds)
                    warm_rounds.append((record.seconds, gate, record.audit_seconds))
            samples = sum(u["samples"] for u in result.rounds[-1].updates)
            rows.append(f"| {run + 1} | {result.seconds:.1f} | {result.rounds[0].seconds:.2f} | "
                        f"{statistics.median(r.seconds for r in result.rounds[1:]):.3f} | {samples:,} |")
    round_s = statistics.median(r[0] for r in warm_rounds)
    gate_s = statistics.median(r[1] for r in warm_rounds)
    audit_s = statistics.median(r[2] for r in warm_rounds)
    share = statistics.median(shares)
    verdict = "met" if share < 0.05 else "missed"
    return ["## Federated round overhead", "",
            f"`fleetgate federate` equivalent: regions {', '.join(REGIONS)} → global, FedAvg, {rounds} rounds of "
            f"{local_epochs} local epochs, 6 vehicles × 2 four-minute drives per region, Flower {flwr.__version__} "
            f"simulation on Ray, torch {torch.__version__} on CPU, {platform.processor() or platform.machine()}; "
            f"{runs} runs. Overhead per round = the slowest region's gate call (policy decision + signed log "
            "entry, timed inside the ClientApp) + the server's audit (update digest checks + `federated_round` log "
            "entry). The rest of the round is Flower and training, measured in the same rounds.", "",
            "| run | total s | round 1 s (Ray start) | median later round s | training samples per round |",
            "|---|---|---|---|---|", *rows, "",
            "| median over later rounds | seconds |", "|---|---|",
            f"| round (Flower + local training + gate + audit) | {round_s:.3f} |",
            f"| gate at the source | {gate_s * 1000:.1f} ms |",
            f"| server audit | {audit_s * 1000:.1f} ms |",
            f"| **overhead share of the round** | **{share:.2%}** (target < 5%: {verdict}) |", ""]
