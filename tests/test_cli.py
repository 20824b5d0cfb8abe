"""End-to-end through the command line, as a user runs it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from cli_helpers import run_cli
from demo_erase import check_erase_on_the_demo_home
from fleetgate.cli.main import app
from fleetgate.errors import EXIT_CODE_HELP, ExitCode


def test_help_lists_every_command_with_one_line() -> None:
    out = run_cli("--help", check=True).stdout
    for command in ("init", "sample", "ingest", "demo", "catalog", "compute"):
        assert command in out
    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert all(name in out for name in names)


def test_every_exit_code_is_documented() -> None:
    assert set(EXIT_CODE_HELP) == set(ExitCode)
    text = (Path(__file__).parents[1] / "docs" / "operations.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} " in text


def test_init_sample_ingest_catalog(tmp_path: Path, sample_drop_master: Path) -> None:
    home = tmp_path / "ws"
    assert "created region" in run_cli("init", "--region", "cn-shanghai", home=home, check=True).stdout
    assert (home / "fleetgate.toml").exists()
    drop = tmp_path / "drop"
    shutil.copytree(sample_drop_master, drop)
    first = run_cli("ingest", str(drop), home=home)
    assert first.returncode == 0, first.stderr
    assert "quarantined" in first.stdout
    again = run_cli("ingest", str(drop), home=home)
    assert again.returncode == 0 and " 0 landed" in again.stdout
    stats = json.loads(run_cli("catalog", "stats", "--format", "json", home=home, check=True).stdout)
    assert {r["kind"] for r in stats["inventory"]} >= {"exterior_video", "owner_record"}
    assets = json.loads(run_cli("catalog", "ls", "--format", "json", home=home, check=True).stdout)
    shown = json.loads(run_cli("catalog", "show", assets[0]["id"][:12], home=home, check=True).stdout)
    assert shown["id"] == assets[0]["id"]
    runs = json.loads(run_cli("catalog", "runs", "--format", "json", home=home, check=True).stdout)
    assert len(runs) == 2


def test_partial_ingest_exits_3_and_lists_the_quarantine(tmp_path: Path, sample_drop_master: Path) -> None:
    home = tmp_path / "ws"
    run_cli("init", home=home, check=True)
    drop = tmp_path / "drop"
    shutil.copytree(sample_drop_master, drop)
    (drop / "tables" / "owners.parquet").write_text("not parquet")
    proc = run_cli("ingest", str(drop), home=home)
    assert proc.returncode == int(ExitCode.PARTIAL)
    assert "tables/owners.parquet" in proc.stdout
    q = json.loads(run_cli("catalog", "quarantine", "--format", "json", home=home, check=True).stdout)
    assert [r["source_path"] for r in q] == ["tables/owners.parquet"]


@pytest.mark.parametrize("args", [
    ["ingest", "/no/such/drop"],
    ["catalog", "ls", "--region", "mars-base"],
    ["sample", "/tmp/x", "--vehicles", "0"],
    ["catalog", "show", "as_nope"],
])
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "ws"
    run_cli("init", home=home, check=True)
    proc = run_cli(*args, home=home)
    assert proc.returncode == int(ExitCode.USAGE), proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_workspace_says_how_to_create_it(tmp_path: Path) -> None:
    proc = run_cli("catalog", "stats", home=tmp_path / "nothing-here")
    assert proc.returncode == 2 and "fleetgate init" in proc.stderr


def test_sample_is_reproducible(tmp_path: Path) -> None:
    for name in ("a", "b"):
        run_cli("sample", str(tmp_path / name), "--vehicles", "1", "--clips", "1", "--seed", "3",
                "--seconds", "1", check=True)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    labels = json.loads((tmp_path / "a" / "labels.json").read_text())
    boxes = [b for clip in labels["clips"].values() for f in clip["frames"] for b in f["boxes"]]
    assert {b["type"] for b in boxes} == {"face", "plate"}
    assert any(len(b["text"]) == 8 for b in boxes if b["type"] == "plate" and b["color"] == "green")


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    proc = run_cli("demo", home=home)
    assert proc.returncode == 0, proc.stderr
    report = (home / "report.html").read_text()
    for heading in ("Inventory by region and kind", "Quarantine", "Compute plan", "data:image/png;base64"):
        assert heading in report
    assert "value 200.0 outside" in report and "exterior_video" in report
    assert "H20" in report and "Ascend 910B" in report
    if importlib.util.find_spec("flwr") and importlib.util.find_spec("torch"):
        assert "Federated learning across regions" in report
        runs = sorted((home / "federation").glob("fed-*.json"))
        assert len(runs) == 2
        by_regions = {tuple(d["settings"]["regions"]): d for d in (json.loads(p.read_text()) for p in runs)}
        both, alone = by_regions[("cn-shanghai", "eu-frankfurt")], by_regions[("eu-frankfurt",)]
        # every update of both regions aggregated enough samples to leave, and learning from China helped China
        assert all(u["received"] for r in both["rounds"] for u in r["updates"])
        assert both["final_evaluation"]["cn-shanghai"]["ade_m"] < alone["final_evaluation"]["cn-shanghai"]["ade_m"]
        assert "federated learning" in proc.stdout
    # `make serve` after `make demo`: the demo home is served, and each demo person's token logs in
    tokens = sorted((home / "demo-people").glob("*.token"))
    assert len(tokens) == 5 and all(p.stat().st_mode & 0o077 == 0 for p in tokens)
    _serves_the_demo_home(home, (home / "demo-people" / "auditor-liu-yang.token").read_text().strip())
    rerun = run_cli("demo", home=home)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted((home / "demo-people").glob("*.token")) == tokens
    # done when: one owner erased from the demo home leaves no canary, keeps everyone else, verifies
    check_erase_on_the_demo_home(home)


def _serves_the_demo_home(home: Path, token: str) -> None:
    from fastapi.testclient import TestClient

    from fleetgate.services import Services
    from fleetgate.web import create_app
    from fleetgate.workspace import Workspace

    services = Services(Workspace.open(home))
    try:
        with TestClient(create_app(services)) as client:
            overview = client.get("/api/v1/overview", headers={"Authorization": f"Bearer {token}"})
            assert overview.status_code == 200 and overview.json()["assets"] > 0 and overview.json()["exports"] == 1
            assert client.get("/login").status_code == 200
    finally:
        services.close()
