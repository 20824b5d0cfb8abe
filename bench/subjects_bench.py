"""Erasure benchmark: erase one owner of a classified fleet, against deleting the same files and rows by hand."""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

import pyarrow.parquet as pq

from fleetgate.classify import classify_region
from fleetgate.domain import Role
from fleetgate.gate.trust import bootstrap_region
from fleetgate.ingest import ingest_drop
from fleetgate.keys.personal import Actor, new_key_pair
from fleetgate.people import add_principal
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.store.keyring import Keyring
from fleetgate.subjects import erase_subject
from fleetgate.workspace import Workspace, init_workspace


def _officer(ws: Workspace, folder: Path) -> Actor:
    people = {}
    for name in ("Bench Admin", "Bench Officer"):
        path = folder / f"{name.split()[1].lower()}.key"
        new_key_pair(path)
        people[name] = Actor.from_key_file(name, path)
    bootstrap_region(ws, ws.config.default_region, people["Bench Admin"])
    add_principal(ws.region(), "Bench Officer", Role.compliance, people["Bench Officer"].signer.public_key,
                  people["Bench Admin"])
    return people["Bench Officer"]


def _by_hand(home: Path, vin: str) -> None:
    """The floor: delete the vehicle's blob files and its catalog rows, with nothing found, rewritten or logged."""
    db = sqlite3.connect(home / "regions" / "cn-shanghai" / "catalog.db")
    with Workspace.open(home) as ws:
        blobs = ws.region().blobs
        files = [blobs.stored_path(sha) for (sha,) in db.execute("SELECT sha256 FROM assets WHERE vehicle = ?", (vin,))]
    for path in files:
        if path is not None:
            path.unlink(missing_ok=True)
    with db:
        ids = [r[0] for r in db.execute("SELECT id FROM assets WHERE vehicle = ?", (vin,))]
        marks = ",".join("?" * len(ids))
        db.execute(f"DELETE FROM asset_subjects WHERE asset_id IN ({marks})", ids)
        db.execute(f"DELETE FROM classifications WHERE asset_id IN ({marks})", ids)
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute(f"DELETE FROM assets WHERE id IN ({marks})", ids)
    db.close()


def bench_erasure(work: Path, runs: int) -> list[str]:
    drop = work / "drop"
    vehicles = 6
    generate_sample(drop, SampleSpec(vehicles=vehicles, clips=2, seed=7, video_seconds=2.0, drive_seconds=60.0,
                                     defects=True))
    master = work / "master"
    init_workspace(master / "ws", "cn-shanghai")
    with Workspace.open(master / "ws") as ws:
        officer = _officer(ws, master)
        ingest_drop(ws.region(), drop)
        classify_region(ws)
        assets = len(ws.region().catalog.list_assets())
    vin = pq.read_table(drop / "tables" / "owners.parquet").column("vin")[0].as_py()
    rows: dict[str, list[float]] = {"delete files and rows by hand": [], "fleetgate subject erase": []}
    load_before = os.getloadavg()[0]
    for run in range(runs):
        for name in rows:
            copy = work / f"run-{run}-{len(rows[name])}"
            shutil.copytree(master, copy)
            Keyring.forget()
            start = time.perf_counter()
            if name == "fleetgate subject erase":
                with Workspace.open(copy / "ws") as ws:
                    erase_subject(ws, "vin", vin, f"BENCH-{run}", officer)
            else:
                _by_hand(copy / "ws", vin)
            rows[name].append(time.perf_counter() - start)
            shutil.rmtree(copy)
    medians = {k: statistics.median(v) for k, v in rows.items()}
    load_after = os.getloadavg()[0]
    out = [
        "## Erasure of one person (issue 17)",
        "",
        f"A classified region of {vehicles} vehicles × 2 clips ({assets} assets, one clip quarantined).",
        "`subject erase` verifies the log and the catalog, scans every table and JSON asset for the owner's",
        "identifiers, rewrites",
        "the tables that hold others too, removes the rows and records the erasure in one transaction, destroys the",
        "keys and stored bytes, scrubs the access log and finishes with a receipt. The floor deletes the vehicle's",
        f"stored files and catalog rows by hand (no search, no rewrite, no log). Median of {runs} runs.",
        "",
        "| what | median s |",
        "|---|---:|",
    ]
    out += [f"| {name} | {value:.2f} |" for name, value in medians.items()]
    out += ["", f"Command: `python bench/run.py --only subjects --runs {runs}`. Load average (1 min) before / after: "
            f"{load_before:.1f} / {load_after:.1f} (other jobs share this machine)."]
    out += ["", f"Erasing one person takes **{medians['fleetgate subject erase']:.2f} s** (the 10-working-day "
            "deadline is the target; the by-hand floor leaves the person in six tables, the log and the keys).", ""]
    return out
