"""The PIPIA draft: a PI protection impact assessment of an export, with the contents of PIPL Art 56.

Art 55 asks for the assessment before personal information is provided abroad (and before
sensitive PI is processed); Art 56 says what it covers: (1) whether purpose and method are lawful,
legitimate and necessary, (2) the impact on people's rights and the security risks, (3) whether the
protection measures are lawful, effective and proportionate; the report is kept for three years.
The draft fills in what the log knows (the kinds, the people, the recipients, the routes, the
approvals, the de-identification) and marks what a person must still judge.
"""

from __future__ import annotations

import datetime as dt

from fleetgate.domain import SignedPlan
from fleetgate.filings import common
from fleetgate.filings.document import Document
from fleetgate.filings.evidence import Evidence, PlanFacts

SECTIONS = (
    "Basis of this document",
    "Personal information concerned",
    "Recipients and purpose",
    "Purpose and method: lawful, legitimate, necessary (PIPL Art 56(1))",
    "Impact on individuals' rights and security risks (PIPL Art 56(2))",
    "Protection measures (PIPL Art 56(3))",
    "Conclusion, sign-off and retention",
    "Log entries this document rests on",
    "Sources and evidence levels",
)
SOURCES = ["PIPL-55-56", "PIPL-38-39", "PIPL-73", "AUTO-3", "XB-7-9", "FG-LOG"]


def build(ev: Evidence, year: int, signed: SignedPlan | None, generated: dt.datetime) -> Document:
    plans = ev.scope(year, signed)
    doc = Document("个人信息保护影响评估报告（出境，草稿） — PI protection impact assessment of an export (draft)",
                   f"{ev.cfg.exporter_id}, region {ev.cfg.name}: {common.scope_line(year, signed)}. PIPL Arts 55-56.")
    common.basis_section(doc, ev, year, signed, plans, generated).text(
        "Why an assessment: personal information is provided abroad (PIPL Art 55(4))"
        + ("; sensitive personal information is processed (Art 55(1))." if _has_spi(plans) else "."))
    _concerned(doc, ev, plans)
    doc.section(SECTIONS[2] + " / 境外接收方与处理目的").table(
        common.RECIPIENT_HEADERS, common.recipients_rows(ev, plans), empty="No export in scope.")
    _purpose(doc, ev, plans)
    _risks(doc, plans)
    _measures(doc, ev, plans)
    day = generated.date()
    retain = day.replace(year=day.year + 3, day=28 if (day.month, day.day) == (2, 29) else day.day)
    doc.section(SECTIONS[6] + " / 结论与留存").todo(
        "the conclusion: whether the export may go ahead, under which conditions, and the risks that remain; "
        "the name, role and signature of the person responsible, and the date").text(
        f"Keep this report and the processing records at least until {retain.isoformat()} (three years, PIPL "
        "Art 56); record its reference with `fleetgate export basis PLAN --pipia REF` before the export runs.")
    common.log_section(doc, ev)
    common.sources_section(doc, SOURCES)
    return doc


def _has_spi(plans: list[PlanFacts]) -> bool:
    return any(i.category == "spi" for p in plans for i in p.leaving())


def _concerned(doc: Document, ev: Evidence, plans: list[PlanFacts]) -> None:
    s = doc.section(SECTIONS[1] + " / 出境个人信息的范围")
    items = common.all_items(plans)
    s.text("What leaves (or, for a plan not yet run, may leave), by kind. Features are what classification found "
           "in the data (identifier columns, faces, plates, voices, precise coordinates), never the values.")
    s.table(common.KINDS_HEADERS, common.kinds_rows(items), empty="Nothing leaves in this scope.")
    total = ev.people(i.asset_id for i in items if i.category)
    s.text(f"Distinct people concerned (keyed pseudonyms, counted once across kinds): {total['all']:,} in all; "
           f"{total['pi']:,} counted under non-sensitive PI and {total['spi']:,} under sensitive PI.")
    s.table(common.PEOPLE_HEADERS, common.people_rows(plans))
    stays = [[p.plan_id, outcome, summary.assets, summary.bytes, summary.subjects]
             for p in plans for outcome, summary in sorted(p.decision.statement.summary.items())]
    s.text("What each plan decided, including what stays in the region (LOCAL_ONLY), as its author signed it:")
    s.table(["plan", "outcome", "assets", "bytes", "subjects (summed per asset)"], stays)


def _purpose(doc: Document, ev: Evidence, plans: list[PlanFacts]) -> None:
    s = doc.section(SECTIONS[3] + " / 处理目的、处理方式的合法性、正当性、必要性")
    s.text("The legal basis and the PIPIA reference recorded for each plan (a compliance officer's signed "
           "statement; without them the gate holds every PI item):")
    s.table(common.BASIS_HEADERS, common.basis_rows(ev, plans))
    routes = sorted({(i.outcome, i.rules[-1] if i.rules else "—") for p in plans for i in p.leaving()})
    s.text("Method: the data leave as a package signed with the region key and copied to the recipient's "
           "destination by `fleetgate export run`; each item under the route its deciding rule gives:")
    s.table(["outcome", "deciding rule"], [list(r) for r in routes])
    s.todo("why each kind is necessary for the stated purpose, and why less (fewer fields, fewer people, "
           "anonymized data) would not do; how people were told of the recipient, purpose, method, kinds and "
           "their rights, and how their separate consent was obtained where it is the basis (PIPL Art 39)")


def _risks(doc: Document, plans: list[PlanFacts]) -> None:
    s = doc.section(SECTIONS[4] + " / 对个人权益的影响及安全风险")
    items = common.all_items(plans)
    lines = []
    spi = sorted({i.kind for i in items if i.category == "spi"})
    if spi:
        lines.append(f"Sensitive PI leaves ({', '.join(spi)}): a leak or misuse may lead to discrimination or harm "
                     "to people's safety or property (PIPL Art 28; trajectories, audio, video, images and biometrics "
                     "are sensitive under the automobile data provisions, Art 3).")
    pseudo = sorted({i.kind for i in items if i.pseudonymized})
    if pseudo:
        lines.append(f"Pseudonymized data leave ({', '.join(pseudo)}): still personal information (PIPL Art 73); "
                     "the recipient could re-identify people by linking them with other data it holds.")
    if any("vin" in i.features for i in items):
        lines.append("Items carry VINs: a VIN links one owner's records across tables and over time.")
    if any(i.important for i in items):
        lines.append("Important data is among the items: it leaves only after a security assessment.")
    countries = sorted({p.decision.statement.destination.country for p in plans})
    if countries:
        lines.append(f"Recipient countries: {', '.join(countries)}; the recipient's legal environment decides how "
                     "well the people can enforce their rights there.")
    s.bullets(lines or ["No personal information leaves in this scope."])
    s.todo("the likelihood and severity of each risk, the recipient's capability to protect the data, and the "
           "effect of the recipient country's PI protection rules")


def _measures(doc: Document, ev: Evidence, plans: list[PlanFacts]) -> None:
    s = doc.section(SECTIONS[5] + " / 保护措施")
    items = common.all_items(plans)
    s.bullets([
        f"De-identification before export: {sum(i.anonymized for i in items)} of {len(items)} items anonymized, "
        f"{sum(i.pseudonymized for i in items)} pseudonymized with keyed HMAC-SHA256 pseudonyms whose key never "
        "leaves the region.",
        "Camera media that is not anonymized never leaves (gate rule GATE-RAW-MEDIA).",
        "Approval-bound items leave only under approvals signed by named compliance officers other than the "
        "plan's author, within the kinds, volume and validity they signed.",
        "Every decision, approval and export is in the region's tamper-evident log; the package abroad carries "
        "its log entry, an inclusion proof and the signed checkpoint (`fleetgate verify-package`).",
        "People exported are counted once per year in the ledger, so volume thresholds cannot be split around.",
    ])
    by_kind, camera = common.deid_figures(ev)
    s.table(common.DEID_HEADERS, by_kind, empty="No de-identification run is in the log.")
    if camera:
        s.table(common.CAMERA_HEADERS, camera)
    s.table(common.APPROVAL_HEADERS, common.approvals_rows(ev, plans), empty="No approval was needed or given.")
    s.todo("the recipient's technical and organisational measures, the contract terms binding them, and the "
           "channel through which people exercise their rights")
