"""The HTTP API: roles before bodies, JSON errors, and the signed steps through the same gate as the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fleetgate.audit.log import region_log
from fleetgate.domain.clock import FixedClock
from fleetgate.services import Services
from fleetgate.workspace import Workspace
from people import new_actor
from web_helpers import Served, sign, tar_of, upload

PLAN = {"destination": "overseas", "purpose": "train driving models"}


def _signed_plan(client: TestClient, served: Served, body: dict | None = None) -> str:
    draft = client.post("/api/v1/plans", headers=served.headers(served.team.engineer), json=body or PLAN)
    assert draft.status_code == 201, draft.text
    view = draft.json()
    assert view["status"] == "draft" and view["sign"]["payload_type"].endswith("plan.v1+json")
    envelope = sign(view["sign"], served.team.engineer)
    signed = client.post(f"/api/v1/plans/{view['plan_id']}/signature", headers=served.headers(served.team.engineer),
                         json={"envelope": envelope})
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "signed"
    return view["plan_id"]


def _approval_request(client: TestClient, served: Served, plan_id: str, who) -> dict:  # noqa: ANN001
    r = client.get(f"/api/v1/plans/{plan_id}/approvals/statement", headers=served.headers(who),
                   params={"ref": "CAC-2026-0042", "valid_until": "2027-06-30"})
    assert r.status_code == 200, r.text
    return r.json()


def test_health_and_openapi_need_no_token(client: TestClient) -> None:
    assert client.get("/api/v1/health").json()["status"] == "ok"
    spec = client.get("/api/v1/openapi.json").json()
    assert {"/assets", "/assets/{asset_id}", "/quarantine", "/plans", "/plans/{plan_id}",
            "/plans/{plan_id}/approvals", "/plans/{plan_id}/run", "/log/checkpoint", "/log/entries",
            "/log/proof/{index}", "/drops"} <= set(spec["paths"])
    assert spec["paths"]["/plans/{plan_id}/approvals"]["post"]["x-roles"] == ["compliance"]
    upload = spec["paths"]["/drops"]["post"]
    assert "202" in upload["responses"] and upload["x-roles"] == ["ingest"]
    assert spec["paths"]["/jobs/{job_id}"]["get"]["x-roles"] == ["ingest", "admin"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer fgt_cn-shanghai_0123456789abcdef_" + "x" * 43},
                                     {"Authorization": "Basic dXNlcjpwdw=="}])
def test_missing_or_bad_token_is_401_before_the_body(client: TestClient, headers: dict) -> None:
    r = client.post("/api/v1/plans", headers=headers, content=b"{not json")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert set(r.json()["error"]) == {"code", "message"} and r.json()["error"]["code"] == "unauthenticated"
    assert client.get("/api/v1/assets", headers=headers).status_code == 401


def test_wrong_role_is_403_before_the_body_and_names_no_one(client: TestClient, served: Served) -> None:
    auditor, engineer = served.team.auditor, served.team.engineer
    r = client.post("/api/v1/plans", headers=served.headers(auditor), content=b"{not json")
    assert r.status_code == 403 and r.json()["error"] == {"code": "forbidden", "message": "this needs role engineer"}
    r = client.post("/api/v1/plans/plan-x/approvals", headers=served.headers(engineer), json={"nonsense": 1})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert engineer.name not in r.text and auditor.name not in r.text
    # the right role with a bad body is a validation error, as JSON
    r = client.post("/api/v1/plans", headers=served.headers(engineer), json={"destination": 3})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_assets_are_filtered_paged_and_explained(client: TestClient, served: Served) -> None:
    h = served.headers(served.team.auditor)
    everything = client.get("/api/v1/assets", headers=h, params={"limit": 500}).json()
    assert everything["total"] == len(everything["items"]) > 4
    videos = client.get("/api/v1/assets", headers=h, params={"kind": "exterior_video"}).json()
    assert videos["total"] >= 1 and all(a["kind"] == "exterior_video" for a in videos["items"])
    local = client.get("/api/v1/assets", headers=h, params={"outcome": "LOCAL_ONLY"}).json()
    assert all(a["outcome"] == "LOCAL_ONLY" for a in local["items"])
    first = client.get("/api/v1/assets", headers=h, params={"limit": 2, "offset": 0}).json()["items"]
    second = client.get("/api/v1/assets", headers=h, params={"limit": 2, "offset": 2}).json()["items"]
    assert len(first) == 2 and not {a["id"] for a in first} & {a["id"] for a in second}
    detail = client.get(f"/api/v1/assets/{videos['items'][0]['id']}", headers=h).json()
    assert detail["decision"]["outcome"] == detail["asset"]["outcome"]
    assert any(r["citation"] for r in detail["rules"]), detail["rules"]
    assert client.get("/api/v1/assets/as_nope", headers=h).status_code == 404
    assert client.get("/api/v1/assets", headers=h, params={"limit": 501}).status_code == 422


def test_plan_approve_run_over_http_with_signatures_made_elsewhere(client: TestClient, served: Served) -> None:
    team = served.team
    plan_id = _signed_plan(client, served)
    view = client.get(f"/api/v1/plans/{plan_id}", headers=served.headers(team.auditor)).json()
    assert view["plan"]["approval_scope"]["kinds"], "the sample has SPI owner records that need a filing"
    for officer in team.compliance:
        request = _approval_request(client, served, plan_id, officer)
        assert request["statement"]["approver"] == officer.name
        r = client.post(f"/api/v1/plans/{plan_id}/approvals", headers=served.headers(officer),
                        json={"envelope": sign(request, officer)})
        assert r.status_code == 201, r.text
    officer = team.compliance[0]
    # the personal information leaves only with its legal basis and PIPIA on record, signed by an officer
    h = served.headers(officer)
    params = {"legal_basis": "separate_consent:consent-flow-v3", "pipia": "PIPIA-2026-07"}
    assert client.get(f"/api/v1/plans/{plan_id}/basis/statement", headers=served.headers(team.engineer),
                      params=params).status_code == 403
    assert client.get(f"/api/v1/plans/{plan_id}/basis/statement", headers=h,
                      params={**params, "legal_basis": "vibes:none"}).status_code == 400
    basis = client.get(f"/api/v1/plans/{plan_id}/basis/statement", headers=h, params=params)
    assert basis.status_code == 200, basis.text
    assert basis.json()["statement"]["legal_basis"] == {"type": "separate_consent", "ref": "consent-flow-v3"}
    r = client.post(f"/api/v1/plans/{plan_id}/basis", headers=h, json={"envelope": sign(basis.json(), officer)})
    assert r.status_code == 201, r.text
    assert r.json()["by"] == officer.name and r.json()["pipia_ref"] == "PIPIA-2026-07"
    run = client.get(f"/api/v1/plans/{plan_id}/run/statement", headers=served.headers(team.engineer)).json()
    r = client.post(f"/api/v1/plans/{plan_id}/run", headers=served.headers(team.engineer),
                    json={"envelope": sign(run, team.engineer)})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "published" and result["package_id"] == "pkg-" + plan_id.removeprefix("plan-")
    assert result["approvals"] and result["ledger_delta"]["spi"] > 0, result
    # the same log the CLI writes, and audit verify is clean (plans and credentials rows included)
    verified = client.services.audit.verify()
    assert verified.findings == []
    assert set(verified.state.approvals) == {a["id"] for a in client.get(
        f"/api/v1/plans/{plan_id}", headers=served.headers(team.auditor)).json()["approvals"]}


def test_every_state_change_is_logged_with_its_principal(client: TestClient, served: Served) -> None:
    plan_id = _signed_plan(client, served)
    log = region_log(client.services.ws.region())
    requests = [e for e in log.entries("web_request")]
    assert [(e["principal"], e["method"], e["route"]) for e in requests] == [
        ("Eng Zhang", "POST", "/plans"), ("Eng Zhang", "POST", "/plans/{plan_id}/signature")]
    assert requests[1]["path_params"] == {"plan_id": plan_id} and len(requests[1]["body"]["sha256"]) == 64
    # the request entry comes before the decision it asked for
    decision = [e for e in log.entries("decision") if e["plan_id"] == plan_id][0]
    assert requests[1]["index"] < decision["index"]
    # refused requests by role are not state changes and are not logged
    client.post("/api/v1/plans", headers=served.headers(served.team.auditor), json=PLAN)
    assert len(log.entries("web_request")) == 2


def test_the_gate_refuses_over_http_what_it_refuses_on_the_cli(client: TestClient, served: Served) -> None:
    team = served.team
    plan_id = _signed_plan(client, served)
    request = _approval_request(client, served, plan_id, team.compliance[0])
    envelope = sign(request, team.compliance[0])
    # an officer's approval sent with another officer's token
    r = client.post(f"/api/v1/plans/{plan_id}/approvals", headers=served.headers(team.compliance[1]),
                    json={"envelope": envelope})
    assert r.status_code == 400 and "signed for Li Na" in r.json()["error"]["message"]
    # signed by a key that is not the officer's registered key
    stranger = new_actor(served.home.parent / "elsewhere", "Li Na")
    r = client.post(f"/api/v1/plans/{plan_id}/approvals", headers=served.headers(team.compliance[0]),
                    json={"envelope": sign(request, stranger)})
    assert r.status_code == 422 and "registered key" in r.json()["error"]["message"]
    # a field the gate decides, edited before signing (another purpose): the gate builds another statement
    edited = dict(request, payload=json.dumps({**request["statement"], "purpose": "anything at all"},
                                              sort_keys=True, separators=(",", ":")))
    r = client.post(f"/api/v1/plans/{plan_id}/approvals", headers=served.headers(team.compliance[0]),
                    json={"envelope": sign(edited, team.compliance[0])})
    assert r.status_code == 422 and "not the one the gate makes" in r.json()["error"]["message"]
    # the real one once; the same envelope again is refused by the gate, like the CLI
    ok = client.post(f"/api/v1/plans/{plan_id}/approvals", headers=served.headers(team.compliance[0]),
                     json={"envelope": envelope})
    assert ok.status_code == 201, ok.text
    again = client.post(f"/api/v1/plans/{plan_id}/approvals", headers=served.headers(team.compliance[0]),
                        json={"envelope": envelope})
    assert again.status_code == 403 and "already gave this very approval" in again.json()["error"]["message"]


def test_a_stale_or_future_statement_is_refused(served: Served) -> None:
    team = served.team
    with Workspace.open(served.home) as ws:
        services = Services(ws)
        draft = services.gate.draft("overseas", team.engineer.name, purpose="x")
        late = Services(ws, FixedClock(draft.created_at.replace(year=draft.created_at.year + 1)))
        with pytest.raises(Exception, match="prepared more than"):
            late.gate.sign_plan(draft.plan_id, sign(draft.sign.model_dump(), team.engineer), team.engineer.name)
        early = Services(ws, FixedClock(draft.created_at.replace(year=draft.created_at.year - 1)))
        with pytest.raises(Exception, match="dated in the future"):
            early.gate.sign_plan(draft.plan_id, sign(draft.sign.model_dump(), team.engineer), team.engineer.name)


def test_a_plan_decided_differently_since_the_draft_is_refused(client: TestClient, served: Served) -> None:
    team = served.team
    view = client.post("/api/v1/plans", headers=served.headers(team.engineer), json=PLAN).json()
    # an export in between: this year's ledger grew, so the same selection now decides another plan
    gate = client.services.gate
    other = gate.plan("overseas", team.engineer, purpose="other")
    gate.basis(other, "separate_consent", "CONSENT-2026-11", "PIPIA-2026-07", team.compliance[0])
    for officer in team.compliance:
        gate.approve(other, "CAC-2026-0042", dt.date(2027, 6, 30), officer)
    assert gate.run(other, team.engineer).ledger_delta["spi"] > 0
    r = client.post(f"/api/v1/plans/{view['plan_id']}/signature", headers=served.headers(team.engineer),
                    json={"envelope": sign(view["sign"], team.engineer)})
    assert r.status_code == 422 and "not the one the gate makes now" in r.json()["error"]["message"], r.text[:300]
    assert client.get(f"/api/v1/plans/{view['plan_id']}", headers=served.headers(team.engineer)).json()["status"] \
        == "draft"


def test_a_catalog_edited_behind_the_gate_blocks_the_signature(client: TestClient, served: Served) -> None:
    team = served.team
    view = client.post("/api/v1/plans", headers=served.headers(team.engineer), json=PLAN).json()
    with Workspace.open(served.home) as ws:  # someone rewrites a classification the plan relied on: a finding
        from sqlalchemy import text

        with ws.region().catalog.transaction() as conn:
            conn.execute(text("UPDATE classifications SET outcome = 'EXPORT_FREE' WHERE rowid = 1"))
    r = client.post(f"/api/v1/plans/{view['plan_id']}/signature", headers=served.headers(team.engineer),
                    json={"envelope": sign(view["sign"], team.engineer)})
    assert r.status_code == 409 and r.json()["error"]["code"] == "integrity"


def test_an_upload_agent_ingests_a_tar_stream_with_the_same_quarantine(client: TestClient, served: Served,
                                                                       sample_drop_master: Path,
                                                                       tmp_path: Path) -> None:
    import shutil

    team = served.team
    agent = new_actor(served.home.parent / "agents", "Upload Agent 7")
    services = client.services
    from fleetgate.domain import Role

    services.principals.add(agent.name, Role.ingest, agent.signer.public_key, team.admin)
    token = services.principals.issue_token(agent.name, team.admin).secret
    drop = tmp_path / "drop-upload"
    shutil.copytree(sample_drop_master, drop)
    (drop / "tables" / "owners.parquet").write_bytes(b"not parquet")
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-tar"}
    before = client.get("/api/v1/quarantine", headers=served.headers(team.auditor)).json()  # now a cached view
    assert "tables/owners.parquet" not in [i["source_path"] for i in before["items"]]
    job = upload(client, {"Authorization": f"Bearer {token}"}, "drop-upload.tar", tar_of(drop))
    assert job["status"] == "done" and job["attempts"] == 1, job
    report = job["report"]
    assert report["quarantined"] == 1 and report["problems"][0]["path"] == "tables/owners.parquet"
    assert report["run_id"] == job["job_id"] and report["request_log_index"] is not None
    # the same item in the catalog's quarantine as `fleetgate ingest` leaves it (the cached view is stale now)
    q = client.get("/api/v1/quarantine", headers=served.headers(team.auditor)).json()
    assert "tables/owners.parquet" in [i["source_path"] for i in q["items"]] and q["total"] == before["total"] + 1
    # an upload agent reads nothing, and nobody else uploads
    assert client.get("/api/v1/assets", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert client.post("/api/v1/drops", params={"name": "x.tar"}, headers=served.headers(team.engineer),
                       content=b"").status_code == 403
    bad = client.post("/api/v1/drops", params={"name": "../x.tar"}, headers=h, content=b"x")
    assert bad.status_code == 400
    uploads = served.home / "uploads"
    assert not list(uploads.glob("incoming/*")) and not list(uploads.glob("queue/*")), "spooled uploads are removed"


def test_log_routes_for_auditors_with_a_proof_that_verifies(client: TestClient, served: Served) -> None:
    h = served.headers(served.team.auditor)
    cp = client.get("/api/v1/log/checkpoint", headers=h).json()
    assert cp["origin"] == "fleetgate/cn-shanghai" and cp["size"] > 0
    page = client.get("/api/v1/log/entries", headers=h, params={"start": 0, "limit": 5}).json()
    assert [e["index"] for e in page["entries"]] == [0, 1, 2, 3, 4] and page["entries"][0]["type"] == "log_open"
    proof = client.get("/api/v1/log/proof/3", headers=h).json()
    assert proof["verified"] is True and proof["entry"]["index"] == 3
    assert client.get("/api/v1/log/entries", headers=served.headers(served.team.engineer)).status_code == 403
