"""The standard-contract filing annex: Appendix 1 of the CAC standard contract (个人信息出境说明), filled in.

The Standard Contract Measures (2023) Art 7: the processor files the contract with the provincial
CAC within 10 working days of its taking effect, with the PIPIA report. The contract's Appendix 1
describes the export: purpose, method, scale, kinds of PI and of sensitive PI, onward recipients,
transmission, retention period and place abroad. Since 22 March 2024 the route is for non-CIIOs
exporting 100,000 to 999,999 people's non-sensitive PI, or fewer than 10,000 people's sensitive PI,
since 1 January (2024 Provisions Art 8); splitting volumes to stay under a line is prohibited.
"""

from __future__ import annotations

import datetime as dt

from fleetgate.domain import SignedPlan
from fleetgate.filings import common
from fleetgate.filings.document import Document
from fleetgate.filings.evidence import Evidence, ItemFacts, PlanFacts

SECTIONS = (
    "Basis of this document",
    "Route and filing",
    "Appendix 1: description of the export",
    "Items exported under the contract",
    "Materials to attach",
    "Log entries this document rests on",
    "Sources and evidence levels",
)
SOURCES = ["SCM-5-7", "SCC-GUIDE", "SCC-APPX1", "XB-7-9", "PIPL-38-39", "PIPL-55-56", "FG-LOG"]
CONTRACT = "STANDARD_CONTRACT_OR_CERT"


def build(ev: Evidence, year: int, signed: SignedPlan | None, generated: dt.datetime) -> Document:
    plans = ev.scope(year, signed)
    under = [i for p in plans for i in p.leaving() if i.outcome == CONTRACT]
    doc = Document("个人信息出境标准合同备案材料：附录一 个人信息出境说明 — Standard contract filing annex: "
                   "description of the export (Appendix 1)",
                   f"{ev.cfg.exporter_id}, region {ev.cfg.name}: {common.scope_line(year, signed)}. Standard "
                   "Contract Measures Arts 5, 7; 2024 Provisions Art 8.")
    common.basis_section(doc, ev, year, signed, plans, generated)
    _route(doc, ev, plans, under, year)
    _appendix(doc, ev, plans, under)
    s = doc.section(SECTIONS[3] + " / 标准合同项下出境的数据")
    s.table(["plan", "asset", "kind", "features found", "people", "deciding rule", "approvals"],
            [[p.plan_id, i.asset_id, i.kind, ", ".join(i.features) or "—", i.subjects,
              i.rules[-1] if i.rules else "—", ", ".join(i.approvals) or "—"]
             for p in plans for i in p.leaving() if i.outcome == CONTRACT],
            empty="No item in this scope leaves under the standard contract.")
    doc.section(SECTIONS[4] + " / 备案材料").bullets([
        "the standard contract signed with each recipient, Appendix 1 as above and Appendix 2 (other terms) if any",
        "the PIPIA report (`fleetgate report pipia`), with the reference recorded for the plan: "
        + (", ".join(sorted({p.basis[1].pipia_ref for p in plans if p.basis})) or "none recorded yet"),
        "the identity documents, the letter of authority and the undertaking the provincial CAC's filing guide "
        "lists",
    ]).todo("attach the signed contract; file within 10 working days of its taking effect")
    common.log_section(doc, ev)
    common.sources_section(doc, SOURCES)
    return doc


def _route(doc: Document, ev: Evidence, plans: list[PlanFacts], under: list[ItemFacts], year: int) -> None:
    s = doc.section(SECTIONS[1] + " / 适用条件与备案")
    ledger = ev.ledger.counts(ev.cfg.exporter_id, year)
    pi, spi = ledger["pi"], ledger["spi"]
    s.table(["condition (2024 Provisions Art 8; filing guide, 2nd ed.)", "on record", "reading"], [
        ["not a critical information infrastructure operator", "not a CIIO" if not ev.cfg.ciio else "a CIIO",
         "met" if not ev.cfg.ciio else "NOT MET: a CIIO's PI needs an assessment (Art 7(1))"],
        [f"people exported since 1 January {year}, non-sensitive PI: 100,000 to 999,999", pi,
         "below the band: free under Art 5(4)" if pi < 100_000 else "in the band" if pi < 1_000_000
         else "NOT MET: 1,000,000 or more needs an assessment (Art 7(2))"],
        [f"people exported since 1 January {year}, sensitive PI: fewer than 10,000", spi,
         "none exported" if spi == 0 else "met" if spi < 10_000
         else "NOT MET: 10,000 or more needs an assessment (Art 7(2))"],
        ["items of the scope decided STANDARD_CONTRACT_OR_CERT by the rule packs", len(under), ""],
    ])
    s.text("The exports and plans in scope, with their recipients:")
    s.table(common.RECIPIENT_HEADERS, common.recipients_rows(ev, plans), empty="No export in scope.")
    if not under:
        s.text("No item in this scope needs the standard contract: no filing is needed for it. The annex is "
               "generated for reference.")
    s.text("File the signed contract with the provincial CAC within 10 working days of its taking effect, with the "
           "PIPIA report (Standard Contract Measures Art 7). The filings under which the compliance officers "
           "approved the items:")
    s.table(common.APPROVAL_HEADERS, common.approvals_rows(ev, plans), empty="No approval on record.")


def _appendix(doc: Document, ev: Evidence, plans: list[PlanFacts], under: list[ItemFacts]) -> None:
    s = doc.section(SECTIONS[2] + " / 附录一 个人信息出境说明")
    people = ev.people(i.asset_id for i in under if i.category)
    pi_kinds = sorted({f"{i.kind}: {', '.join(i.features) or '—'}" for i in under if i.category})
    spi_kinds = sorted({f"{i.kind}: {', '.join(i.features) or '—'}" for i in under if i.category == "spi"})
    recipients = sorted({f"{p.decision.statement.destination.name} ({p.decision.statement.destination.country})"
                         for p in plans})
    countries = sorted({p.decision.statement.destination.country for p in plans})
    bases = sorted({f"{p.basis[1].legal_basis.type} ({p.basis[1].legal_basis.ref})" for p in plans if p.basis})
    s.table(["item (Appendix 1)", "value"], [
        ["1. purpose of processing / 处理目的", "; ".join(sorted({p.decision.statement.purpose or "—"
                                                                for p in plans})) or "—"],
        ["2. method of processing / 处理方式", "TO COMPLETE: what the recipient does with the data"],
        ["3. scale / 出境个人信息的规模", f"{people['all']:,} people ({people['pi']:,} non-sensitive PI, "
                                        f"{people['spi']:,} sensitive PI) in {len(under)} asset(s)"],
        ["4. kinds of personal information / 出境个人信息种类", "; ".join(pi_kinds) or "none"],
        ["5. kinds of sensitive personal information / 出境敏感个人信息种类", "; ".join(spi_kinds) or "none"],
        ["6. recipients, and onward recipients abroad / 境外接收方及再提供", (", ".join(recipients) or "—")
         + "; onward: TO COMPLETE"],
        ["7. transmission / 传输方式", "a package signed with the region key, copied to the destination by "
                                      "`fleetgate export run`, verifiable with `fleetgate verify-package`"],
        ["8. retention period abroad / 出境后保存期限", "TO COMPLETE"],
        ["9. place of storage abroad / 出境后保存地点", "the destinations' countries: " + (", ".join(countries) or "—")
         + "; TO COMPLETE: the site"],
        ["10. other / 其他事项", f"legal basis: {'; '.join(bases) or 'none recorded'}"],
    ])
