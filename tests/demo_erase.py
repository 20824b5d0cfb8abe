"""Done when: `fleetgate --home WS subject erase --vin VIN --ref DSR-1` on the demo home leaves no copy of that
owner's VIN, phone, resident ID or plate anywhere in the region, keeps everyone else's data, and verify passes."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq

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


def check_erase_on_the_demo_home(home: Path) -> float:
    """Erase the first owner of the demo's fleet by the command line; returns the seconds it took.

    Called by `test_cli.py::test_demo_end_to_end` on the home it made (one demo run serves both)."""
    assert "retention" in (home / "report.html").read_text().lower()
    owners = _owners(home / "drops" / "sample-s7")
    person, others = owners[0], owners[1:]
    assert _scan(home, person).hits
    officer = {"FLEETGATE_AS": "Li Na", "FLEETGATE_KEY": str(home / "demo-people" / "compliance-li-na.key")}
    start = time.perf_counter()
    erased = run_cli("subject", "erase", "--vin", person["vin"], "--ref", "DSR-1", home=home, check=True,
                     env_extra=officer)
    seconds = time.perf_counter() - start
    assert "erased DSR-1" in erased.stdout
    after = _scan(home, person)
    assert after.hits == [], after.hits
    for other in others:
        assert _scan(home, other).hits
    assert "the catalog matches it" in run_cli("audit", "verify", home=home, check=True).stdout
    again = run_cli("subject", "erase", "--vin", person["vin"], "--ref", "DSR-1", home=home, check=True,
                    env_extra=officer)
    assert "already erased" in again.stdout
    return seconds
