"""Done when: `fleetgate --home WS subject erase --vin VIN --ref DSR-1` on the demo home leaves no copy of that
owner's VIN, phone, resident ID or plate anywhere in the region, keeps everyone else's data, and verify passes."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from canary import scan
from cli_helpers import run_cli


def _owners(drop: Path) -> list[dict[str, str]]:
    owners = pq.read_table(drop / "tables" / "owners.parquet").to_pylist()
    plates = {r["vin"]: r["plate"] for r in pq.read_table(drop / "tables" / "after_sales.parquet").to_pylist()}
    return [{"vin": o["vin"], "phone": o["phone"], "id_number": o["national_id"], "plate": plates[o["vin"]]}
            for o in owners]


def _scan(home: Path, needles: dict[str, str]):
    published = [p for p in (home / "destinations" / "overseas").iterdir() if not p.name.startswith(".")]
    return scan(home, needles, "cn-shanghai", skip=tuple(published))


@pytest.mark.slow
def test_erase_one_owner_on_the_demo_home(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    proc = run_cli("demo", home=home)
    assert proc.returncode == 0, proc.stderr
    assert "retention" in (home / "report.html").read_text().lower()
    owners = _owners(home / "drops" / "sample-s7")
    person, others = owners[0], owners[1:]
    assert _scan(home, person).hits
    officer = {"FLEETGATE_AS": "Li Na", "FLEETGATE_KEY": str(home / "demo-people" / "compliance-li-na.key")}
    start = time.perf_counter()
    erased = run_cli("subject", "erase", "--vin", person["vin"], "--ref", "DSR-1", home=home, check=True,
                     env_extra=officer)
    print(f"erase on the demo home: {time.perf_counter() - start:.1f} s\n{erased.stdout}")
    assert "erased DSR-1" in erased.stdout
    after = _scan(home, person)
    assert after.hits == [], after.hits
    for other in others:
        assert _scan(home, other).hits
    assert "the catalog matches it" in run_cli("audit", "verify", home=home, check=True).stdout
    again = run_cli("subject", "erase", "--vin", person["vin"], "--ref", "DSR-1", home=home, check=True,
                    env_extra=officer)
    assert "already erased" in again.stdout
