"""What logging every fact costs ingest: this tree against the commit before facts were logged, same drops, same run.

Both versions ingest in a fresh process each (the import is not timed): the one under test from
this checkout, the baseline from `git archive` of BASE_COMMIT unpacked under bench/.work, both
on the same virtual environment. Two drops: many small files (where per-file catalog and log work
shows) and, when the ingest benchmark ran in the same `make bench`, its large videos (where the
disk does).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from fleetgate.sample import SampleSpec, generate_sample

BASE_COMMIT = "aa25dcf"  # the last commit before "the gate trusts only what it can verify"
ROOT = Path(__file__).resolve().parents[1]

INGEST = """
import json, sys, time
from pathlib import Path
from fleetgate.ingest import ingest_drop
from fleetgate.workspace import Workspace, init_workspace
home, drop = Path(sys.argv[1]), Path(sys.argv[2])
init_workspace(home, "cn-shanghai")
with Workspace.open(home) as ws:
    region = ws.region()
    start = time.perf_counter()
    report = ingest_drop(region, drop)
    print(json.dumps({"s": time.perf_counter() - start, "landed": report.landed}))
"""


def baseline_tree(work: Path) -> Path:
    """The baseline's sources, from git (no worktree, nothing committed)."""
    out = ROOT / "bench" / ".work" / f"base-{BASE_COMMIT}"
    if not (out / "src" / "fleetgate").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASE_COMMIT, "src"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


def _ingest(src: Path, home: Path, drop: Path) -> float:
    proc = subprocess.run([sys.executable, "-c", INGEST, str(home), str(drop)], check=True, capture_output=True,
                          text=True, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["s"])


def bench_fact_logging(work: Path, runs: int, big_video_drop: Path | None = None) -> list[str]:
    small = work / "small"
    generate_sample(small, SampleSpec(vehicles=16, clips=4, seed=8, video_seconds=0.5, drive_seconds=5.0))
    drops = {f"{sum(1 for p in small.rglob('*') if p.is_file())} small files": small}
    if big_video_drop is not None:
        drops["3 large videos"] = big_video_drop
    trees = {"before (no facts logged)": baseline_tree(work), "now (facts logged)": ROOT / "src"}
    out = ["## Ingest with every fact logged (issue 13)", "",
           f"The same drops ingested by this tree and by `{BASE_COMMIT}`, the commit before ingest logged a fact "
           "per asset (one `ingest` log entry per batch of 64, with keyed digests of the vehicle, clip and path), "
           f"each in a fresh process, alternating, median of {runs} runs.", "",
           "| drop | before s | now s | now vs before |", "|---|---:|---:|---:|"]
    for label, drop in drops.items():
        times: dict[str, list[float]] = {name: [] for name in trees}
        for run in range(runs):
            for name, src in trees.items():
                home = work / f"ws-{run}-{len(times[name])}-{name[:3]}"
                times[name].append(_ingest(src, home, drop))
                subprocess.run(["rm", "-rf", str(home)], check=True)
        before, now = (statistics.median(v) for v in times.values())
        out.append(f"| {label} | {before:.2f} | {now:.2f} | {now / before - 1:+.0%} |")
    out += ["", "Target: within 10% of before.", ""]
    return out
