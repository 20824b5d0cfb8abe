"""What logging every fact costs ingest: this tree against the commit before facts were logged, same drops, same run.

Both versions ingest in a fresh process each (the import is not timed): the one under test from
this checkout, the baseline from `git archive` of BASE_COMMIT unpacked under bench/.work, both
on the same virtual environment. Two drops: many small files (where per-file catalog and log work
shows) and, when the ingest benchmark ran in the same `make bench`, its large videos (where the
disk does).
"""

from __future__ import annotations

import json
import os
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
home, drop, sealed = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "sealed"
init_workspace(home, "cn-shanghai")
with Workspace.open(home) as ws:
    region = ws.region()
    if not sealed and hasattr(region.blobs.inner, "inner"):  # no sealing layer (issue 17; the baseline has none)
        region.blobs.inner = region.blobs.inner.inner
    start, cpu = time.perf_counter(), time.process_time()
    report = ingest_drop(region, drop)
    print(json.dumps({"s": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                      "landed": report.landed}))
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


def _ingest(src: Path, home: Path, drop: Path, sealed: bool = True) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of one ingest in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", INGEST, str(home), str(drop), "sealed" if sealed else "plain"],
                          check=True, capture_output=True, text=True,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(result["s"]), float(result["cpu"])


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"Load average when it started (1 / 5 min): {one:.1f} / {five:.1f} on {os.cpu_count()} cores."


def bench_fact_logging(work: Path, runs: int, big_video_drop: Path | None = None) -> list[str]:
    small = work / "small"
    generate_sample(small, SampleSpec(vehicles=16, clips=4, seed=8, video_seconds=0.5, drive_seconds=5.0))
    drops = {f"{sum(1 for p in small.rglob('*') if p.is_file())} small files": small}
    if big_video_drop is not None:
        drops["3 large videos"] = big_video_drop
    # (label, source tree, sealed): the baseline has no sealing layer, so fact logging alone is "now, not
    # sealed" against "before"; "now" adds the sealing of issue 17
    trees = [("before (no facts logged)", baseline_tree(work), False),
             ("now, blobs not sealed (facts logged)", ROOT / "src", False),
             ("now (facts logged, blobs sealed)", ROOT / "src", True)]
    out = ["## Ingest with every fact logged (issue 13)", "",
           f"The same drops ingested by this tree and by `{BASE_COMMIT}`, the commit before ingest logged a fact "
           "per asset (one `ingest` log entry per batch of 64, with keyed digests of the vehicle, clip and path), "
           f"each in a fresh process, alternating, median of {runs} runs. The baseline's blob store has no sealing "
           "layer (issue 17 added it), so what logging facts costs is the middle row against the first; the last "
           "row is today's default. CPU is the process's user + system time over all its threads, which other "
           f"jobs on the machine disturb less than wall time. {load_note()}", ""]
    for label, drop in drops.items():
        wall: dict[str, list[float]] = {name: [] for name, _, _ in trees}
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in trees}
        for run in range(runs):
            for name, src, sealed in trees:
                home = work / f"ws-{run}-{len(wall[name])}-{abs(hash(name)) % 10_000}"
                w, c = _ingest(src, home, drop, sealed)
                wall[name].append(w)
                cpu[name].append(c)
                subprocess.run(["rm", "-rf", str(home)], check=True)
        base_wall, base_cpu = statistics.median(wall[trees[0][0]]), statistics.median(cpu[trees[0][0]])
        out += [f"{label}:", "", "| ingest | wall s | vs before | CPU s | vs before |", "|---|---:|---:|---:|---:|"]
        for name, _, _ in trees:
            w, c = statistics.median(wall[name]), statistics.median(cpu[name])
            out.append(f"| {name} | {w:.2f} | {w / base_wall - 1:+.0%} | {c:.2f} | {c / base_cpu - 1:+.0%} |")
        out.append("")
    out += ["Target: fact logging within 10% of before (the middle row).", ""]
    return out
