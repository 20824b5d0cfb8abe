"""Data-subject rights: find, copy and erase one person everywhere in a region; canaries prove it."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import random
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from canary import scan
from cli_helpers import run_cli
from fleetgate.audit import open_log
from fleetgate.classify import classify_region
from fleetgate.deid import deid_region
from fleetgate.gate import make_plan, record_basis, run_export, verify_region
from fleetgate.gate.trust import CatalogMismatch
from fleetgate.ingest import ingest_drop
from fleetgate.keys import keyed_digest
from fleetgate.people import PrincipalError
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.store import Ledger
from fleetgate.store.keyring import Keyring
from fleetgate.subjects import (
    SubjectError,
    erase_subject,
    export_subject,
    find_subject,
    open_requests,
    place_hold,
    release_hold,
)
from fleetgate.workspace import Workspace, init_workspace
from people import AS_OF, CLOCK, Team, load_team, make_team

REGION = "cn-shanghai"


@pytest.fixture(scope="session")
def subjects_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three vehicles (one clip of the first is cut off and quarantined), de-identified, classified and
    partly exported: the first owner's data is everywhere a person's data can be."""
    root = tmp_path_factory.mktemp("subjects")
    drop = root / "drop"
    generate_sample(drop, SampleSpec(vehicles=3, clips=2, seed=5, video_seconds=1.0, drive_seconds=8.0,
                                     defects=True))
    home = root / "ws"
    init_workspace(home, REGION)
    with Workspace.open(home) as ws:
        team = make_team(ws, root / "people")
        ingest_drop(ws.region(), drop)
        deid_region(ws)
        classify_region(ws)
        plan = make_plan(ws, "overseas", team.engineer, None, "train models", as_of=AS_OF, clock=CLOCK)
        record_basis(ws, plan, "separate_consent", "CONSENT-2026-11", "PIPIA-2026-07", team.compliance[1],
                     clock=CLOCK)
        assert run_export(ws, plan, team.engineer, clock=CLOCK).status == "published"
    return root


@pytest.fixture
def world(subjects_master: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "w"
    shutil.copytree(subjects_master, dest)
    return dest


@pytest.fixture
def team(subjects_master: Path) -> Team:
    return load_team(subjects_master / "people")


def _people(root: Path) -> list[dict[str, str]]:
    """Each owner's VIN, phone, resident ID and plate, from the drop as the fleet uploaded it."""
    owners = pq.read_table(root / "drop" / "tables" / "owners.parquet").to_pylist()
    sales = pq.read_table(root / "drop" / "tables" / "after_sales.parquet").to_pylist()
    plates = {r["vin"]: r["plate"] for r in sales}
    return [{"vin": o["vin"], "phone": o["phone"], "id_number": o["national_id"], "plate": plates[o["vin"]]}
            for o in owners]


def _region_scan(root: Path, needles: dict[str, str]):
    """Every byte under the workspace but the packages that already left (they are abroad)."""
    home = root / "ws"
    published = [p for p in (home / "destinations" / "overseas").iterdir() if not p.name.startswith(".")]
    return scan(home, needles, REGION, skip=tuple(published))


def _log_text(home: Path) -> str:
    with sqlite3.connect(home / "regions" / REGION / "catalog.db") as db:
        return "\n".join(r[0] for r in db.execute("SELECT entry FROM log_entries ORDER BY idx"))


def _entries(home: Path, kind: str) -> list[dict]:
    with Workspace.open(home) as ws:
        return open_log(ws).entries(kind)


# -- find ------------------------------------------------------------------------------------------------
def test_find_by_any_identifier_gives_the_same_person(world: Path, team: Team) -> None:
    person = _people(world)[0]
    home = world / "ws"
    with Workspace.open(home) as ws:
        found = {kind: find_subject(ws, kind, person[kind], f"DSR-F-{kind}", team.auditor, clock=CLOCK)
                 for kind in ("vin", "phone", "id_number", "plate")}
    by_vin = found["vin"]
    assert by_vin["identifiers"] == {"id_number": 1, "phone": 1, "plate": 1, "vin": 1}
    kinds = by_vin["assets"]["by_kind"]
    assert kinds["exterior_video"] >= 1 and kinds["can_telemetry"] == 2 and kinds["clip_manifest"] == 2
    assert any(k.endswith("(derived)") for k in kinds)  # de-identified clips and tracks of their vehicle
    assert {t["kind"] for t in by_vin["table_rows"].values()} >= {"owner_record", "after_sales", "charging_session"}
    assert by_vin["quarantine"]["count"] == 1  # the cut-off video of their first clip
    assert by_vin["packages"] and by_vin["packages"][0]["country"] == "US"
    for other in found.values():
        assert other["assets"]["ids"] == by_vin["assets"]["ids"]
        assert other["table_rows"].keys() == by_vin["table_rows"].keys()
    # the requests are signed and logged, and no identifier is in the log in clear
    assert len(_entries(home, "subject_request")) == 4
    text = _log_text(home)
    assert not any(value in text for value in person.values())


def test_requests_need_the_right_role(world: Path, team: Team) -> None:
    person = _people(world)[0]
    with Workspace.open(world / "ws") as ws:
        with pytest.raises(PrincipalError, match="needs role auditor or compliance"):
            find_subject(ws, "vin", person["vin"], "DSR-X", team.engineer)
        with pytest.raises(PrincipalError, match="needs role compliance"):
            erase_subject(ws, "vin", person["vin"], "DSR-X", team.auditor)
        with pytest.raises(SubjectError, match="not a valid vin"):
            find_subject(ws, "vin", "NOT-A-VIN", "DSR-X", team.auditor)


# -- erase -----------------------------------------------------------------------------------------------
def test_dry_run_previews_and_changes_nothing(world: Path, team: Team) -> None:
    person = _people(world)[0]
    home = world / "ws"
    with Workspace.open(home) as ws:
        before = len(ws.region().catalog.list_assets())
        preview = erase_subject(ws, "vin", person["vin"], "DSR-P", team.compliance[0], dry_run=True, clock=CLOCK)
        assert preview["status"] == "preview" and preview["erase"]["assets"] > 0
        assert preview["erase"]["rows_removed"] > 0 and preview["erase"]["packages_left"] == 1
        assert len(ws.region().catalog.list_assets()) == before
        assert not verify_region(ws).findings
        due = open_requests(ws.region(), AS_OF)
        assert [r["ref"] for r in due] == ["DSR-P"]
        assert due[0]["due_by"] == "2026-12-04" and due[0]["days_left"] == 13  # 10 working days from Sat 21 Nov
    assert not _entries(home, "erasure")


def test_erase_leaves_no_canary_anywhere_and_keeps_everyone_else(world: Path, team: Team) -> None:
    people = _people(world)
    person, others = people[0], people[1:]
    home = world / "ws"
    before = _region_scan(world, person)
    assert before.hits and before.parquet_decoded > 0  # the scan finds them while they are there
    assert any("catalog.db" in h for h in before.hits)  # the catalog names the VIN in clear, as it does
    with Workspace.open(home) as ws:
        ledger_before = Ledger(ws.region().catalog).counts("cn-shanghai", 2026)
        vehicle_digest = keyed_digest(ws.keys().pseudonym_key(), "vin", person["vin"])
        result = erase_subject(ws, "vin", person["vin"], "DSR-1", team.compliance[0], clock=CLOCK)
        assert result["status"] == "erased"
        assert not verify_region(ws).findings
        assert Ledger(ws.region().catalog).counts("cn-shanghai", 2026) == ledger_before  # counted, as tombstones
        ring = Keyring.of(ws.keys())
        assert ring.fact_key(ring.vehicle_pseudonym(person["vin"]), create=False) is None
    after = _region_scan(world, person)
    assert after.hits == [], after.hits
    assert after.files > 0 and after.parquet_decoded > 0 and after.sealed_readable > 0
    for other in others:  # everyone else's rows, clips and identifiers are still there
        assert _region_scan(world, other).hits
    # the log: one erasure, finished once, with the package that left and its recipient; still no PI
    erasure, = _entries(home, "erasure")
    done, = _entries(home, "erasure_done")
    assert done["erasure_id"] == erasure["erasure_id"] and done["keys_absent"]
    assert erasure["packages"][0]["recipient"]["country"] == "US"
    assert erasure["counts"]["quarantine"] == 1 and erasure["assets"]
    text = _log_text(home)
    assert not any(value in text for value in person.values()) and vehicle_digest not in text
    # a rerun is a no-op: same log, same answer
    size = len(text.splitlines())
    with Workspace.open(home) as ws:
        again = erase_subject(ws, "vin", person["vin"], "DSR-1", team.compliance[0], clock=CLOCK)
        assert again["status"] == "already erased" and again["erasure_id"] == erasure["erasure_id"]
        assert not open_requests(ws.region(), AS_OF)
        # the person can no longer be found
        assert find_subject(ws, "vin", person["vin"], "DSR-1b", team.auditor)["assets"]["count"] == 0
    assert len(_log_text(home).splitlines()) == size + 1  # only that find's own request


def test_an_erased_row_put_back_is_found(world: Path, team: Team) -> None:
    person = _people(world)[0]
    home = world / "ws"
    db = home / "regions" / REGION / "catalog.db"
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        saved = [dict(r) for r in conn.execute("SELECT * FROM assets WHERE vehicle = ?", (person["vin"],))]
    with Workspace.open(home) as ws:
        erase_subject(ws, "vin", person["vin"], "DSR-2", team.compliance[0], clock=CLOCK)
    row = next(r for r in saved if r["parent_id"] is None)
    with sqlite3.connect(db) as conn:
        conn.execute(f"INSERT INTO assets ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    with Workspace.open(home) as ws:
        lines = [f.line() for f in verify_region(ws).findings]
        assert any(f"assets {row['id']}: *: erased in log entry" in line for line in lines), lines
        with pytest.raises(CatalogMismatch):
            find_subject(ws, "vin", person["vin"], "DSR-2b", team.auditor)


def test_a_forged_erasure_hides_nothing(world: Path, team: Team) -> None:
    """An erasure entry appended without a signed erase request is ignored: the rows it claims are findings."""
    person = _people(world)[0]
    home = world / "ws"
    with Workspace.open(home) as ws:
        reg = ws.region()
        victim = next(a for a in reg.catalog.list_assets() if a["vehicle"] == person["vin"] and not a["parent_id"]
                      and a["kind"] == "can_telemetry")
        with reg.catalog.transaction() as conn:
            open_log(ws).append(conn, "erasure", {"erasure_id": "er-forged", "cause": {"type": "subject",
                                                                                     "request_id": "dsr-none"},
                                                  "assets": [victim["id"]], "quarantine": []})
            conn.exec_driver_sql("DELETE FROM classifications WHERE asset_id = ?", (victim["id"],))
            conn.exec_driver_sql("DELETE FROM asset_subjects WHERE asset_id = ?", (victim["id"],))
            conn.exec_driver_sql("DELETE FROM assets WHERE id = ?", (victim["id"],))
        lines = [f.line() for f in verify_region(ws).findings]
    assert any("erasure er-forged: no logged erase request" in line for line in lines), lines
    assert any(f"assets {victim['id']}: *: logged in entry" in line for line in lines), lines


def test_legal_hold_keeps_and_reports(world: Path, team: Team) -> None:
    person = _people(world)[0]
    home = world / "ws"
    with Workspace.open(home) as ws:
        clip = next(a for a in ws.region().catalog.list_assets() if a["vehicle"] == person["vin"]
                    and a["kind"] == "gnss_trajectory" and not a["parent_id"])
        with pytest.raises(PrincipalError, match="needs role compliance"):
            place_hold(ws, [clip["id"]], "COURT-7", "accident investigation", team.engineer)
        hold = place_hold(ws, [clip["id"]], "COURT-7", "accident investigation", team.compliance[1], clock=CLOCK)
        assert not verify_region(ws).findings
        result = erase_subject(ws, "vin", person["vin"], "DSR-3", team.compliance[0], clock=CLOCK)
        kept = {k["asset_id"] for k in result["kept"]}
        assert clip["id"] in kept
        assert ws.region().catalog.get_asset(clip["id"]) is not None
        assert ws.region().blobs.read_table(clip["sha256"]).num_rows > 0  # still readable: its key was kept
        assert not verify_region(ws).findings
        release_hold(ws, hold["hold_id"], team.compliance[1], clock=CLOCK)
        assert not verify_region(ws).findings
    erasure, = _entries(home, "erasure")
    assert clip["id"] in {h["asset_id"] for h in erasure["held"]}


def test_copy_for_the_person_holds_their_data_only(world: Path, team: Team, tmp_path: Path) -> None:
    people = _people(world)
    person = people[0]
    out = tmp_path / "copy"
    with Workspace.open(world / "ws") as ws:
        result = export_subject(ws, "phone", person["phone"], "DSR-C", out, team.compliance[0], clock=CLOCK)
        with pytest.raises(SubjectError, match="not an empty folder"):
            export_subject(ws, "phone", person["phone"], "DSR-C", out, team.compliance[0], clock=CLOCK)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["table_rows"] >= 3 and any(f["kind"] == "gnss_trajectory" for f in manifest["files"])
    assert any(w["kind"] == "exterior_video" for w in manifest["withheld"]) or \
        any(f.get("de_identified") for f in manifest["files"])
    copy = scan(out, person, REGION, keys_root=world / "ws" / "keys")
    assert copy.hits  # it is their data
    for other in people[1:]:
        assert not scan(out, other, REGION, keys_root=world / "ws" / "keys").hits  # and no one else's
    assert _entries(world / "ws", "subject_copy")[0]["files"] == result["files"]


# -- crashes -----------------------------------------------------------------------------------------------
def _erase_child(home: str, vin: str, team: Team) -> None:
    Keyring.forget()
    with Workspace.open(Path(home)) as ws:
        erase_subject(ws, "vin", vin, "DSR-K", team.compliance[0], clock=CLOCK)
    os._exit(0)


def test_kill_9_at_random_points_then_rerun(subjects_master: Path, team: Team, tmp_path: Path) -> None:
    """SIGKILL the erasure at a random moment, rerun it: one erasure, finished once, no canary, verify clean."""
    person = _people(subjects_master)[0]
    ctx = multiprocessing.get_context("fork")
    reference = tmp_path / "reference"
    shutil.copytree(subjects_master, reference)
    start = time.perf_counter()
    proc = ctx.Process(target=_erase_child, args=(str(reference / "ws"), person["vin"], team))
    proc.start()
    proc.join()
    full = time.perf_counter() - start
    assert proc.exitcode == 0
    rng = random.Random(20261201)
    outcomes = []
    for trial in range(8):
        work = tmp_path / f"trial{trial}"
        shutil.copytree(subjects_master, work)
        proc = ctx.Process(target=_erase_child, args=(str(work / "ws"), person["vin"], team))
        proc.start()
        time.sleep(rng.uniform(0, full * 1.1))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        outcomes.append(proc.exitcode)
        Keyring.forget()
        with Workspace.open(work / "ws") as ws:
            result = erase_subject(ws, "vin", person["vin"], "DSR-K", team.compliance[0], clock=CLOCK)
            assert result["status"] in ("erased", "resumed", "already erased"), trial
            assert not verify_region(ws).findings, trial
        assert len(_entries(work / "ws", "erasure")) == 1 and len(_entries(work / "ws", "erasure_done")) == 1
        assert _region_scan(work, person).hits == [], trial
        shutil.rmtree(work)
    assert -signal.SIGKILL in outcomes  # some trials really were killed mid-way


# -- the command line --------------------------------------------------------------------------------------
def test_cli_preview_erase_and_requests(world: Path, team: Team) -> None:
    person = _people(world)[0]
    home = world / "ws"
    as_officer = team.env(team.compliance[0])
    proc = run_cli("subject", "erase", "--vin", person["vin"], "--ref", "DSR-9", home=home)
    assert proc.returncode == 2 and "signed by a person" in proc.stderr
    preview = _cli_stdin(person["vin"], "subject", "erase", "--vin", "-", "--ref", "DSR-9", "--dry-run", home=home,
                         env_extra=as_officer)
    assert "preview" in preview and "nothing was changed" in preview and "left the region" in preview
    done = run_cli("subject", "erase", "--vin", person["vin"], "--ref", "DSR-9", home=home, check=True,
                   env_extra=as_officer).stdout
    assert "erased DSR-9" in done and "checked absent" in done
    assert person["vin"] not in preview + done  # the identifier is never echoed
    with Workspace.open(home) as ws:
        assert not verify_region(ws).findings and not open_requests(ws.region())


def _cli_stdin(text: str, *args: str, home: Path, env_extra: dict[str, str]) -> str:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")} | {"COLUMNS": "200"} | env_extra
    proc = subprocess.run([sys.executable, "-m", "fleetgate", "--home", str(home), *args], input=text + "\n",
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_due_dates_count_working_days() -> None:
    from fleetgate.subjects import due_by

    assert due_by(dt.date(2026, 12, 1)) == dt.date(2026, 12, 15)  # Tuesday -> Tuesday two weeks on
    assert due_by(dt.date(2026, 12, 5)) == dt.date(2026, 12, 18)  # a Saturday request: ten weekdays from Monday


# -- retention ---------------------------------------------------------------------------------------------
def test_retention_deletes_what_expired_and_keeps_derived_data_longer(world: Path, team: Team) -> None:
    from fleetgate.domain.clock import FixedClock
    from fleetgate.subjects import run_retention
    from fleetgate.workspace.config import save_config

    home = world / "ws"
    later = FixedClock.at(dt.date(2027, 1, 15))  # the sample fleet drove in October 2026
    with Workspace.open(home) as ws:
        ws.config.retention.raw.update({"cabin_audio": 30, "gnss_trajectory": 60})
        ws.config.retention.derived.update({"gnss_trajectory": 3650})
        save_config(ws.config)
    with Workspace.open(home) as ws:
        assets = ws.region().catalog.list_assets()
        audio = [a for a in assets if a["kind"] == "cabin_audio"]
        raw_tracks = [a for a in assets if a["kind"] == "gnss_trajectory" and not a["parent_id"]]
        derived_tracks = [a for a in assets if a["kind"] == "gnss_trajectory" and a["parent_id"]]
        held = place_hold(ws, [audio[0]["id"]], "COURT-9", "", team.compliance[1], clock=later)
        with pytest.raises(PrincipalError, match="needs role compliance"):
            run_retention(ws, team.engineer, clock=later)
        preview = run_retention(ws, team.compliance[0], dry_run=True, clock=later)
        assert preview["status"] == "preview" and len(ws.region().catalog.list_assets()) == len(assets)
        assert {a["asset_id"] for a in preview["assets"]} == {a["id"] for a in audio[1:] + raw_tracks}
        result = run_retention(ws, team.compliance[0], clock=later)
        assert result["status"] == "erased" and result["kept"][0]["asset_id"] == audio[0]["id"]
        left = {a["id"]: a for a in ws.region().catalog.list_assets()}
        assert audio[0]["id"] in left and not any(a["id"] in left for a in audio[1:] + raw_tracks)
        # the de-identified tracks outlive their raw parents, re-rooted, their bytes still readable
        rerooted = [a for a in left.values() if (a["tags"] or {}).get("rerooted_from") in
                    {d["id"] for d in derived_tracks}]
        assert len(rerooted) == len(derived_tracks) and all(a["parent_id"] is None for a in rerooted)
        assert all(ws.region().blobs.read_bytes(a["sha256"])[:4] == b"PAR1" for a in rerooted)
        with pytest.raises(Exception, match="unreadable|missing"):
            ws.region().blobs.read_bytes(raw_tracks[0]["sha256"])
        assert not verify_region(ws).findings
        assert run_retention(ws, team.compliance[0], clock=later)["status"] == "nothing expired"
        release_hold(ws, held["hold_id"], team.compliance[1], clock=later)
    cause = _entries(home, "erasure")[0]["cause"]
    assert cause["type"] == "retention" and len(_entries(home, "retention_check")) == 2
