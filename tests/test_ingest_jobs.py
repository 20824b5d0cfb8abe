"""Uploads as jobs: spooled durably, 202, ingested by a worker process exactly once however often it stops.

In-process tests run the worker's own code (`IngestJobs.drain`) and stop it where a crash would; one test
kills the worker child of a real `fleetgate serve` and watches the server start it again.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import signal
import tarfile
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from fleetgate.domain import Role
from fleetgate.services import Services
from fleetgate.services.ingest_jobs import IngestJobs
from fleetgate.store import Catalog
from fleetgate.web import create_app
from fleetgate.workspace import Workspace
from web_helpers import (
    Served,
    add_token_holders,
    build_home,
    copy_home,
    start_server,
    stop_server,
    tar_of,
    upload,
    worker_pid,
)

AGENTS = ("Upload Agent 1", "Upload Agent 2")


@pytest.fixture(scope="module")
def jobs_master(sample_drop_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jobs")
    served = build_home(root, sample_drop_master)
    add_token_holders(root, served, dict.fromkeys(AGENTS, Role.ingest))
    return root


@pytest.fixture
def served(jobs_master: Path, tmp_path: Path) -> Served:
    return copy_home(jobs_master, tmp_path / "copy")


@pytest.fixture
def client(served: Served):  # noqa: ANN201
    services = Services(Workspace.open(served.home))
    with TestClient(create_app(services)) as c:
        c.services = services
        yield c
    services.close()


def _agent(served: Served, n: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.tokens[AGENTS[n]]}"}


def _post(client: TestClient, served: Served, name: str, body: bytes) -> str:
    r = client.post("/api/v1/drops", params={"name": name}, headers={**_agent(served), "Content-Type":
                                                                      "application/x-tar"}, content=body)
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def _drain(jobs: IngestJobs) -> int:
    with jobs.worker_lock(wait=False) as mine:
        assert mine
        return jobs.drain()


def _catalog_counts(home: Path, job: str) -> tuple[int, int, int]:
    """(ingest runs with the job's id, assets of the run, `ingest` log entries of the run)."""
    catalog = Catalog(f"sqlite:///{home / 'regions' / 'cn-shanghai' / 'catalog.db'}")
    with catalog.snapshot() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM ingest_runs WHERE id = :j"), {"j": job}).scalar_one()
        assets = conn.execute(sa.text("SELECT count(*) FROM assets WHERE ingest_run = :j"), {"j": job}).scalar_one()
        entries = conn.execute(sa.text("SELECT count(*) FROM log_entries WHERE kind = 'ingest' AND entry LIKE :p"),
                               {"p": f'%"run":"{job}"%'}).scalar_one()
    catalog.close()
    return runs, assets, entries


def _fresh_drop(_sample: Path, tmp: Path, seed: str) -> bytes:
    """A drop of new assets (procurement tables no drop held before) and a file no drop layout has (quarantined)."""
    drop = tmp / f"drop-{seed}"
    (drop / "tables").mkdir(parents=True)
    when = pa.array([dt.datetime(2026, 8, 1, tzinfo=dt.UTC)] * 3, pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"po_id": [f"PO-{seed}-{i}" for i in range(3)], "supplier": ["s"] * 3,
                             "part_no": ["LAMP"] * 3, "unit_price_cny": [1.0] * 3,
                             "quantity": pa.array([1, 2, 3], pa.int64()), "order_date": when}),
                   drop / "tables" / "procurement.parquet")
    (drop / "stray.bin").write_bytes(seed.encode())
    return tar_of(drop)


def test_an_upload_is_queued_durably_and_its_job_tells_what_landed(client: TestClient, served: Served,
                                                                    sample_drop_master: Path, tmp_path: Path) -> None:
    body = _fresh_drop(sample_drop_master, tmp_path, "a")
    job = _post(client, served, "fresh-a.tar", body)
    queued = served.home / "uploads" / "queue" / job
    assert (queued / "fresh-a.tar").read_bytes() == body
    record = json.loads((queued / "job.json").read_text())
    assert record["principal"] == AGENTS[0] and record["request_log_index"] is not None
    assert client.get(f"/api/v1/jobs/{job}", headers=_agent(served)).json()["status"] == "queued"
    assert _drain(client.services.ingest_jobs) == 1
    view = client.get(f"/api/v1/jobs/{job}", params={"wait": 5}, headers=_agent(served)).json()
    assert view["status"] == "done" and view["report"]["run_id"] == job and view["report"]["quarantined"] == 1
    assert view["report"]["problems"][0]["path"] == "stray.bin"
    assert not queued.exists()
    # the log links the request to what landed: the request entry names the job, the ingest entries its run
    request = client.services.audit.entries(kind="web_request", limit=1)[1][0].entry
    assert request["route"] == "/drops" and request["job"] == job and view["request_log_index"] is not None
    runs, assets, entries = _catalog_counts(served.home, job)
    assert runs == 1 and assets == view["report"]["landed"] > 0 and entries >= 1


def test_a_worker_stopped_after_the_commit_does_not_ingest_the_drop_again(
        client: TestClient, served: Served, sample_drop_master: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    job = _post(client, served, "fresh-b.tar", _fresh_drop(sample_drop_master, tmp_path, "b"))
    jobs = client.services.ingest_jobs

    def killed(*_args: object) -> None:
        raise KeyboardInterrupt  # the process dies between the ingest's commit and the outcome

    monkeypatch.setattr(IngestJobs, "_settle", killed)
    with pytest.raises(KeyboardInterrupt):
        _drain(jobs)
    once = _catalog_counts(served.home, job)
    assert once[0] == 1 and once[1] > 0
    monkeypatch.undo()
    _drain(jobs)  # the next worker: the run is finished, so the outcome is read from the catalog
    assert _catalog_counts(served.home, job) == once, "not ingested a second time"
    view = client.get(f"/api/v1/jobs/{job}", headers=_agent(served)).json()
    assert view["status"] == "done" and view["attempts"] == 2
    assert view["report"]["landed"] == once[1] and view["report"]["problems"][0]["path"] == "stray.bin"


def test_a_worker_stopped_half_way_goes_on_under_the_same_run(client: TestClient, served: Served,
                                                              sample_drop_master: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    job = _post(client, served, "fresh-c.tar", _fresh_drop(sample_drop_master, tmp_path, "c"))
    jobs = client.services.ingest_jobs

    def killed(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # every batch committed, the run not finished yet

    monkeypatch.setattr(Catalog, "finish_run", killed)
    with pytest.raises(KeyboardInterrupt):
        _drain(jobs)
    monkeypatch.undo()
    runs, landed, _ = _catalog_counts(served.home, job)
    assert runs == 1 and landed > 0
    assert client.get(f"/api/v1/jobs/{job}", headers=_agent(served)).json()["status"] == "running"
    _drain(jobs)
    view = client.get(f"/api/v1/jobs/{job}", headers=_agent(served)).json()
    assert view["status"] == "done" and view["attempts"] == 2
    assert _catalog_counts(served.home, job)[:2] == (1, landed), "one run, no asset twice"
    assert view["report"]["landed"] == landed and view["report"]["already_present"] == 0


def test_a_drop_the_worker_refuses_fails_its_job_with_the_reason(client: TestClient, served: Served) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        folder = tarfile.TarInfo("tables")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)  # headers fine, but no file in it
    view = upload(client, _agent(served), "empty.tar", out.getvalue())
    assert view["status"] == "failed" and view["error"] == "empty.tar: the drop holds no files"
    assert view["report"] is None and not list((served.home / "uploads" / "queue").iterdir())


def test_jobs_are_seen_by_their_uploader_and_admins_only(client: TestClient, served: Served) -> None:
    job = _post(client, served, "mine.tar", _tar_of_one(b"x"))
    path = f"/api/v1/jobs/{job}"
    assert client.get(path, headers=_agent(served)).status_code == 200
    assert client.get(path, headers=served.headers(served.team.admin)).status_code == 200
    other = client.get(path, headers=_agent(served, 1))
    assert other.status_code == 404 and AGENTS[0] not in other.text
    assert client.get(path, headers=served.headers(served.team.engineer)).status_code == 403
    assert client.get("/api/v1/jobs/../queue", headers=_agent(served)).status_code == 404
    assert client.get("/api/v1/jobs/job_0", headers=_agent(served)).status_code == 404


def _tar_of_one(data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("stray.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_full_queue_answers_503_and_keeps_nothing(served: Served) -> None:
    services = Services(Workspace.open(served.home, {"web": {"max_queued_uploads": 1}}))
    with TestClient(create_app(services)) as client:
        headers = {**_agent(served), "Content-Type": "application/x-tar"}
        assert client.post("/api/v1/drops", params={"name": "a.tar"}, headers=headers,
                           content=_tar_of_one(b"a")).status_code == 202
        r = client.post("/api/v1/drops", params={"name": "b.tar"}, headers=headers, content=_tar_of_one(b"b"))
        assert r.status_code == 503 and r.headers["retry-after"] and r.json()["error"]["code"] == "busy"
    services.close()
    assert len(list((served.home / "uploads" / "queue").iterdir())) == 1
    assert not list((served.home / "uploads" / "incoming").iterdir())


def test_one_worker_drains_a_spool_at_a_time(served: Served) -> None:
    with Workspace.open(served.home) as a, Workspace.open(served.home) as b:
        first, second = Services(a).ingest_jobs, Services(b).ingest_jobs
        with first.worker_lock(wait=False) as mine:
            assert mine
            with second.worker_lock(wait=False) as theirs:
                assert not theirs
        with second.worker_lock(wait=False) as theirs:
            assert theirs


def test_the_server_starts_its_worker_again_and_no_upload_is_lost(served: Served, sample_drop_master: Path,
                                                                   tmp_path: Path) -> None:
    start_server(served)
    try:
        worker = _worker_of(served.proc.pid)
        with httpx.Client(base_url=served.url, timeout=60) as http:
            headers = {**_agent(served), "Content-Type": "application/x-tar"}
            jobs = [http.post("/api/v1/drops", params={"name": f"kill-{n}.tar"}, headers=headers,
                              content=_fresh_drop(sample_drop_master, tmp_path, f"k{n}")).json()["job_id"]
                    for n in range(3)]
            os.kill(worker, signal.SIGKILL)  # wherever it was: before, during or after an ingest
            views = [http.get(f"/api/v1/jobs/{job}", params={"wait": 30}, headers=_agent(served)).json()
                     for job in jobs]
            restarted = _worker_of(served.proc.pid)
            niceness = os.getpriority(os.PRIO_PROCESS, restarted)  # it has ingested: past its start-up
    finally:
        stop_server(served)
    assert [v["status"] for v in views] == ["done"] * 3, views
    assert restarted != worker and niceness == 10  # web.ingest_nice: readers first when the CPU is short
    for view in views:
        runs, assets, _ = _catalog_counts(served.home, view["job_id"])
        assert runs == 1 and assets == view["report"]["landed"] > 0
    assert "starting it again" in served.log.read_text()


def _worker_of(server: int) -> int:
    pid = worker_pid(server)
    if pid is None:
        raise AssertionError("the server started no worker")
    return pid
