"""The filings: each document generated on a small workspace with people, plans, approvals and an export;
its sections, the log entries it cites (looked up in the log), and no planted identifier in any format."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from cli_helpers import run_cli
from fleetgate.audit import open_log
from fleetgate.classify import classify_region
from fleetgate.deid import deid_region
from fleetgate.domain.clock import FixedClock
from fleetgate.errors import IntegrityError
from fleetgate.filings import REQUIRED_SECTIONS, FilingKind, Format, build_filing, render, to_markdown
from fleetgate.filings.document import md_text
from fleetgate.gate import (
    PlanRefused,
    approve_plan,
    make_plan,
    read_plan,
    record_basis,
    run_export,
    sign_config,
    write_plan,
)
from fleetgate.ingest import ingest_drop
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import save_config
from people import AS_OF, CLOCK, load_team, make_team

LATER = FixedClock.at(AS_OF + dt.timedelta(days=3))
ENTRY_ROW = re.compile(r"^\| (\d+) \| ([a-z_]+) \| ", re.M)
INLINE = re.compile(r"log entry (\d+) \(([a-z_]+)\)")


@pytest.fixture(scope="session")
def filed_master(sample_drop_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A region with its people, de-identified tables and tracks, one export run (legal basis, PIPIA and two
    approvals recorded) and a second plan not run yet (`plans/pending.json`)."""
    root = tmp_path_factory.mktemp("filings")
    home = root / "ws"
    init_workspace(home, "cn-shanghai")
    with Workspace.open(home) as ws:
        team = make_team(ws, root / "people")
        ingest_drop(ws.region(), sample_drop_master)
        deid_region(ws, camera=False)
        classify_region(ws)
        plan = make_plan(ws, "overseas", team.engineer, None, "train driving models", as_of=AS_OF, clock=CLOCK)
        record_basis(ws, plan, "separate_consent", "CONSENT-2026-11", "PIPIA-2026-07", team.compliance[1],
                     clock=CLOCK)
        for officer in team.compliance:
            approve_plan(ws, plan, "CAC-SCC-2026-9", dt.date(2027, 6, 30), officer, clock=CLOCK)
        assert run_export(ws, plan, team.engineer, clock=CLOCK).status == "published"
        pending = make_plan(ws, "overseas", team.engineer, "asset.kind == 'owner_record'", "warranty analysis",
                            as_of=AS_OF, clock=LATER)
        write_plan(pending, home / "plans" / "pending.json")
    return home


@pytest.fixture
def home(filed_master: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(filed_master, dest)
    return dest


@pytest.fixture(scope="session")
def planted(sample_drop_master: Path) -> list[str]:
    """Every identifier the sample fleet planted: VINs, owners' names, phones, ID numbers, plates."""
    values: set[str] = set()
    owners = pq.read_table(sample_drop_master / "tables" / "owners.parquet").to_pylist()
    for row in owners:
        values |= {row["vin"], row["name"], row["phone"], row["national_id"]}
    for row in pq.read_table(sample_drop_master / "tables" / "after_sales.parquet").to_pylist():
        values |= {row["vin"], row["plate"], row["phone"]}
    values |= {p.name for p in (sample_drop_master / "vehicles").iterdir()}
    return sorted(v for v in values if v and len(v) >= 2)


def _build(home: Path, kind: FilingKind, plan: Path | None = None):
    with Workspace.open(home) as ws:
        return build_filing(ws, kind, year=AS_OF.year, plan=read_plan(plan) if plan else None, clock=LATER)


def _log_rows(md: str) -> set[tuple[int, str]]:
    """(index, type) of the rows of the document's log-entries section."""
    section = md.split("Log entries this document rests on", 1)[1].split("\n## ", 1)[0]
    return {(int(i), t) for i, t in ENTRY_ROW.findall(section)}


def _check_citations(home: Path, text: str) -> set[int]:
    """Every entry the text cites (log table rows and inline references) is that type in the log, and every
    inline reference is listed in the log-entries section."""
    rows = _log_rows(text)
    inline = {(int(i), t) for i, t in INLINE.findall(text)}
    assert inline <= rows
    cited = rows | inline
    assert cited
    with Workspace.open(home) as ws:
        log = open_log(ws)
        for index, type_ in cited:
            assert log.entry(index)["type"] == type_, (index, type_)
    return {i for i, _ in cited}


@pytest.mark.parametrize("kind", list(FilingKind))
def test_each_document_has_its_sections_and_cites_the_log(home: Path, kind: FilingKind, planted: list[str]) -> None:
    filing = _build(home, kind)
    md = to_markdown(filing.document)
    page = render(filing.document, Format.html).decode()
    headings = [html.unescape(h) for h in re.findall(r"<h2>(.*?)</h2>", page)]
    assert len(headings) == len(REQUIRED_SECTIONS[kind])
    for n, (title, heading) in enumerate(zip(REQUIRED_SECTIONS[kind], headings, strict=True), 1):
        assert f"## {n}. {md_text(title)}" in md, title
        assert heading.startswith(f"{n}. {title}"), (heading, title)
    cited = _check_citations(home, md)
    with Workspace.open(home) as ws:
        log = open_log(ws)
        export = log.entries("export")[0]
        decision = next(e for e in log.entries("decision") if e["plan_id"] == export["plan_id"])
        approvals = {e["index"] for e in log.entries("approval")}
    assert {export["index"], decision["index"]} <= cited  # the year's export and its signed plan
    assert {(c.index, c.type) for c in filing.cited} == _log_rows(md)
    if kind is not FilingKind.annual:
        assert approvals <= cited  # the filings the officers approved under
    for text in (md, page):
        leaked = [v for v in planted if v in text]
        assert not leaked, f"{kind}: {leaked[:3]}"


def test_the_documents_carry_the_facts_of_the_export(home: Path) -> None:
    pipia = to_markdown(_build(home, FilingKind.pipia).document)
    assert "separate\\_consent (CONSENT-2026-11)" in pipia or "separate_consent (CONSENT-2026-11)" in pipia
    assert "PIPIA-2026-07" in pipia and "| overseas | US | train driving models |" in pipia
    spi_line = next(line for line in pipia.splitlines() if line.startswith("- Sensitive PI leaves ("))
    assert "owner_record" in spi_line and "cabin_audio" in spi_line  # resident ID numbers, voices
    contract = to_markdown(_build(home, FilingKind.contract).document)
    assert "CAC-SCC-2026-9" in contract and "national_id" in contract
    annual = to_markdown(_build(home, FilingKind.annual).document)
    assert "Due by 2026-12-15 (21 days left)" in annual
    assert "| gnss_trajectory |" in annual and "de-identified assets" in annual
    with Workspace.open(home) as ws:
        from fleetgate.store import Ledger

        counts = Ledger(ws.region().catalog).counts("cn-shanghai", AS_OF.year)
    assert f"People exported in {AS_OF.year} (the ledger, each counted once a year): {counts['pi']:,} non-sensitive " \
           f"PI, {counts['spi']:,} sensitive PI." in annual


def test_a_plan_file_scopes_the_document_and_an_edited_plan_is_refused(home: Path, tmp_path: Path) -> None:
    pending = home / "plans" / "pending.json"
    md = to_markdown(_build(home, FilingKind.pipia, pending).document)
    plan_id = read_plan(pending).plan_id
    assert f"| scope | plan {plan_id} |" in md and "| planned |" in md and "warranty analysis" in md
    assert "train driving models" not in md  # the other plan is out of scope
    _check_citations(home, md)
    doc = json.loads(pending.read_text())
    doc["plan"]["purpose"] = "something else"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    with pytest.raises(PlanRefused, match="changed after it was made"):
        _build(home, FilingKind.pipia, edited)
    with pytest.raises(Exception, match="--plan: the annual report covers a calendar year"):
        _build(home, FilingKind.annual, pending)


def test_the_assessment_skeleton_names_what_triggers_it(home: Path, filed_master: Path) -> None:
    """A CIIO's PI needs an assessment (2024 Provisions Art 7(1)): the skeleton of that plan says so, by rule."""
    team = load_team(filed_master.parent / "people")
    with Workspace.open(home) as ws:
        ws.config.regions["cn-shanghai"].ciio = True
        save_config(ws.config)
    with Workspace.open(home) as ws:
        sign_config(ws, "cn-shanghai", team.admin, clock=LATER)
        plan = make_plan(ws, "overseas", team.engineer, "asset.kind == 'charging_session'", "battery analysis",
                         as_of=AS_OF, clock=LATER)
        write_plan(plan, home / "plans" / "ciio.json")
    md = to_markdown(_build(home, FilingKind.assessment, home / "plans" / "ciio.json").document)
    why = md.split("Why a security assessment", 1)[1].split("\n## ", 1)[0]
    assert "| charging_session | XB-7A |" in why
    assert "| critical information infrastructure operator | yes |" in md
    assert "(6) other matters that may affect the security of the export | 2 items need the assessment" in md
    _check_citations(home, md)


def test_a_catalog_edited_outside_fleetgate_gets_no_filing(home: Path) -> None:
    import sqlalchemy as sa

    with Workspace.open(home) as ws:
        with ws.region().catalog.engine.begin() as conn:
            conn.execute(sa.text("UPDATE classifications SET features = '[]' WHERE policy_kind = 'owner_record'"))
    with pytest.raises(IntegrityError, match="does not match its transparency log"):
        _build(home, FilingKind.pipia)
    proc = run_cli("status", home=home)
    assert proc.returncode == 0 and "finding:" in proc.stdout and "classifications" in proc.stdout


def test_cli_writes_every_format_and_pdf_text_has_no_identifier(home: Path, tmp_path: Path,
                                                                planted: list[str]) -> None:
    pytest.importorskip("weasyprint", reason="PDF needs the pdf extra (make setup installs it)")
    import pypdf

    for kind, name in (("pipia", "p.pdf"), ("contract", "c.html"), ("assessment", "a.md")):
        proc = run_cli("report", kind, "--year", str(AS_OF.year), "-o", str(tmp_path / name), home=home)
        assert proc.returncode == 0, proc.stderr
        assert "log entries" in proc.stdout
    assert (tmp_path / "c.html").read_text().startswith("<!doctype html>")
    text = "".join(page.extract_text() for page in pypdf.PdfReader(tmp_path / "p.pdf").pages)
    assert "个人信息保护影响评估报告" in text and "Protection measures" in text
    assert not [v for v in planted if v in text]
    proc = run_cli("report", "annual", "--plan", str(home / "plans" / "pending.json"), "-o", str(tmp_path / "x.md"),
                   home=home)
    assert proc.returncode == 2 and "--plan" in proc.stderr


def test_status_shows_the_watch(home: Path) -> None:
    proc = run_cli("status", "--year", str(AS_OF.year), "--format", "json", home=home)
    assert proc.returncode == 0, proc.stderr
    watch = json.loads(proc.stdout)
    assert watch["findings"] == [] and watch["ledger_matches_log"] is True
    ids = [t["id"] for t in watch["thresholds"]]
    assert ids == ["PI-OFFICER", "NDSR-28", "PI-AUDIT", "XB-8.PI", "XB-7.PI", "XB-8.SPI", "XB-7.SPI"]
    spi = next(t for t in watch["thresholds"] if t["id"] == "XB-8.SPI")
    assert spi["count"] == watch["exported"]["spi"] > 0 and spi["state"] == "reached"
    table = run_cli("status", "--year", str(AS_OF.year), home=home)
    assert "threshold watch" in table.stdout and "PI-OFFICER" in table.stdout


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_markdown_escaping_keeps_data_as_data(value: str) -> None:
    """Whatever text a field holds (a purpose, a filing reference), it renders as that text, never as markup."""
    rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(md_text(value, block=True))
    inner = rendered.removeprefix("<p>").removesuffix("</p>\n")
    assert "<" not in inner.replace("<br />", "")  # no element made from the data
    assert html.unescape(inner).strip() == value.strip()


def test_deid_figures_sum_the_camera_runs_of_the_year() -> None:
    """The camera figures of the annual report and the PIPIA: every `deid_run` of the year, boxes summed."""
    from fleetgate.filings.common import deid_figures

    class Log:
        cited: list[int] = []

        def logged(self, type_: str) -> list[dict]:
            return {"derive": [{"at": "2026-03-01T00:00:00", "facts": {"assets": [{"kind": "exterior_video"}]},
                                "removed": ["faces", "plates"]},
                               {"at": "2025-03-01T00:00:00", "facts": {"assets": [{"kind": "gnss_trajectory"}]}}],
                    "deid_run": [{"index": 7, "at": "2026-03-01T00:00:00", "derived": [{}], "media": [
                        {"anonymized": True, "residuals": 0, "boxes": {"detected": 10, "interpolated": 4}},
                        {"anonymized": False, "residuals": 2, "boxes": {"detected": 5, "held": 1}}]},
                                 {"index": 3, "at": "2025-01-01T00:00:00", "media": [{"boxes": {"detected": 99}}]}]
                    }[type_]

        def cite(self, index: int, *_: object) -> str:
            self.cited.append(index)
            return ""

    log = Log()
    by_kind, camera = deid_figures(log, 2026)  # type: ignore[arg-type]
    assert by_kind == [["exterior_video", 1, "faces (1), plates (1)"]]
    assert camera == [[2, 1, 2, 15, 4, 1, 0]] and log.cited == [7]
