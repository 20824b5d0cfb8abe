"""The gate trusts only what it can verify: one test per insider attack, each with the exact refusal or finding.

The attacker has write access to the workspace (the catalog database, the plan files, the key folder)
and can run fleetgate's own code, but holds nobody's personal key. Every attack starts from a region
that has ingested, de-identified, classified, planned, approved and exported.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import run_cli
from fleetgate.audit.check import CatalogCheck
from fleetgate.audit.log import region_log
from fleetgate.audit.state import approval_id, replay
from fleetgate.classify import classify_region
from fleetgate.deid import deid_region
from fleetgate.domain import ApprovalStatement, Role
from fleetgate.errors import ExitCode, IntegrityError
from fleetgate.gate import (
    ApprovalRefused,
    CatalogMismatch,
    ExportRefused,
    PlanRefused,
    approve_plan,
    make_plan,
    read_plan,
    record_basis,
    run_export,
    sign_config,
    verify_region,
    write_plan,
)
from fleetgate.gate.plan import GATE_CONTENT, decide_assets, plan_digest, plan_id_of, select_assets
from fleetgate.ingest import ingest_drop
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import new_key_pair
from fleetgate.people import PrincipalError, remove_principal
from fleetgate.store.schema import FACT_TABLES
from fleetgate.store.sealed import SealError
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import save_config
from people import AS_OF, CLOCK, Team, load_team, make_team, new_actor

PURPOSE = "train driving models"
BOUND = "asset.kind == 'owner_record' || asset.kind == 'cabin_audio'"
UNTIL = dt.date(2027, 6, 30)


@pytest.fixture(scope="session")
def exported_master(sample_drop_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    home = root / "ws"
    drop = root / "drop"
    shutil.copytree(sample_drop_master, drop)
    (drop / "tables" / "notes.txt").write_text("a file the drop layout has no place for")  # quarantined
    init_workspace(home, "cn-shanghai")
    with Workspace.open(home) as ws:
        team = make_team(ws, root / "people")
        ingest_drop(ws.region(), drop)
        deid_region(ws, camera=False)
        classify_region(ws)
        plan = make_plan(ws, "overseas", team.engineer, None, PURPOSE, as_of=AS_OF, clock=CLOCK)
        record_basis(ws, plan, "separate_consent", "CONSENT-2026-11", "PIPIA-2026-07", team.compliance[1],
                     clock=CLOCK)
        write_plan(plan, root / "plan.json")
        approve_plan(ws, plan, "CAC-2026-0042", UNTIL, team.compliance[0], clock=CLOCK)
        assert run_export(ws, plan, team.engineer, clock=CLOCK).status == "published"
        assert not verify_region(ws).findings
    return home


@pytest.fixture
def home(exported_master: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(exported_master, dest)
    shutil.copy(exported_master.parent / "plan.json", tmp_path / "plan.json")
    return dest


@pytest.fixture
def team(exported_master: Path) -> Team:
    return load_team(exported_master.parent / "people")


def _db(home: Path) -> sqlite3.Connection:
    # the insider's own connection: no foreign keys, no fleetgate code in the way
    return sqlite3.connect(home / "regions" / "cn-shanghai" / "catalog.db", isolation_level=None)


def _sql(home: Path, statement: str, *params: object) -> list[tuple]:
    with _db(home) as conn:
        return conn.execute(statement, params).fetchall()


def _findings(home: Path) -> list:
    with Workspace.open(home) as ws:
        return verify_region(ws).findings


def _has(findings: list, table: str, row: str, field: str, text: str = "") -> bool:
    return any(f.table == table and f.row == row and f.field == field and text in f.problem for f in findings)


def _new_plan(home: Path, team: Team, select: str | None = None):
    """A plan by the engineer, its legal basis and PIPIA recorded by a compliance officer."""
    with Workspace.open(home) as ws:
        plan = make_plan(ws, "overseas", team.engineer, select, PURPOSE, as_of=AS_OF, clock=CLOCK)
        record_basis(ws, plan, "separate_consent", "CONSENT-2026-11", "PIPIA-2026-07", team.compliance[1],
                     clock=CLOCK)
        return plan


def _run(home: Path, team: Team, plan):
    with Workspace.open(home) as ws:
        return run_export(ws, plan, team.engineer, clock=CLOCK)


def _raw(home: Path, kind: str) -> str:
    return _sql(home, "SELECT id FROM assets WHERE kind = ? AND parent_id IS NULL ORDER BY id LIMIT 1", kind)[0][0]


# -- the attacks of the issue ------------------------------------------------------------------------------
def test_relabel_raw_video_as_procurement_is_found_and_refused(home: Path, team: Team) -> None:
    video = _raw(home, "exterior_video")
    procurement = _raw(home, "procurement")
    with _db(home) as conn:
        conn.execute("UPDATE assets SET kind = 'procurement' WHERE id = ?", (video,))
        cols = [d[0] for d in conn.execute("SELECT * FROM classifications").description]
        row = list(conn.execute("SELECT * FROM classifications WHERE asset_id = ?", (procurement,)).fetchone())
        row[cols.index("asset_id")] = video
        conn.execute("DELETE FROM classifications WHERE asset_id = ?", (video,))
        conn.execute(f"INSERT INTO classifications ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", row)
    findings = _findings(home)
    assert _has(findings, "assets", video, "kind", '"procurement" in the catalog, "exterior_video" in log entry')
    assert _has(findings, "assets", video, "content", "the bytes are mp4, not the parquet a procurement asset holds")
    assert _has(findings, "classifications", video, "policy_kind")
    assert _has(findings, "classifications", video, "features")
    with pytest.raises(CatalogMismatch, match=f"assets {video}: kind") as refused:
        _new_plan(home, team)
    assert refused.value.exit_code == ExitCode.INTEGRITY


def test_content_decides_the_kind_even_when_the_catalog_is_believed(home: Path) -> None:
    """Were a relabel ever to pass the catalog check, the bytes still keep an MP4 out of a table kind."""
    video = _raw(home, "exterior_video")
    with Workspace.open(home) as ws:
        assets = [a for a in select_assets(ws, "cn-shanghai", None) if a["id"] == video]
        relabelled = [assets[0] | {"kind": "procurement",
                                   "classification": assets[0]["classification"] | {"policy_kind": "procurement",
                                                                                    "features": []}}]
        _, rows = decide_assets(ws, "cn-shanghai", "US", relabelled, AS_OF)
    assert rows[0].outcome == "LOCAL_ONLY" and GATE_CONTENT in rows[0].rules
    assert "the bytes are mp4, not the parquet a procurement asset holds" in rows[0].reasons[-1]


def test_forged_approval_row_is_found_and_releases_nothing(home: Path, team: Team) -> None:
    plan = _new_plan(home, team, BOUND)
    _sql(home, "INSERT INTO export_approvals (id, plan_id, plan_digest, approver, keyid, ref, destination_country, "
               "kinds, outcomes, max_subjects, valid_from, valid_until, envelope, log_index, created_at) VALUES "
               "('appr-forged', ?, ?, 'Invented Officer', ?, 'CAC-FAKE', 'US', ?, ?, 1000, '2026-01-01', "
               "'2027-12-31', '{}', 1, '2026-11-21 12:00:00')", plan.plan_id,
         plan.statement["payload"][:10], "0" * 64, json.dumps(plan.plan.approval_scope.kinds),
         json.dumps(plan.plan.approval_scope.outcomes))
    assert _has(_findings(home), "export_approvals", "appr-forged", "*", "no logged statement or entry")
    with pytest.raises(CatalogMismatch, match="export_approvals appr-forged"):
        _run(home, team, plan)


def test_anyone_typing_approve_is_refused(home: Path, team: Team, tmp_path: Path) -> None:
    plan = _new_plan(home, team, BOUND)
    path = tmp_path / "bound.json"
    write_plan(plan, path)
    args = ("export", "approve", str(path), "--ref", "CAC-1", "--valid-until", "2027-01-01")
    assert "signed by a person" in run_cli(*args, home=home).stderr
    author = run_cli(*args, home=home, env_extra=team.env(team.engineer))
    assert author.returncode == 2 and "may not approve it (separation of duties)" in author.stderr
    stranger = new_actor(tmp_path, "Mallory")
    proc = run_cli(*args, "--as", "Mallory", "--key", str(tmp_path / "mallory.key"), home=home)
    assert proc.returncode == 2 and "Mallory is not a registered principal" in proc.stderr
    proc = run_cli(*args, "--as", team.compliance[0].name, "--key", str(tmp_path / "mallory.key"), home=home)
    assert proc.returncode == 2 and "not Li Na's registered key" in proc.stderr
    assert stranger.name == "Mallory"


def test_edited_plan_is_refused_by_approve_and_run(home: Path, team: Team, tmp_path: Path) -> None:
    doc = json.loads((tmp_path / "plan.json").read_text())
    doc["plan"]["destination"]["country"] = "SG"
    doc["plan"]["exporter"] = "someone-else"
    signed = read_plan(_write(tmp_path / "edited.json", doc))
    doc["plan_id"] = plan_id_of(plan_digest(signed.plan))  # the attacker recomputes the id, as before
    edited = read_plan(_write(tmp_path / "edited.json", doc))
    with pytest.raises(PlanRefused, match="no signed decision for it"):
        _run(home, team, edited)
    with Workspace.open(home) as ws, pytest.raises(PlanRefused, match="no signed decision for it"):
        approve_plan(ws, edited, "CAC-9", UNTIL, team.compliance[1], clock=CLOCK)
    # the same plan id, the body edited: its digest no longer matches
    doc["plan_id"] = json.loads((tmp_path / "plan.json").read_text())["plan_id"]
    with pytest.raises(PlanRefused, match="changed after it was made"):
        _run(home, team, read_plan(_write(tmp_path / "edited.json", doc)))
    proc = run_cli("export", "run", str(tmp_path / "edited.json"), home=home, env_extra=team.env(team.engineer))
    assert proc.returncode == 2 and "changed after it was made" in proc.stderr


def test_run_takes_country_and_exporter_from_the_logged_decision(home: Path, team: Team) -> None:
    plan = _new_plan(home, team, "asset.kind == 'procurement'")
    with Workspace.open(home) as ws:
        ws.config.destinations["overseas"].country = "SG"
        save_config(ws.config)
    with Workspace.open(home) as ws, pytest.raises(IntegrityError, match="destinations.overseas"):
        run_export(ws, plan, team.engineer, clock=CLOCK)  # an unsigned change of the settings is caught first
    assert _has(_findings(home), "config", "cn-shanghai", "destinations.overseas")
    with Workspace.open(home) as ws:
        sign_config(ws, "cn-shanghai", team.admin, clock=CLOCK)  # even signed, it is not the plan's country
        with pytest.raises(ExportRefused, match="country SG in fleetgate.toml; plan .* was decided for overseas"):
            run_export(ws, plan, team.engineer, clock=CLOCK)
        ws.config.destinations["overseas"].country = "US"
        ws.config.regions["cn-shanghai"].exporter = "another-entity"
        save_config(ws.config)
    with Workspace.open(home) as ws:
        sign_config(ws, "cn-shanghai", team.admin, clock=CLOCK)
        with pytest.raises(ExportRefused, match="exporter is 'another-entity'"):
            run_export(ws, plan, team.engineer, clock=CLOCK)


def test_ledger_reset_is_found(home: Path, team: Team) -> None:
    package = _sql(home, "SELECT package_id FROM exports")[0][0]
    before = _sql(home, "SELECT count(*) FROM ledger_subjects")[0][0]
    assert before > 0
    _sql(home, "DELETE FROM ledger_subjects")
    findings = _findings(home)
    assert _has(findings, "ledger_subjects", package, "pi", "0 row(s) in the catalog")
    with pytest.raises(CatalogMismatch, match=f"ledger_subjects {package}"):
        _new_plan(home, team)


def test_a_blob_overwritten_on_disk_stops_the_copy(home: Path, team: Team) -> None:
    plan = _new_plan(home, team, "asset.kind == 'procurement'")
    sha = plan.plan.items[0].sha256
    with Workspace.open(home) as ws:  # blobs are sealed: the stored file is named by its ciphertext
        stored = ws.region().blobs.copies(sha)[0].stored_as
    blob = home / "regions" / "cn-shanghai" / "blobs" / "blobs" / stored[:2] / stored[2:4] / stored
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(SealError, match="fails its authentication tag"):
        _run(home, team, plan)


# -- approvals the gate must ignore -----------------------------------------------------------------------
def _forge_approval(home: Path, plan, signer, name: str) -> str:
    """An insider appends an approval statement to the log directly, signed with `signer`, claiming `name`."""
    with Workspace.open(home) as ws:
        from fleetgate.people import current_state

        state = current_state(ws.region())
        decision = state.decisions[plan.plan_id]
        st = decision.statement
        statement = ApprovalStatement(
            plan_id=st.plan_id, plan_digest=st.plan_digest, decision_index=decision.index, region=st.region,
            destination_country=st.destination.country, exporter=st.exporter, purpose=st.purpose, packs=st.packs,
            kinds=st.approval_scope.kinds, outcomes=st.approval_scope.outcomes, max_subjects=10_000, ref="CAC-X",
            valid_from=AS_OF, valid_until=UNTIL, approver=name, at=CLOCK.now())
        envelope = env.sign_statement(statement.model_dump(mode="json"), env.APPROVAL, signer.signer)
        reg = ws.region()
        with reg.catalog.transaction() as conn:
            index, _ = region_log(reg).append(conn, "approval", {"approval_id": approval_id(envelope),
                                                                 "statement": envelope})
    return f"entry {index}"


def _held_for_approval(result) -> bool:
    """Every approval-bound item stayed; only what needs no approval (if anything) left."""
    bound = ("STANDARD_CONTRACT_OR_CERT", "SECURITY_ASSESSMENT")
    return not any(a["outcome"] in bound for a in result.exported) and \
        any("valid approval" in h["held"] for h in result.held)


def test_approval_by_an_unregistered_key_is_ignored_and_flagged(home: Path, team: Team, tmp_path: Path) -> None:
    plan = _new_plan(home, team, BOUND)
    entry = _forge_approval(home, plan, new_actor(tmp_path, "Mallory"), "Mallory")
    assert _has(_findings(home), "log", entry, "statement", "Mallory is not a registered principal")
    assert _held_for_approval(_run(home, team, plan))


def test_approval_by_a_removed_principal(home: Path, team: Team) -> None:
    plan = _new_plan(home, team, BOUND)
    officer = team.compliance[0]
    with Workspace.open(home) as ws:
        early = approve_plan(ws, plan, "CAC-7", UNTIL, officer, clock=CLOCK)
        remove_principal(ws.region(), officer.name, team.admin, clock=CLOCK)
        with pytest.raises(ApprovalRefused, match="Li Na is not a registered principal"):
            approve_plan(ws, plan, "CAC-8", UNTIL, officer, clock=CLOCK)
    entry = _forge_approval(home, plan, officer, officer.name)  # signed with the removed key, after removal
    assert _has(_findings(home), "log", entry, "statement", "Li Na is not a registered principal at this point")
    # what she approved while registered still holds: removal does not rewrite history
    result = _run(home, team, plan)
    assert result.status == "published" and {a["approval_id"] for a in result.approvals} == {early.approval_id}


def test_approval_by_the_plans_author_or_an_engineer_is_ignored(home: Path, team: Team) -> None:
    plan = _new_plan(home, team, BOUND)
    entry = _forge_approval(home, plan, team.engineer, team.engineer.name)
    assert _has(_findings(home), "log", entry, "statement",
                f"{team.engineer.name} has role engineer, not compliance")
    with Workspace.open(home) as ws:
        from fleetgate.people import add_principal

        second = new_actor(team.folder, "Second Engineer")
        add_principal(ws.region(), second.name, Role.engineer, second.signer.public_key, team.admin, clock=CLOCK)
    entry = _forge_approval(home, plan, second, second.name)
    assert _has(_findings(home), "log", entry, "statement", "Second Engineer has role engineer, not compliance")
    assert _held_for_approval(_run(home, team, plan))


def test_an_approval_is_not_reused_for_another_plan(home: Path, team: Team) -> None:
    first = _new_plan(home, team, BOUND)
    with Workspace.open(home) as ws:
        approval = approve_plan(ws, first, "CAC-5", UNTIL, team.compliance[1], clock=CLOCK)
    second = _new_plan(home, team, "asset.kind == 'owner_record'")
    assert _held_for_approval(_run(home, team, second))
    _sql(home, "UPDATE export_approvals SET plan_id = ? WHERE id = ?", second.plan_id, approval.approval_id)
    assert _has(_findings(home), "export_approvals", approval.approval_id, "plan_id")
    with pytest.raises(CatalogMismatch):
        _run(home, team, second)


# -- rows edited behind the gate's back ----------------------------------------------------------------
def test_classification_edited_to_drop_faces_is_found(home: Path) -> None:
    video = _raw(home, "exterior_video")
    features = json.loads(_sql(home, "SELECT features FROM classifications WHERE asset_id = ?", video)[0][0])
    assert "faces" in features
    _sql(home, "UPDATE classifications SET features = ? WHERE asset_id = ?",
         json.dumps([f for f in features if f != "faces"]), video)
    assert _has(_findings(home), "classifications", video, "features", '["faces", "plates", "vin"] in log entry')


def test_log_entry_rewritten_after_verification_does_not_excuse_an_edited_row(home: Path) -> None:
    """The replayed state keeps each fact's digest and reads the fact back from its entry only to name
    the fields of a row that differs: an insider who rewrites that entry between the log's verification
    and the row check (to make it agree with their edit) gets the row reported, not excused."""
    video = _raw(home, "exterior_video")
    features = json.loads(_sql(home, "SELECT features FROM classifications WHERE asset_id = ?", video)[0][0])
    edited = [f for f in features if f != "faces"]
    with Workspace.open(home) as ws:
        region = ws.region()
        state, _ = replay(region_log(region), region.name)
        _sql(home, "UPDATE classifications SET features = ? WHERE asset_id = ?", json.dumps(edited), video)
        index = state.facts["classifications"][video].index
        entry = json.loads(_sql(home, "SELECT entry FROM log_entries WHERE idx = ?", index)[0][0])
        for fact in entry["facts"]["classifications"]:
            if fact["asset_id"] == video:
                fact["features"] = edited
        _sql(home, "UPDATE log_entries SET entry = ? WHERE idx = ?", json.dumps(entry), index)
        findings = CatalogCheck(region, state, content=False).run()
    assert _has(findings, "classifications", video, "*", f"log entry {index}, which no longer reads as it did")
    assert not _has(findings, "classifications", video, "features")


def test_derived_asset_pointed_at_a_raw_blob_is_found(home: Path) -> None:
    derived, parent_sha = _sql(home, "SELECT d.id, p.sha256 FROM assets d JOIN assets p ON d.parent_id = p.id "
                                     "WHERE d.kind = 'gnss_trajectory' LIMIT 1")[0]
    _sql(home, "UPDATE assets SET sha256 = ? WHERE id = ?", parent_sha, derived)
    assert _has(_findings(home), "assets", derived, "sha256", "in the catalog")


def test_export_record_deleted_is_found(home: Path) -> None:
    package = _sql(home, "SELECT package_id FROM exports")[0][0]
    _sql(home, "DELETE FROM exports")
    assert _has(_findings(home), "exports", package, "*", "missing from the catalog")


def test_principal_inserted_by_sql_is_found(home: Path, tmp_path: Path) -> None:
    key = new_key_pair(tmp_path / "eve.key")
    _sql(home, "INSERT INTO principals (keyid, name, role, public_key, added_index, added_by) VALUES "
               "(?, 'Eve', 'compliance', ?, 1, 'Ada Admin')", key.keyid, (tmp_path / "eve.key.pub").read_text())
    assert _has(_findings(home), "principals", key.keyid, "*", "no logged statement or entry")


def test_region_public_key_file_replaced_is_found(home: Path) -> None:
    pub = home / "keys" / "cn-shanghai" / "signing.pub"
    pub.chmod(0o600)
    pub.write_text("11" * 32 + "\n")
    assert _has(_findings(home), "keys", "cn-shanghai/signing.pub", "public_key", "not the key pinned in log entry 0")


def test_region_signing_key_replaced_fails_verification(home: Path) -> None:
    key = home / "keys" / "cn-shanghai" / "signing.key"
    key.chmod(0o600)
    key.write_bytes(b"\x07" * 32)
    proc = run_cli("audit", "verify", home=home)
    assert proc.returncode == ExitCode.INTEGRITY and "signature does not verify" in proc.stderr


def test_principals_are_added_only_by_admins(home: Path, team: Team, tmp_path: Path) -> None:
    key = new_key_pair(tmp_path / "x.key")
    with Workspace.open(home) as ws, pytest.raises(PrincipalError, match="Li Na has role compliance, not admin"):
        from fleetgate.people import add_principal

        add_principal(ws.region(), "Xavier", Role.compliance, key, team.compliance[0], clock=CLOCK)


def test_verify_cli_names_table_row_and_field_and_exits_4(home: Path) -> None:
    video = _raw(home, "exterior_video")
    _sql(home, "UPDATE assets SET bytes = bytes + 1 WHERE id = ?", video)
    proc = run_cli("audit", "verify", "--format", "json", home=home)
    assert proc.returncode == ExitCode.INTEGRITY
    findings = json.loads(proc.stdout)["findings"]
    assert {"table": "assets", "row": video, "field": "bytes"}.items() <= findings[0].items()


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


# -- property: any single-row edit of a table the gate reads is found --------------------------------------
def _mutated(value: object, draw) -> object:
    if isinstance(value, bool) or value in (0, 1) and isinstance(value, int) and draw(st.booleans()):
        return int(not value)
    if isinstance(value, int):
        return value + draw(st.integers(1, 1000))
    if isinstance(value, float):
        return value + 1.5
    if value is None:
        return draw(st.sampled_from(["x", "2026-01-01 00:00:00"]))
    text = str(value)
    try:  # a time moves by a second or more: a new spelling of the same instant is not an edit
        when = dt.datetime.fromisoformat(text)
        return str(when + dt.timedelta(seconds=draw(st.integers(1, 10**6))))
    except ValueError:
        pass
    if text.startswith(("[", "{")):
        doc = json.loads(text)
        return json.dumps(doc + ["x"] if isinstance(doc, list) else {**doc, "x": 1})
    return text + draw(st.sampled_from(["x", " ", "0"]))


KEYS = {"assets": "id", "quarantine": "id", "classifications": "asset_id", "asset_subjects": "asset_id",
        "ledger_subjects": "export_id", "principals": "keyid", "export_approvals": "id", "exports": "package_id"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_row_edit_is_found(exported_master: Path, tmp_path_factory: pytest.TempPathFactory,
                                      data: st.DataObject) -> None:
    home = tmp_path_factory.mktemp("edit") / "ws"
    shutil.copytree(exported_master, home)
    table = data.draw(st.sampled_from(FACT_TABLES))
    with _db(home) as conn:
        cols = [d[0] for d in conn.execute(f"SELECT * FROM {table}").description]
        rows = conn.execute(f"SELECT rowid, * FROM {table}").fetchall()
        assert rows, table
        rowid, *values = data.draw(st.sampled_from(rows))
        key_before = values[cols.index(KEYS[table])]
        action = data.draw(st.sampled_from(["update", "delete", "insert"]))
        if action == "update":
            column = data.draw(st.sampled_from(cols))
            new = _mutated(values[cols.index(column)], data.draw)
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (new, rowid))
            keys = {str(key_before), str(new) if column == KEYS[table] else str(key_before)}
        elif action == "delete":
            conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
            keys = {str(key_before)}
        else:
            copy = list(values)
            pk = [c for c in cols if c in {KEYS[table], "subject_key", "category", "year", "exporter"}]
            for c in pk:
                copy[cols.index(c)] = _mutated(copy[cols.index(c)], data.draw) if c != "category" else "pi"
            try:
                conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", copy)
            except sqlite3.IntegrityError:
                return  # the database itself refused the row
            keys = {str(key_before), str(copy[cols.index(KEYS[table])])}
    findings = _findings(home)
    related = {table} | ({"asset_subjects"} if table == "classifications" else set())
    assert any(f.table in related and f.row in keys | {"*"} for f in findings), (table, action, keys, findings[:3])
