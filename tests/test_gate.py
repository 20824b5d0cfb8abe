"""The export gate: invariants, approvals, reruns, concurrency, kill -9 crash trials, package checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_helpers import run_cli
from fleetgate.audit import open_log
from fleetgate.classify import classify_region
from fleetgate.domain import Plan, SignedPlan
from fleetgate.gate import (
    ApprovalRefused,
    PackageInvalid,
    approve_plan,
    make_plan,
    read_plan,
    record_basis,
    run_export,
    sign_config,
    verify_package,
    verify_region,
)
from fleetgate.gate.plan import plan_digest
from fleetgate.ingest import ingest_drop
from fleetgate.keys.envelope import canonical_json
from fleetgate.store import Ledger
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import save_config
from people import AS_OF, CLOCK, Team, load_team, make_team

PURPOSE = "train driving models"


@pytest.fixture(scope="session")
def classified_master(sample_drop_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate")
    home = root / "ws"
    init_workspace(home, "cn-shanghai")
    with Workspace.open(home) as ws:
        make_team(ws, root / "people")
        ingest_drop(ws.region(), sample_drop_master)
        classify_region(ws)
    return home


@pytest.fixture
def home(classified_master: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(classified_master, dest)
    return dest


@pytest.fixture
def team(classified_master: Path) -> Team:
    return load_team(classified_master.parent / "people")


def _plan(ws: Workspace, team: Team, select: str | None = None, purpose: str = PURPOSE,
          basis: bool = True) -> SignedPlan:
    """A plan by the engineer, with its legal basis and PIPIA recorded by a compliance officer (unless not)."""
    plan = make_plan(ws, "overseas", team.engineer, select, purpose, as_of=AS_OF, clock=CLOCK)
    if basis and any(i.blocking for i in plan.plan.items):
        record_basis(ws, plan, "separate_consent", "CONSENT-2026-11", "PIPIA-2026-07", team.compliance[1],
                     clock=CLOCK)
    return plan


def _run(ws: Workspace, team: Team, plan: SignedPlan):
    return run_export(ws, plan, team.engineer, clock=CLOCK)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _ledger(home: Path) -> dict[str, int]:
    with Workspace.open(home) as ws:
        return Ledger(ws.region().catalog).counts("cn-shanghai", 2026)


def test_only_what_the_law_permits_leaves(home: Path, team: Team, sample_drop_master: Path) -> None:
    import hashlib

    with Workspace.open(home) as ws:
        plan = _plan(ws, team)
        result = _run(ws, team, plan)
        keys = [p.read_bytes() for p in ws.keys_root.rglob("*.key")]
    assert result.status == "published"
    outcomes = {i.asset_id: i.outcome for i in plan.plan.items}
    left = {a["asset_id"] for a in result.exported}
    assert left and all(outcomes[a] in ("EXPORT_FREE", "EXPORT_FTZ_LIST") for a in left)
    dest = home / "destinations" / "overseas"
    blobs = b"".join(p.read_bytes() for p in _files(dest))
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in _files(dest)}
    held = [i for i in plan.plan.items if i.asset_id not in left]
    # no raw file of a held asset (LOCAL_ONLY, raw video, SPI owner records) appears at the destination
    assert not {i.sha256 for i in held} & hashes
    assert any(i.kind == "exterior_video" for i in held)
    # canaries: resident IDs and names of the owners table (SPI, held without a filing) never appear
    owners = pq.read_table(sample_drop_master / "tables" / "owners.parquet").to_pylist()
    for row in owners:
        assert row["national_id"].encode() not in blobs
        assert row["name"].encode() not in blobs
    # the pseudonymization and signing keys never appear
    assert keys and not any(k in blobs for k in keys)
    report = verify_package(result.path)
    assert report.files == len(left)


def test_rerun_completes_once_and_counts_once(home: Path, team: Team) -> None:
    with Workspace.open(home) as ws:
        plan = _plan(ws, team)
        first = _run(ws, team, plan)
    counts = _ledger(home)
    assert counts["pi"] > 0
    with Workspace.open(home) as ws:
        again = _run(ws, team, plan)
    assert again.status == "already published" and _ledger(home) == counts
    assert len([p for p in (home / "destinations" / "overseas").iterdir() if not p.name.startswith(".")]) == 1
    with Workspace.open(home) as ws:
        assert not verify_region(ws).findings
        assert [e["package_id"] for e in open_log(ws).entries("export")] == [first.package_id]


def test_approvals_gate_contract_items_and_lock_their_scope(home: Path, team: Team) -> None:
    select = "asset.kind == 'owner_record' || asset.kind == 'cabin_audio' || asset.kind == 'exterior_video'"
    officer = team.compliance[0]
    with Workspace.open(home) as ws:
        plan = _plan(ws, team, select)
        assert _run(ws, team, plan).status == "nothing to export"
        with pytest.raises(ApprovalRefused, match="3-year"):
            approve_plan(ws, plan, "CAC-1", dt.date(2030, 1, 1), officer, clock=CLOCK)
        with pytest.raises(ApprovalRefused, match="role compliance; Liu Yang has role auditor"):
            approve_plan(ws, plan, "CAC-1", dt.date(2027, 1, 1), team.auditor, clock=CLOCK)
        with pytest.raises(ApprovalRefused, match="separation of duties"):
            approve_plan(ws, plan, "CAC-1", dt.date(2027, 1, 1), team.engineer, clock=CLOCK)
        approval = approve_plan(ws, plan, "CAC-1", dt.date(2027, 1, 1), officer, clock=CLOCK)
        assert set(approval.statement.kinds) == {"owner_record", "cabin_audio"}
        # an approval is bound to the plan it signs: the same items with another purpose stay
        other = _plan(ws, team, select, "sell to advertisers")
        assert _run(ws, team, other).status == "nothing to export"
        result = _run(ws, team, plan)
        kinds = {a["kind"] for a in result.exported}
        assert kinds == {"owner_record", "cabin_audio"}  # raw exterior video never leaves, approved or not
        assert all(a["approvals"] == [approval.approval_id] for a in result.exported)
        assert result.approvals[0]["approver"] == officer.name and result.approvals[0]["ref"] == "CAC-1"
        # a new plan of the same scope needs its own approval
        again = _plan(ws, team, "asset.kind == 'owner_record'")
        assert _run(ws, team, again).status == "nothing to export"
        assert not verify_region(ws).findings


def test_two_distinct_compliance_officers_when_the_workspace_asks(home: Path, team: Team) -> None:
    with Workspace.open(home) as ws:
        ws.config.gate.approvers["STANDARD_CONTRACT_OR_CERT"] = 2
        save_config(ws.config)
    with Workspace.open(home) as ws:
        with pytest.raises(Exception, match="gate.approvers"):  # the changed setting is not signed yet
            _plan(ws, team, "asset.kind == 'owner_record'")
        sign_config(ws, "cn-shanghai", team.admin, clock=CLOCK)
        plan = _plan(ws, team, "asset.kind == 'owner_record'")
        first, second = team.compliance
        approve_plan(ws, plan, "CAC-2", dt.date(2027, 1, 1), first, clock=CLOCK)
        with pytest.raises(ApprovalRefused, match="already gave this very approval"):
            approve_plan(ws, plan, "CAC-2", dt.date(2027, 1, 1), first, clock=CLOCK)
        approve_plan(ws, plan, "CAC-3", dt.date(2027, 1, 1), first, clock=CLOCK)  # the same person, twice
        assert _run(ws, team, plan).status == "nothing to export"
        approve_plan(ws, plan, "CAC-2", dt.date(2027, 1, 1), second, clock=CLOCK)
        result = _run(ws, team, plan)
        assert result.status == "published"
        assert {a["approver"] for a in result.approvals} == {first.name, second.name}


def test_concurrent_exports_never_undercount_the_ledger(home: Path, team: Team) -> None:
    with Workspace.open(home) as ws:
        plans = [_plan(ws, team, sel) for sel in
                 ("asset.kind == 'after_sales'", "asset.kind == 'charging_session'", "asset.kind == 'can_telemetry'")]
        expected: set[str] = set()
        ledger = Ledger(ws.region().catalog)
        for p in plans:
            for item in p.plan.items:
                if item.counted_as == "pi":
                    expected |= {k for k, _ in ledger.subjects_of([item.asset_id])}
    errors: list[BaseException] = []

    def worker(p: SignedPlan) -> None:
        try:
            with Workspace.open(home) as ws:
                _run(ws, team, p)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(p,)) for p in plans for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert _ledger(home)["pi"] == len(expected) > 0
    with Workspace.open(home) as ws:
        assert not verify_region(ws).findings
        assert len(open_log(ws).entries("export")) == 3


def _export_child(home: str, plan: SignedPlan, team: Team) -> None:
    with Workspace.open(Path(home)) as ws:
        _run(ws, team, plan)
    os._exit(0)


def test_kill_9_at_random_points_then_rerun(home: Path, team: Team, tmp_path: Path) -> None:
    """20 trials: SIGKILL the export at a random moment, check the destination, rerun, check again."""
    with Workspace.open(home) as ws:
        plan = _plan(ws, team)
    reference = tmp_path / "reference"
    shutil.copytree(home, reference)
    ctx = multiprocessing.get_context("fork")
    start = time.perf_counter()
    proc = ctx.Process(target=_export_child, args=(str(reference), plan, team))
    proc.start()
    proc.join()
    full = time.perf_counter() - start
    expected = _ledger(reference)
    rng = random.Random(20261121)
    outcomes = []
    for trial in range(20):
        work = tmp_path / f"trial{trial}"
        shutil.copytree(home, work)
        proc = ctx.Process(target=_export_child, args=(str(work), plan, team))
        proc.start()
        time.sleep(rng.uniform(0, full * 1.1))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        outcomes.append(proc.exitcode)
        dest = work / "destinations" / "overseas"
        visible = [p for p in dest.iterdir() if not p.name.startswith(".")] if dest.exists() else []
        for package in visible:  # whatever is visible is complete
            verify_package(package)
        with Workspace.open(work) as ws:
            result = _run(ws, team, plan)
            assert not verify_region(ws).findings, f"trial {trial}"
        assert result.status in ("published", "already published")
        verify_package(result.path)
        assert _ledger(work) == expected, f"trial {trial}: ledger {_ledger(work)} != {expected}"
        shutil.rmtree(work)
    assert -signal.SIGKILL in outcomes  # at least some trials really were killed mid-way


def test_verify_package_catches_tampering(home: Path, team: Team) -> None:
    with Workspace.open(home) as ws:
        path = _run(ws, team, _plan(ws, team)).path
    report = verify_package(path, pinned_key=None)
    with pytest.raises(PackageInvalid, match="pinned"):
        verify_package(path, pinned_key="00" * 32)
    victim = next((path / "data").iterdir())
    original = victim.read_bytes()
    victim.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(PackageInvalid, match="sha256"):
        verify_package(path)
    victim.write_bytes(original)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["purpose"] = "something else"
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    with pytest.raises(PackageInvalid, match="signature"):
        verify_package(path)
    assert report.files > 0


def test_cli_export_audit_and_verify_package(home: Path, team: Team, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    as_engineer = team.env(team.engineer)
    proc = run_cli("export", "plan", "--to", "overseas", "-o", str(plan), "--purpose", PURPOSE, home=home)
    assert proc.returncode == 2 and "signed by a person" in proc.stderr
    run_cli("export", "plan", "--to", "overseas", "-o", str(plan), "--purpose", PURPOSE, home=home, check=True,
            env_extra=as_engineer)
    assert read_plan(plan).plan.author == team.engineer.name
    out = json.loads(run_cli("export", "run", str(plan), "--format", "json", home=home, check=True,
                             env_extra=as_engineer).stdout)
    assert out["status"] == "published"
    assert "the catalog matches it" in run_cli("audit", "verify", home=home, check=True).stdout
    proof = json.loads(run_cli("audit", "prove", str(out["log_index"]), home=home, check=True).stdout)
    assert proof["entry"]["type"] == "export"
    assert "fleetgate-witness" in run_cli("audit", "witness", home=home, check=True).stdout
    assert run_cli("verify-package", out["path"], home=home).returncode == 0
    (Path(out["path"]) / "PUBLISHED").unlink()
    proc = run_cli("verify-package", out["path"], home=home)
    assert proc.returncode == 1 and "not a published package" in proc.stderr


def test_the_same_plan_made_twice_is_one_logged_decision(home: Path, team: Team) -> None:
    with Workspace.open(home) as ws:
        first = _plan(ws, team, "asset.kind == 'procurement'")
        again = _plan(ws, team, "asset.kind == 'procurement'")  # same clock, same content: the same plan
        assert again.plan_id == first.plan_id and again.statement == first.statement
        assert [e["plan_id"] for e in open_log(ws).entries("decision")].count(first.plan_id) == 1
        assert not verify_region(ws).findings


def test_personal_information_waits_for_its_legal_basis_and_pipia(home: Path, team: Team) -> None:
    with Workspace.open(home) as ws:
        plan = _plan(ws, team, "asset.kind == 'after_sales'", basis=False)
        blocked = [i for i in plan.plan.items if i.blocking]
        assert blocked and {b.requires for i in blocked for b in i.blocking} == {"legal_basis", "pipia_ref"}
        result = _run(ws, team, plan)
        assert result.status == "nothing to export"
        assert all("blocked until recorded" in h["held"] for h in result.held)
        with pytest.raises(Exception, match="needs role compliance; Eng Zhang has role engineer"):
            record_basis(ws, plan, "separate_consent", "C-1", "P-1", team.engineer, clock=CLOCK)
        with pytest.raises(Exception, match="not a legal basis"):
            record_basis(ws, plan, "because", "C-1", "P-1", team.compliance[0], clock=CLOCK)
        record_basis(ws, plan, "separate_consent", "CONSENT-1", "PIPIA-1", team.compliance[0], clock=CLOCK)
        result = _run(ws, team, plan)
        assert result.status == "published" and {a["asset_id"] for a in result.exported} == \
            {i.asset_id for i in blocked}
        assert not verify_region(ws).findings



@pytest.fixture(scope="module")
def a_plan(classified_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Plan:
    home = tmp_path_factory.mktemp("digest") / "ws"
    shutil.copytree(classified_master, home)
    with Workspace.open(home) as ws:
        engineer = load_team(classified_master.parent / "people").engineer
        return make_plan(ws, "overseas", engineer, None, PURPOSE, as_of=AS_OF, clock=CLOCK).plan


@settings(max_examples=40, deadline=None)
@given(purpose=st.text(), select=st.text(max_size=20), items=st.integers(min_value=0, max_value=5))
def test_plan_digest_is_the_digest_of_the_whole_canonical_body(a_plan: Plan, purpose: str, select: str,
                                                              items: int) -> None:
    """`plan_digest` hashes the body item by item; the bytes must be exactly the canonical JSON of the whole
    plan (what approvers, auditors and `audit verify` recompute), for any text and any number of items."""
    plan = a_plan.model_copy(update={"purpose": purpose, "select": select, "items": (a_plan.items * 2)[:items]})
    whole = "sha256:" + hashlib.sha256(canonical_json(plan.model_dump(mode="json"))).hexdigest()
    assert plan_digest(plan) == whole
