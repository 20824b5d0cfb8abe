"""The API's kept views (web/views.py): never older than a commit made before the request, by any process.

Each test fills the views, changes the catalog through another connection (as the ingest worker and the
CLI do, in processes of their own), and compares every view with one computed afresh by a new app.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from fleetgate.classify import classify_region
from fleetgate.services import Services
from fleetgate.web import create_app
from fleetgate.workspace import Workspace
from web_helpers import Served, copy_home


def _table_drop(folder: Path, po: str) -> Path:
    """A drop folder with one procurement table (one new asset) and one file no drop layout has (quarantined)."""
    (folder / "tables").mkdir(parents=True)
    when = pa.array([dt.datetime(2026, 8, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"po_id": [po], "supplier": ["s"], "part_no": ["LAMP"], "unit_price_cny": [1.0],
                             "quantity": pa.array([1], pa.int64()), "order_date": when}),
                   folder / "tables" / "procurement.parquet")
    (folder / f"stray-{po}.bin").write_bytes(po.encode())
    return folder


def _paths(client: TestClient, h: dict[str, str]) -> list[str]:
    page = client.get("/api/v1/assets", headers=h, params={"limit": 500}).json()
    ids = [a["id"] for a in page["items"]]
    return (["/api/v1/overview", "/api/v1/assets?limit=500", "/api/v1/assets?limit=5&offset=5",
             "/api/v1/quarantine", "/api/v1/log/checkpoint"] + [f"/api/v1/assets/{i}" for i in ids]
            + [f"/api/v1/assets/{ids[0][:10]}"])


def _views(client: TestClient, h: dict[str, str], paths: list[str]) -> dict[str, object]:
    out = {}
    for path in paths:
        r = client.get(path, headers=h)
        out[path] = (r.status_code, r.json())
    return out


def test_every_kept_view_is_current_after_each_kind_of_change_by_another_connection(
        client: TestClient, served: Served, tmp_path: Path) -> None:
    h = served.headers(served.team.auditor)
    team = served.team
    with Workspace.open(served.home) as ws:  # another connection: the worker's, the CLI's
        other = Services(ws)
        changes = [
            ("a web request", lambda: client.post("/api/v1/plans", headers=served.headers(team.engineer),
                                                  json={"destination": "overseas", "purpose": "p"})),
            ("an ingest", lambda: other.ingest.drop(_table_drop(tmp_path / "d1", "PO-1"))),
            ("a classification", lambda: classify_region(ws)),
            ("a checkpoint", lambda: other.audit.checkpoint()),
            ("a witness's cosignature", lambda: other.audit.witness(folder=tmp_path / "witness")),
            ("a credential", lambda: other.principals.issue_token(team.engineer.name, team.admin)),
            ("another ingest", lambda: other.ingest.drop(_table_drop(tmp_path / "d2", "PO-2"))),
        ]
        for what, change in changes:
            paths = _paths(client, h)
            _views(client, h, paths)  # kept now
            _views(client, h, paths)
            change()
            kept = _views(client, h, paths)
            with TestClient(create_app(Services(Workspace.open(served.home)))) as fresh:
                assert kept == _views(fresh, h, paths), f"a kept view is stale after {what}"


def test_two_workspaces_served_in_one_process_never_share_a_page(served: Served, api_master: Path,
                                                                  tmp_path: Path) -> None:
    # One ingest entry appended to each (the same log size and versions), different assets: views kept in one
    # cache for the whole process, under the log's version, served one workspace's page to the other.
    other = copy_home(api_master, tmp_path / "other")
    with Workspace.open(served.home) as ws:
        Services(ws).ingest.drop(_table_drop(tmp_path / "d", "PO-ONLY-HERE"))
    stray = tmp_path / "e"
    stray.mkdir()
    (stray / "stray.bin").write_bytes(b"nothing a drop holds")
    with Workspace.open(other.home) as ws:
        Services(ws).ingest.drop(stray)
    apps = [create_app(Services(Workspace.open(s.home))) for s in (served, other)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        mine = first.get("/api/v1/assets", headers=served.headers(served.team.auditor)).json()
        theirs = second.get("/api/v1/assets", headers=other.headers(other.team.auditor)).json()
    assert mine["total"] == theirs["total"] + 1


def test_an_asset_page_outlives_ingests_of_other_files_but_not_its_classification(
        served: Served, sample_drop_master: Path, tmp_path: Path) -> None:
    services = Services(Workspace.open(served.home))
    computed: list[str] = []
    original = services.inventory.asset

    def counting(asset_id: str, region: str | None = None):  # noqa: ANN202
        computed.append(asset_id)
        return original(asset_id, region)

    services.inventory.asset = counting
    h = served.headers(served.team.auditor)
    with TestClient(create_app(services)) as client, Workspace.open(served.home) as ws:
        asset_id = client.get("/api/v1/assets", headers=h).json()["items"][0]["id"]
        first = client.get(f"/api/v1/assets/{asset_id}", headers=h).json()
        Services(ws).ingest.drop(_table_drop(tmp_path / "d", "PO-3"))
        assert client.get(f"/api/v1/assets/{asset_id}", headers=h).json() == first
        assert computed == [asset_id], "an ingest of other files does not change an asset's page"
        client.get(f"/api/v1/assets/{asset_id[:12]}", headers=h)  # a prefix: kept only while nothing landed
        Services(ws).ingest.drop(_table_drop(tmp_path / "e", "PO-4"))
        client.get(f"/api/v1/assets/{asset_id[:12]}", headers=h)
        assert computed == [asset_id, asset_id[:12], asset_id[:12]]
        classify_region(ws)  # a `classify` entry may change any asset's decision: its page is computed again
        client.get(f"/api/v1/assets/{asset_id}", headers=h)
        assert computed[-1] == asset_id and len(computed) == 4
    services.close()


def test_requests_for_a_changed_page_compute_it_once(served: Served, tmp_path: Path) -> None:
    services = Services(Workspace.open(served.home))
    computed = []
    original = services.inventory.assets

    def counting(**kwargs):  # noqa: ANN003, ANN202
        computed.append(kwargs)
        return original(**kwargs)

    services.inventory.assets = counting
    app = create_app(services)
    h = served.headers(served.team.auditor)

    async def fifty() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            await c.get("/api/v1/me", headers=h)  # the token verified once, before the burst
            return await asyncio.gather(*[c.get("/api/v1/assets", headers=h) for _ in range(50)])

    responses = asyncio.run(fifty())
    assert {r.status_code for r in responses} == {200} and len({r.content for r in responses}) == 1
    assert len(computed) == 1
    services.close()


def _spied_lookups(services: Services) -> list[bool]:
    """Each lookup of a token's row (argon2 for a new hash) the server starts, as its `refresh` flag."""
    calls: list[bool] = []
    original = services.principals.authenticate_token

    def spy(token: str, refresh: bool = False):  # noqa: ANN202
        calls.append(refresh)
        return original(token, refresh)

    services.principals.authenticate_token = spy
    return calls


def test_fifty_requests_with_a_token_not_remembered_share_one_lookup(served: Served) -> None:
    services = Services(Workspace.open(served.home))
    lookups = _spied_lookups(services)
    app = create_app(services)
    h = served.headers(served.team.auditor)

    async def fifty() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await asyncio.gather(*[c.get("/api/v1/me", headers=h) for _ in range(50)])

    assert {r.status_code for r in asyncio.run(fifty())} == {200}
    assert lookups == [False]  # one lookup, awaited by all fifty on the event loop (not fifty worker threads)
    services.close()


def test_a_token_near_the_end_of_its_cache_time_is_looked_up_again_while_still_answered(served: Served) -> None:
    services = Services(Workspace.open(served.home, {"web": {"token_cache_seconds": 1}}))
    lookups = _spied_lookups(services)
    h = served.headers(served.team.auditor)
    with TestClient(create_app(services)) as client:
        assert client.get("/api/v1/assets", headers=h).status_code == 200
        assert lookups == [False]
        time.sleep(0.85)  # in the last fifth of the second
        assert client.get("/api/v1/assets", headers=h).status_code == 200  # from memory (a kept view)
        deadline = time.monotonic() + 5
        while lookups == [False] and time.monotonic() < deadline:
            client.get("/api/v1/health")  # lets the background lookup run
            time.sleep(0.01)
        assert lookups == [False, True]
        time.sleep(0.5)  # past the first verification's second: the refreshed one still holds
        assert services.principals.cached_token(served.tokens[served.team.auditor.name]) is not None
    services.close()
