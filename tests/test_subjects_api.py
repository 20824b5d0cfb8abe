"""Data-subject rights over HTTP: roles, statements signed elsewhere, nothing personal in the log, the same
erasure as the command line (canaries gone, `audit verify` clean, a rerun is a no-op)."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from canary import scan
from fleetgate.services import Services
from fleetgate.workspace import Workspace
from web_helpers import Served, sign, sign_with_cli

REGION = "cn-shanghai"


@pytest.fixture
def people(sample_drop_master: Path) -> list[dict[str, str]]:
    owners = pq.read_table(sample_drop_master / "tables" / "owners.parquet").to_pylist()
    plates = {r["vin"]: r["plate"] for r in pq.read_table(sample_drop_master / "tables" / "after_sales.parquet")
              .to_pylist()}
    return [{"vin": o["vin"], "phone": o["phone"], "id_number": o["national_id"], "plate": plates[o["vin"]]}
            for o in owners]


def _ask(client: TestClient, served: Served, who, action: str, person: dict, ref: str,  # noqa: ANN001
         kind: str = "vin", dry_run: bool | None = None, cli: Path | None = None) -> tuple[dict, dict]:
    """Prepare the statement, sign it with the officer's own key (as `fleetgate sign` does, or with the
    command itself in folder `cli`), and return the signed body to post."""
    body = {"identifier": {"kind": kind, "value": person[kind]}, "ref": ref}
    if dry_run is not None:
        body["dry_run"] = dry_run
    r = client.post(f"/api/v1/subjects/{action}/statement", headers=served.headers(who), json=body)
    assert r.status_code == 200, r.text
    request = r.json()
    assert person[kind] not in r.text and request["statement"]["identifier_kind"] == kind
    envelope = json.loads(sign_with_cli(r.text, served.team.key_file(who), cli)) if cli else sign(request, who)
    return request, {**{k: v for k, v in body.items() if k != "dry_run"}, "salt": request["salt"],
                     "envelope": envelope}


def _log_text(home: Path) -> str:
    with sqlite3.connect(home / "regions" / REGION / "catalog.db") as db:
        return "\n".join(r[0] for r in db.execute("SELECT entry FROM log_entries ORDER BY idx"))


def test_roles_find_and_copy_for_auditors_erase_for_compliance_only(client: TestClient, served: Served,
                                                                     people: list[dict]) -> None:
    team, person = served.team, people[0]
    body = {"identifier": {"kind": "vin", "value": person["vin"]}, "ref": "DSR-R"}
    for route in ("find", "export"):
        assert client.post(f"/api/v1/subjects/{route}/statement", headers=served.headers(team.engineer),
                           json=body).status_code == 403
        assert client.post(f"/api/v1/subjects/{route}/statement", headers=served.headers(team.auditor),
                           json=body).status_code == 200
    r = client.post("/api/v1/subjects/erase/statement", headers=served.headers(team.auditor), json=body)
    assert r.status_code == 403 and r.json()["error"]["message"] == "this needs role compliance"
    assert client.post("/api/v1/subjects/erase", headers=served.headers(team.admin), json=body).status_code == 403
    assert client.get("/api/v1/subjects/requests", headers=served.headers(team.engineer)).status_code == 403
    assert client.post("/api/v1/subjects/find/statement", json=body).status_code == 401
    # a bad identifier is one line that does not echo it
    r = client.post("/api/v1/subjects/find/statement", headers=served.headers(team.auditor),
                    json={"identifier": {"kind": "vin", "value": "NOT-A-VIN-123"}, "ref": "DSR-R"})
    assert r.status_code == 400 and "NOT-A-VIN-123" not in r.text and "not a valid vin" in r.text
    spec = client.get("/api/v1/openapi.json").json()["paths"]
    assert spec["/subjects/erase"]["post"]["x-roles"] == ["compliance"]
    assert spec["/subjects/find"]["post"]["x-roles"] == ["compliance", "auditor"]


def test_find_over_http_is_the_signed_request_the_cli_logs(client: TestClient, served: Served,
                                                           people: list[dict], tmp_path: Path) -> None:
    auditor, person = served.team.auditor, people[0]
    # signed on the auditor's own machine with `fleetgate sign`
    request, body = _ask(client, served, auditor, "find", person, "DSR-H1", kind="phone", cli=tmp_path)
    r = client.post("/api/v1/subjects/find", headers=served.headers(auditor), json=body)
    assert r.status_code == 200, r.text
    found = r.json()
    assert found["assets"]["count"] > 0 and found["identifiers"]["vin"] == 1 and found["table_rows"]
    # the same person by another identifier, from the command line's service: the same assets
    with Workspace.open(served.home) as ws:
        cli = Services(ws).subjects.find(_identifier("vin", person), "DSR-H1b", auditor)
    assert cli.assets.ids == found["assets"]["ids"]
    # the logged request is the envelope the auditor signed, and nothing personal is in the log
    logged = [json.loads(t) for t in _log_text(served.home).splitlines()]
    requests = [e for e in logged if e["type"] == "subject_request"]
    assert requests[0]["statement"] == body["envelope"]
    web = [e for e in logged if e["type"] == "web_request" and e["route"].startswith("/subjects/")]
    assert len(web) == 2 and all(set(e["body"]) == {"personal", "bytes"} for e in web)
    text = _log_text(served.home)
    assert not any(person[k] in text for k in person)
    views = client.get("/api/v1/subjects/requests", headers=served.headers(auditor), params={"all": True}).json()
    assert {v["request_id"] for v in views} >= {found["request_id"], cli.request_id}
    assert all(v["status"] == "done" for v in views)
    assert request["statement"]["by"] == auditor.name


def test_a_statement_for_another_person_ref_or_officer_is_refused(client: TestClient, served: Served,
                                                                  people: list[dict]) -> None:
    team, person, other = served.team, people[0], people[1]
    request, body = _ask(client, served, team.auditor, "find", person, "DSR-X")
    h = served.headers(team.auditor)
    refused = [
        {**body, "identifier": {"kind": "vin", "value": other["vin"]}},  # signed for someone else
        {**body, "ref": "DSR-Y"},  # another ticket
        {**body, "salt": "0" * 32},  # another salt: another digest
    ]
    for attempt in refused:
        r = client.post("/api/v1/subjects/find", headers=h, json=attempt)
        assert r.status_code == 400 and other["vin"] not in r.text, r.text
    # signed by the auditor, posted by a compliance officer: not theirs
    r = client.post("/api/v1/subjects/find", headers=served.headers(team.compliance[0]), json=body)
    assert r.status_code == 400 and "signed for" in r.json()["error"]["message"]
    # a find statement is not an erasure
    r = client.post("/api/v1/subjects/erase", headers=served.headers(team.compliance[0]), json=body)
    assert r.status_code == 400
    # the signature itself must be the officer's: an envelope re-signed with another key is refused
    forged = {**body, "envelope": sign(request, team.compliance[1])}
    r = client.post("/api/v1/subjects/find", headers=h, json=forged)
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_signature"
    assert not [e for e in _log_text(served.home).splitlines() if '"subject_request"' in e]
    # the genuine one still goes through, once: its salt cannot be used again
    assert client.post("/api/v1/subjects/find", headers=h, json=body).status_code == 200
    r = client.post("/api/v1/subjects/find", headers=h, json=body)
    assert r.status_code == 400 and "salt" in r.json()["error"]["message"]


def _identifier(kind: str, person: dict):  # noqa: ANN202
    from fleetgate.services.models import Identifier

    return Identifier(kind=kind, value=person[kind])


def test_copy_over_http_is_a_tar_of_their_data_and_leaves_nothing_behind(client: TestClient, served: Served,
                                                                         people: list[dict]) -> None:
    officer, person = served.team.compliance[0], people[0]
    _, body = _ask(client, served, officer, "export", person, "DSR-C1")
    r = client.post("/api/v1/subjects/export", headers=served.headers(officer), json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar", r.text[:300]
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(next(n for n in names if n.endswith("/manifest.json"))).read())
    assert manifest["request_id"] == r.headers["X-Fleetgate-Request-Id"] and manifest["counts"]["table_rows"] > 0
    assert any("/tables/" in n for n in names) and any("/vehicle/" in n for n in names)
    assert json.loads(r.headers["X-Fleetgate-Copy"])["files"] == manifest["counts"]["files"]
    copies = served.home / "tmp" / "subject-copies"
    assert not copies.exists() or not any(copies.iterdir())


def test_erase_over_http_previews_erases_once_and_leaves_no_canary(client: TestClient, served: Served,
                                                                   people: list[dict]) -> None:
    officer, person, others = served.team.compliance[0], people[0], people[1:]
    h = served.headers(officer)
    # plans made over HTTP list the person's files by path (their VIN): a draft, and one its author signed
    engineer = served.headers(served.team.engineer)
    drafts = [client.post("/api/v1/plans", headers=engineer, json={"destination": "overseas", "purpose": p}).json()
              for p in ("draft only", "signed")]
    r = client.post(f"/api/v1/plans/{drafts[1]['plan_id']}/signature", headers=engineer,
                    json={"envelope": sign(drafts[1]["sign"], served.team.engineer)})
    assert r.status_code == 200, r.text
    assert any(person["vin"] in i["source_path"] for i in drafts[0]["plan"]["items"])
    assert scan(served.home, person, REGION).hits
    _, body = _ask(client, served, officer, "erase", person, "DSR-E1", dry_run=True)
    preview = client.post("/api/v1/subjects/erase", headers=h, json=body).json()
    assert preview["status"] == "preview" and preview["erase"]["assets"] > 0
    assert preview["footprint"]["assets"]["count"] == preview["erase"]["assets"]
    opened = client.get("/api/v1/subjects/requests", headers=h).json()
    assert [v["ref"] for v in opened] == ["DSR-E1"] and opened[0]["days_left"] > 0
    _, body = _ask(client, served, officer, "erase", person, "DSR-E1")
    r = client.post("/api/v1/subjects/erase", headers=h, json=body)
    assert r.status_code == 200, r.text
    erased = r.json()
    assert erased["status"] == "erased" and erased["receipt"]["keys_destroyed"]
    assert sorted(erased["footprint"]["export_plans"]) == sorted(d["plan_id"] for d in drafts)
    assert client.get(f"/api/v1/plans/{drafts[1]['plan_id']}", headers=engineer).status_code == 404
    assert scan(served.home, person, REGION).hits == []
    for other in others:
        assert scan(served.home, other, REGION).hits
    assert client.services.audit.verify().findings == []
    assert client.get("/api/v1/subjects/requests", headers=h).json() == []
    # a rerun under the same ref is a no-op
    _, again = _ask(client, served, officer, "erase", person, "DSR-E1")
    done = client.post("/api/v1/subjects/erase", headers=h, json=again).json()
    assert done["status"] == "already erased" and done["erasure_id"] == erased["erasure_id"]
    assert _log_text(served.home).count('"type":"erasure_done"') == 1


def test_an_erasure_removes_uploads_a_crash_left_spooled_and_keeps_one_being_received(
        client: TestClient, served: Served, people: list[dict], sample_drop_master: Path) -> None:
    import os
    import time

    from fleetgate.subjects.removal import STALE_TMP_S

    officer, person = served.team.compliance[0], people[0]
    uploads = served.home / "uploads"
    stale, live = uploads / "drop-crashed", uploads / "drop-receiving"
    for spool in (stale, live):
        spool.mkdir(parents=True)
        with tarfile.open(spool / "fleet.tar", "w") as tar:
            tar.add(sample_drop_master / "tables" / "owners.parquet", arcname="tables/owners.parquet")
    old = time.time() - STALE_TMP_S - 60
    for f in (stale / "fleet.tar", stale):
        os.utime(f, (old, old))
    assert scan(stale, person, REGION).hits
    result = client.services.subjects.erase(_identifier("vin", person), "DSR-U1", officer)
    assert result.status == "erased"
    assert not stale.exists() and (live / "fleet.tar").exists()
