"""The annual automobile data security report (汽车数据安全管理情况年度报告), 2021 Provisions Arts 13-14.

An automotive data processor that handles important data reports by 15 December each year to the
provincial CAC and the departments concerned (Art 13): its officer and user-rights contact; the
kinds, scale, purpose and necessity of the data it processes; its protection measures, storage
place and period; what it provided to third parties in China; incidents; complaints. One that
exported important data adds (Art 14) the recipients; the kinds, scale, purpose and necessity of
what left; where, how long and how it is kept abroad; complaints about the exports. The report
gives the year's figures from the log and the checked catalog, the de-identification figures among
them, and the threshold watch.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from fleetgate.filings import common
from fleetgate.filings.document import Document
from fleetgate.filings.evidence import Evidence, PlanFacts
from fleetgate.filings.thresholds import MEASURE_TEXT, watch_from

SECTIONS = (
    "Basis of this document",
    "Officer and user-rights contact (Art 13(1))",
    "Automotive data processed: kinds, scale, purpose, necessity (Art 13(2))",
    "Protection and management measures, storage place and period (Art 13(3))",
    "Provision to third parties in China (Art 13(4))",
    "Security incidents and their handling (Art 13(5))",
    "User complaints (Art 13(6))",
    "Overseas recipients (Art 14(1))",
    "Exported data: kinds, scale, purpose, necessity (Art 14(2))",
    "Storage abroad: place, period, scope, method (Art 14(3))",
    "Complaints about exports (Art 14(4))",
    "Threshold watch",
    "Log entries this document rests on",
    "Sources and evidence levels",
)
SOURCES = ["AUTO-13-14", "AUTO-13-NOTICE", "AUTO-3", "AUTO-10", "XB-7-9", "CAA-12", "CAA-3", "NDSR-28-33",
           "PIPL-73", "FG-LOG"]


def due_date(year: int) -> dt.date:
    return dt.date(year, 12, 15)


def build(ev: Evidence, year: int, generated: dt.datetime) -> Document:
    plans = ev.exports_of_year(year)
    due = due_date(year)
    days = (due - generated.date()).days
    when = f"{days} days left" if days > 0 else "due today" if days == 0 else f"{-days} days overdue"
    doc = Document(f"汽车数据安全管理情况年度报告（{year}年度） — Annual automobile data security report {year}",
                   f"{ev.cfg.exporter_id}, region {ev.cfg.name}. Due by {due.isoformat()} ({when}) to the provincial "
                   "cyberspace administration and the departments concerned (automobile data provisions, 2021, "
                   "Arts 13-14).")
    watch = watch_from(ev, year, min(generated.date(), dt.date(year, 12, 31)))
    s = common.basis_section(doc, ev, year, None, plans, generated)
    s.text(f"Due by {due.isoformat()}: {when}. " + (
        f"The catalog holds important data ({watch.important_data.assets} assets), so Art 13 applies."
        if watch.important_data.assets else
        "The catalog holds no asset the rule packs tag as important data: Art 13 applies to processors of "
        "important data, so this report may not be required; it is generated for reference."))
    doc.section(SECTIONS[1] + " / 汽车数据安全管理负责人、用户权益事务联系人").todo(
        "the names and contacts of the automobile data security officer and of the user-rights contact").text(
        "Compliance officers registered in the region who signed approvals or legal bases this year: "
        + (", ".join(sorted({a.statement.approver for p in plans for a in p.approvals}
                            | {p.basis[1].by for p in plans if p.basis})) or "none") + ".")
    _processed(doc, ev, watch.important_data.kinds)
    _measures(doc, ev, year)
    doc.section(SECTIONS[4] + " / 向境内第三方提供汽车数据情况").todo(
        "automobile data provided to third parties in China: fleetgate records exports only")
    _incidents(doc, ev)
    doc.section(SECTIONS[6] + " / 汽车数据相关的用户投诉和处理情况").todo(
        "complaints received and how each was handled")
    doc.section(SECTIONS[7] + " / 境外接收者的基本情况").table(
        common.RECIPIENT_HEADERS, common.recipients_rows(ev, plans), empty=f"No export in {year}.")
    _exported(doc, ev, plans, year)
    countries = sorted({p.decision.statement.destination.country for p in plans})
    doc.section(SECTIONS[9] + " / 汽车数据在境外的保存地点、期限、范围和方式").text(
        f"Countries of the destinations: {', '.join(countries) or 'none'}.").todo(
        "the storage site, retention period, scope and manner of use abroad for each recipient")
    doc.section(SECTIONS[10] + " / 涉及向境外提供汽车数据的用户投诉和处理情况").todo(
        "complaints about the exports and how each was handled")
    s = doc.section(SECTIONS[11] + " / 阈值监测")
    s.table(["duty", "measure", "count", "threshold", "state", "more people until reached", "cite", "evidence"],
            [[t.duty, MEASURE_TEXT[t.measure], t.count, f"{t.comparison} {t.threshold:,}", t.state, t.remaining,
              t.cite, t.evidence] for t in watch.thresholds])
    common.log_section(doc, ev)
    common.sources_section(doc, SOURCES)
    return doc


def _processed(doc: Document, ev: Evidence, important: dict[str, int]) -> None:
    s = doc.section(SECTIONS[2] + " / 处理汽车数据的种类、规模、目的和必要性")
    stats = ev.catalog.stats(ev.cfg.name)
    s.text("The region's catalog by kind as it stands when this report is generated (assets, bytes, vehicles "
           "counted, never named):")
    s.table(["kind", "assets", "bytes", "vehicles"], [[r["kind"], r["assets"], int(r["bytes"] or 0), r["vehicles"]]
                                                      for r in stats])
    people = ev.people(ev.classes)
    s.text(f"Distinct people in the catalog (keyed pseudonyms): {people['all']:,}; {people['pi']:,} whose data counts "
           f"as non-sensitive PI and {people['spi']:,} as sensitive PI.")
    s.text("Important data (assets the rule packs tag `important`, automobile data provisions Art 3):")
    s.table(["kind", "assets"], [[k, n] for k, n in important.items()], empty="none")
    facts = list(ev.state.facts["classifications"].values())
    if facts:
        ev.cite_index(max(fact.index for fact in facts), f"the latest batch of the {len(facts)} classifications read")
    s.todo("the purpose and necessity of processing each kind")


def _measures(doc: Document, ev: Evidence, year: int) -> None:
    s = doc.section(SECTIONS[3] + " / 汽车数据的安全防护和管理措施")
    store = ev.cfg.blob_store.split("://", 1)[0] if "://" in ev.cfg.blob_store else "local folder"
    s.text(f"Stored in region {ev.cfg.name} ({ev.cfg.country}): blobs in a {store} store, the catalog and its "
           "transparency log in the region's database; nothing leaves except through the export gate.")
    by_kind, camera = common.deid_figures(ev, year)
    s.text(f"De-identification in {year} (from the log's `derive` and `deid_run` entries):")
    s.table(common.DEID_HEADERS, by_kind, empty=f"No de-identification in {year}.")
    if camera:
        s.table(common.CAMERA_HEADERS, camera)
    s.todo("retention periods by kind, access control, encryption and the incident response plan")


def _incidents(doc: Document, ev: Evidence) -> None:
    s = doc.section(SECTIONS[5] + " / 汽车数据安全事件和处置情况")
    problems = ev.state.problems
    s.text(f"`fleetgate audit verify` on {ev.entries:,} entries: {len(ev.findings)} findings; the log replay "
           f"rejected {len(problems)} statements (a forged or unregistered signature, a conflicting fact), each "
           "left out of the state:")
    s.table(["log entry", "what the replay rejected"], [[p.index, p.what] for p in problems[:50]],
            empty="none")
    s.todo("security incidents in the year and how each was handled")


def _exported(doc: Document, ev: Evidence, plans: list[PlanFacts], year: int) -> None:
    s = doc.section(SECTIONS[8] + " / 出境汽车数据的种类、规模、目的和必要性")
    rows = []
    for p in plans:
        e = p.export.entry if p.export else {}
        outcomes = Counter(i.outcome for i in p.items if i.exported)
        delta = e.get("ledger_delta") or {}
        rows.append([e.get("as_of", "—"), e.get("package_id", "—"), p.decision.statement.purpose or "—",
                     ", ".join(sorted({i.kind for i in p.items if i.exported})),
                     sum(i.exported for i in p.items), sum(i.bytes for i in p.items if i.exported),
                     sum(i.important for i in p.items if i.exported), delta.get("pi", 0), delta.get("spi", 0),
                     ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))])
    s.table(["date", "package", "purpose", "kinds", "assets", "bytes", "important data", "new people, PI",
             "new people, SPI", "routes"], rows, empty=f"No export in {year}.")
    counts = ev.ledger.counts(ev.cfg.exporter_id, year)
    s.text(f"People exported in {year} (the ledger, each counted once a year): {counts['pi']:,} non-sensitive PI, "
           f"{counts['spi']:,} sensitive PI.")
    items = common.all_items(plans)
    s.table(common.KINDS_HEADERS, common.kinds_rows(items), empty=f"Nothing left in {year}.")
    s.todo("the necessity of each export for its purpose")
