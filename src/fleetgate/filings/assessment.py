"""The self-assessment report skeleton for a security-assessment filing (数据出境风险自评估报告).

The 2022 Security Assessment Measures ask for a risk self-assessment before the declaration (Art 5,
six matters) and for its report among the declaration materials; CAC's declaration guideline gives
the report's template: the self-assessment work, the export activity as a whole (the processor, the
data, the recipient, the legal documents), the risk assessment of each matter, the conclusion. The
skeleton follows that order, fills in the facts of the log and marks the rest.
"""

from __future__ import annotations

import datetime as dt

from fleetgate.domain import SignedPlan
from fleetgate.filings import common
from fleetgate.filings.document import Document
from fleetgate.filings.evidence import Evidence, ItemFacts, PlanFacts

SECTIONS = (
    "Basis of this document",
    "Self-assessment work",
    "The export activity as a whole",
    "Why a security assessment",
    "Risk assessment of the matters of Art 5",
    "Conclusion of the self-assessment",
    "Log entries this document rests on",
    "Sources and evidence levels",
)
SOURCES = ["SAM-5", "SAM-GUIDE", "SAM-4", "XB-7-9", "AUTO-3", "PIPL-55-56", "FG-LOG"]
ASSESSMENT = "SECURITY_ASSESSMENT"


def build(ev: Evidence, year: int, signed: SignedPlan | None, generated: dt.datetime) -> Document:
    plans = ev.scope(year, signed)
    doc = Document("数据出境风险自评估报告（框架） — Risk self-assessment report for a security-assessment filing "
                   "(skeleton)", f"{ev.cfg.exporter_id}, region {ev.cfg.name}: {common.scope_line(year, signed)}. "
                   "Security Assessment Measures 2022 Arts 4-6; 2024 Provisions Art 7.")
    common.basis_section(doc, ev, year, signed, plans, generated)
    doc.section(SECTIONS[1] + " / 一、自评估工作情况").todo(
        "when the self-assessment started and ended (within the 3 months before the declaration), who organised "
        "it, how it was carried out, and any third party that took part").text(
        f"This skeleton was generated on {generated.date().isoformat()} from {ev.entries:,} verified log entries.")
    _activity(doc, ev, plans)
    needing = [i for p in plans for i in p.items if i.outcome == ASSESSMENT]
    _triggers(doc, plans, needing)
    _matters(doc, ev, plans, needing)
    doc.section(SECTIONS[5] + " / 四、出境活动风险自评估结论").todo(
        "the conclusion on each matter and in all, the risks that remain and how they are handled").text(
        "An assessment granted from 22 March 2024 is valid for 3 years; its extension is asked for within 60 "
        "working days before it ends (2024 Provisions Art 9). The export may not exceed the purpose, scope, "
        "method, kinds and scale the assessment states (automobile data provisions Art 12).")
    common.log_section(doc, ev)
    common.sources_section(doc, SOURCES)
    return doc


def _activity(doc: Document, ev: Evidence, plans: list[PlanFacts]) -> None:
    s = doc.section(SECTIONS[2] + " / 二、出境活动整体情况")
    cfg = ev.cfg
    s.text(f"(1) The data processor: {cfg.exporter_id}, operating region {cfg.name} ({cfg.country}); "
           f"CIIO: {'yes' if cfg.ciio else 'no'}.")
    s.todo("shareholding, actual controller, investments in and outside China; organisation and data security "
           "management body; business and data assets as a whole")
    s.text("(2) The data to leave (by kind; features are what classification found, never values):")
    items = common.all_items(plans)
    s.table(common.KINDS_HEADERS, common.kinds_rows(items), empty="Nothing leaves in this scope.")
    s.table(common.PEOPLE_HEADERS, common.people_rows(plans))
    s.text("(3) The overseas recipients:")
    s.table(common.RECIPIENT_HEADERS, common.recipients_rows(ev, plans), empty="No export in scope.")
    s.todo("each recipient's legal name, place of registration, business, data security capability and the "
           "laws it is subject to; onward transfers")
    s.text("(4) Legal documents and filings on record (approvals of the plans, each signed by a compliance officer):")
    s.table(common.APPROVAL_HEADERS, common.approvals_rows(ev, plans), empty="No approval on record.")
    s.todo("the contract or other legal document with each recipient, with the data-security duties of "
           "Security Assessment Measures Art 9")


def _triggers(doc: Document, plans: list[PlanFacts], needing: list[ItemFacts]) -> None:
    s = doc.section(SECTIONS[3] + " / 申报情形")
    if not needing:
        s.text("No item in this scope is decided SECURITY_ASSESSMENT by the rule packs: no declaration is needed "
               "for it. The skeleton is generated for reference.")
        return
    s.text("Items the rule packs decided SECURITY_ASSESSMENT, with the rule that decided each (important data, "
           ">= 1,000,000 people's non-sensitive PI or >= 10,000 people's sensitive PI since 1 January, a CIIO "
           "exporting PI: 2024 Provisions Art 7; before 22 March 2024, Security Assessment Measures Art 4):")
    rows: dict[tuple[str, str], list[int]] = {}
    for i in needing:
        key = (i.kind, i.rules[-1] if i.rules else "—")
        rows.setdefault(key, [0, 0])
        rows[key][0] += 1
        rows[key][1] += int(i.important)
    s.table(["kind", "deciding rule", "assets", "important data"], [[k, r, n, m] for (k, r), (n, m) in
                                                                     sorted(rows.items())])


def _matters(doc: Document, ev: Evidence, plans: list[PlanFacts], needing: list[ItemFacts]) -> None:
    s = doc.section(SECTIONS[4] + " / 三、拟出境活动的风险评估情况")
    items = common.all_items(plans)
    purposes = sorted({p.decision.statement.purpose or "—" for p in plans})
    spi = sorted({i.kind for i in items if i.category == "spi"})
    important = sorted({i.kind for i in items if i.important})
    total = ev.people(i.asset_id for i in items if i.category)
    by_kind, camera = common.deid_figures(ev)
    facts = [
        ["(1) lawfulness, legitimacy and necessity of the purpose, scope and method of the export and of the "
         "recipient's processing", f"purposes: {'; '.join(purposes) or '—'}; legal bases recorded: "
         f"{sum(p.basis is not None for p in plans)} of {len(plans)} plans", "necessity of each kind for the purpose"],
        ["(2) scale, scope, kinds and sensitivity of the data; risks to national security, public interest and "
         "people's rights", f"{len(items)} assets; {total['all']:,} people ({total['spi']:,} under sensitive PI); "
         f"sensitive kinds: {', '.join(spi) or 'none'}; important data: {', '.join(important) or 'none'}",
         "the risk each kind carries once abroad"],
        ["(3) the recipient's undertakings, management and technical measures and capability",
         "—", "the recipient's measures and capability"],
        ["(4) risk of tampering, destruction, leak, loss, transfer or unlawful use during and after the export; "
         "channels for people to defend their rights", "packages signed with the region key, every file hashed, "
         "the log entry and an inclusion proof under a signed checkpoint travel with them; "
         f"{sum(n for _, n, _ in by_kind)} assets de-identified in the region"
         + (f", {camera[0][1]} of {camera[0][0]} camera assets clean on re-check" if camera else ""),
         "the channel for complaints and rights requests abroad"],
        ["(5) whether the legal documents with the recipient set out the data-security duties",
         f"{sum(len(p.approvals) for p in plans)} signed approvals on record", "the contract clauses (Art 9)"],
        ["(6) other matters that may affect the security of the export", f"{len(needing)} items need the assessment",
         "anything else"],
    ]
    s.table(["matter (Security Assessment Measures Art 5)", "what the log shows", "TO COMPLETE"], facts)
