"""The engines: the same drop through the local engine and Ray Data gives identical catalog rows and log
facts; actors work for one region only and the access log records it; a crashed run resumes by asset id."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from fleetgate.classify import classify_region
from fleetgate.deid import deid_region
from fleetgate.domain.clock import FixedClock
from fleetgate.engine import LocalRunner, Work
from fleetgate.engine.runner import RayRunner, RegionActor
from fleetgate.errors import ConfigError
from fleetgate.gate import verify_region
from fleetgate.ingest import ingest_drop
from fleetgate.ingest import pipeline as ingest_pipeline
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.store.keyring import KEYRING_FILE
from fleetgate.store.residency import ResidencyError, read_access_log
from fleetgate.store.schema import metadata
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import EngineConfig, load_config, save_config

CLOCK = FixedClock(dt.datetime(2026, 11, 21, 8, 30, tzinfo=dt.UTC))
TABLES = ("assets", "ingest_runs", "quarantine", "classifications", "asset_subjects", "log_entries", "log_tiles")


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("engine") / "drop"
    generate_sample(out, SampleSpec(vehicles=2, clips=2, seed=41, video_seconds=0.5, drive_seconds=5.0,
                                    defects=True))
    return out


def _pipeline(home: Path, drop: Path, runner) -> None:  # noqa: ANN001 - a Runner
    with Workspace.open(home) as ws:
        ingest_drop(ws.region(), drop, runner=runner, home=home, clock=CLOCK, run_id="run_same")
        deid_region(ws, camera=False, runner=runner, clock=CLOCK)
        classify_region(ws, runner=runner, clock=CLOCK)


def _tables(home: Path) -> dict[str, list[tuple]]:
    with Workspace.open(home) as ws, ws.region().catalog.connect() as conn:
        out = {}
        for name in TABLES:
            table = metadata.tables[name]
            out[name] = [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
        return out


@pytest.mark.ray
def test_local_and_ray_engines_give_identical_catalog_rows_and_log_facts(ray_cluster, drop: Path,
                                                                          tmp_path: Path) -> None:
    local = tmp_path / "local"
    init_workspace(local, "cn-shanghai")
    with Workspace.open(local) as ws:
        ws.region().keys.public_key()  # the region's keys exist before the copy: both runs share them
        ws.keys().pseudonym_key()
    distributed = tmp_path / "ray"
    shutil.copytree(local, distributed)
    _pipeline(local, drop, LocalRunner())
    # per-person keys are random (issue 17): the second run gets the first one's keyring, so that the
    # facts keyed per person compare; the engines, not the keys, are what this test is about
    keyring = Path("keys") / "cn-shanghai" / KEYRING_FILE
    with closing(sqlite3.connect(local / keyring)) as src, closing(sqlite3.connect(distributed / keyring)) as dst:
        src.backup(dst)  # with what its write-ahead log holds
    _pipeline(distributed, drop, RayRunner(EngineConfig(kind="ray", workers=2)))

    a, b = _tables(local), _tables(distributed)
    assert len(a["assets"]) > 20 and a["quarantine"] and a["classifications"]
    for name in TABLES:
        assert a[name] == b[name], f"{name} differs between the engines"
    with Workspace.open(distributed) as ws:
        reads = read_access_log(ws.access_log("cn-shanghai"))
        assert not verify_region(ws).findings
    # every blob read by the Ray stages was made by an actor working for cn-shanghai, not by this process
    assert reads and {r["reader"] for r in reads} == {"cn-shanghai"} and os.getpid() not in {r["pid"] for r in reads}
    assert all(r["allowed"] for r in reads)


class _Upper:
    def __init__(self, home: str, region: str) -> None:
        self.region = region

    def __call__(self, rows: list[dict]) -> list[dict]:
        return [r | {"seen_by": self.region, "acting": os.environ.get("FLEETGATE_ACTING_REGION")} for r in rows]


def test_an_actor_works_for_one_region_only() -> None:
    import pickle

    import numpy as np

    actor = RegionActor(Work(_Upper, "", "cn-shanghai"))
    try:
        out = actor({"row": np.array([pickle.dumps({"region": "cn-shanghai", "n": 1})], dtype=object)})
        assert pickle.loads(out["row"][0])["acting"] == "cn-shanghai"
        with pytest.raises(ResidencyError, match="works for one region only"):
            actor({"row": np.array([pickle.dumps({"region": "eu-frankfurt", "n": 2})], dtype=object)})
    finally:
        os.environ.pop("FLEETGATE_ACTING_REGION", None)


@pytest.mark.ray
def test_ray_batches_come_back_in_order_and_whole(ray_cluster) -> None:
    rows = [{"region": "cn-shanghai", "n": i} for i in range(200)]
    batches = list(RayRunner(EngineConfig(kind="ray", workers=2)).map(Work(_Upper, "", "cn-shanghai"), rows, 64))
    assert [len(b) for b in batches] == [64, 64, 64, 8]
    assert [r["n"] for b in batches for r in b] == list(range(200))
    assert {r["acting"] for b in batches for r in b} == {"cn-shanghai"}


class _CrashAfter(LocalRunner):
    def __init__(self, batches: int) -> None:
        self.batches = batches

    def map(self, work, rows, batch_size):  # noqa: ANN001, ANN201
        for n, batch in enumerate(super().map(work, rows, batch_size)):
            if n == self.batches:
                raise KeyboardInterrupt("the machine went down")
            yield batch


def test_a_crashed_ingest_resumes_by_asset_id(workspace: Workspace, drop: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    region = workspace.region()
    with pytest.raises(KeyboardInterrupt):
        ingest_drop(region, drop, batch_size=8, runner=_CrashAfter(2))
    landed_before = len(region.catalog.list_assets())
    assert landed_before > 0
    validated: list[str] = []
    real = ingest_pipeline.validate_file
    monkeypatch.setattr(ingest_pipeline, "validate_file", lambda rel, role, path: validated.append(rel) or
                        real(rel, role, path))
    before = {a["source_path"] for a in region.catalog.list_assets()}
    report = ingest_drop(region, drop, batch_size=8)
    assert report.already_present == landed_before
    # clip manifests are read up front for their clips' times; nothing else catalogued before is validated again
    again = {p for p in validated if not p.endswith("clip.json")} & before
    assert validated and not again, f"validated again: {sorted(again)[:3]}"
    assert not verify_region(workspace).findings
    assert [r["status"] for r in region.catalog.list_runs()] == ["ok" if not report.quarantined else "partial",
                                                                "failed"]


def test_engine_settings_are_checked(tmp_path: Path) -> None:
    init_workspace(tmp_path / "ws", "cn-shanghai")
    config = load_config(tmp_path / "ws")
    config.engine = EngineConfig(kind="ray", address="ray://head:10001", workers=4)
    save_config(config)
    assert load_config(tmp_path / "ws").engine == config.engine
    text = (tmp_path / "ws" / "fleetgate.toml").read_text()
    (tmp_path / "ws" / "fleetgate.toml").write_text(text.replace('kind = "ray"', 'kind = "spark"'))
    with pytest.raises(ConfigError, match="fleetgate.toml: engine.kind: Input should be 'local' or 'ray'"):
        load_config(tmp_path / "ws")
    (tmp_path / "ws" / "fleetgate.toml").write_text(text.replace("workers = 4", "workers = 0"))
    with pytest.raises(ConfigError, match="engine.workers"):
        load_config(tmp_path / "ws")


def test_engine_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_workspace(tmp_path / "ws", "cn-shanghai")
    monkeypatch.setenv("FLEETGATE_ENGINE__KIND", "ray")
    monkeypatch.setenv("FLEETGATE_ENGINE__WORKERS", "2")
    engine = load_config(tmp_path / "ws").engine
    assert (engine.kind, engine.workers, engine.address) == ("ray", 2, None)


class _AsAnActor(LocalRunner):
    """The work built as a Ray actor builds it (from the Work's class and parameters, nothing already open),
    in this process: what `RegionActor` does, without a cluster."""

    def map(self, work, rows, batch_size):  # noqa: ANN001, ANN201
        import pickle

        import numpy as np

        actor = RegionActor(Work(work.cls, work.home, work.region, work.params))
        try:
            for start in range(0, len(rows), batch_size):
                batch = {"row": np.array([pickle.dumps(r) for r in rows[start:start + batch_size]], dtype=object)}
                yield [pickle.loads(b) for b in actor(batch)["row"]]
        finally:
            os.environ.pop("FLEETGATE_ACTING_REGION", None)


def test_camera_deid_built_in_a_worker_gives_what_the_local_engine_gives(tmp_path: Path) -> None:
    """Workers build their own detectors and verifier from the profile and provider: the derived videos
    carry the same settings, models, verifier and findings as in this process."""
    drop = tmp_path / "drop"
    generate_sample(drop, SampleSpec(vehicles=1, clips=1, seed=43, video_seconds=0.5, drive_seconds=4.0))
    out = {}
    for name, runner in (("local", LocalRunner()), ("worker", _AsAnActor())):
        init_workspace(tmp_path / name, "cn-shanghai")
        with Workspace.open(tmp_path / name) as ws:
            ingest_drop(ws.region(), drop, clock=CLOCK, run_id="run_same")
            report = deid_region(ws, runner=runner, clock=CLOCK, provider="cpu")
            assert not report.failed and report.camera
            out[name] = sorted((a["id"], a["tags"]["models"], a["tags"]["verifier"], a["tags"]["settings"],
                                a["tags"]["removed_features"], a["tags"]["residuals"])
                               for a in ws.region().catalog.list_assets() if a["kind"] == "exterior_video"
                               and a["parent_id"])
    assert out["local"] and out["local"] == out["worker"]
