"""The instruments the filings and the threshold watch rest on, each with what was read and how well.

Evidence levels as in docs/policy.md: V read in the source, S from a law-firm or news summary,
K standard statutory text not re-checked against the official source, I inference or design choice.
Every document ends with the sources it used, so a reader knows which lines to check first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    id: str
    instrument: str
    article: str
    says: str
    evidence: str  # V | S | K | I
    url: str = ""

    @property
    def short(self) -> str:
        """`instrument, article` with the instrument's short English name."""
        return f"{SHORT_NAMES.get(self.id.split('-')[0], self.instrument)} {self.article}"


_CN_RULES = "../shared/regulation/cn-rules.md"
SHORT_NAMES = {"PIPL": "PIPL", "CAA": "PI Compliance Audit Measures 2025", "NDSR": "Network Data Regulations 2024",
               "DSL": "DSL", "AUTO": "Automobile Data Provisions 2021", "SAM": "Security Assessment Measures 2022",
               "XB": "Cross-Border Provisions 2024", "SCM": "Standard Contract Measures 2023",
               "SCC": "Standard contract filing guide", "FG": "fleetgate log"}

SOURCES = {s.id: s for s in (
    Source("PIPL-55-56", "个人信息保护法 (PIPL)", "Arts 55-56",
           "a PI protection impact assessment before processing sensitive PI (55(1)) and before providing PI "
           "abroad (55(4)); it covers (1) whether purpose and method are lawful, legitimate and necessary, "
           "(2) the impact on individuals' rights and the security risks, (3) whether the protection measures "
           "are lawful, effective and proportionate to the risk; report and processing records kept >= 3 years",
           "K", _CN_RULES),
    Source("PIPL-38-39", "个人信息保护法 (PIPL)", "Arts 38-39",
           "an export needs a route (assessment, certification, standard contract); the individual is told the "
           "recipient, purpose, method, kinds of PI and how to exercise rights, and gives separate consent",
           "K", _CN_RULES),
    Source("PIPL-52", "个人信息保护法 (PIPL)", "Art 52",
           "a processor handling PI of the number of people CAC sets designates a PI protection officer and "
           "reports the officer's name and contact", "K", _CN_RULES),
    Source("PIPL-73", "个人信息保护法 (PIPL)", "Arts 4, 73",
           "anonymised information is not PI; de-identified (pseudonymised) information still is", "K", _CN_RULES),
    Source("CAA-12", "个人信息保护合规审计管理办法 (CAC, in force 2025-05-01); CAC announcement of 2025-07-18 on "
           "reporting PI protection officers", "Art 12; announcement",
           "processors of PI of 1,000,000 people or more (100万人以上) designate a PI protection officer and report "
           "them to the city-level CAC within 30 working days of reaching the number", "S",
           "https://www.163.com/dy/article/K4PF5J6B05129QAF.html"),
    Source("CAA-3", "个人信息保护合规审计管理办法 (CAC, published 2025-02-14, in force 2025-05-01)", "Art 3",
           "processors of PI of more than 10,000,000 people (超过1000万人) audit their PI compliance at least once "
           "every two years (the number is from the Xinhua report, S; the article number is K)", "S",
           "http://m.hooverssubs.com/13/15130.html"),
    Source("NDSR-28-33", "网络数据安全管理条例 (State Council Order 790, in force 2025-01-01)", "Arts 28, 30, 32, 33",
           "processors of PI of 10,000,000 people or more also follow Arts 30 and 32 for important-data "
           "processors (28); important-data processors name a network data security officer and a management "
           "body (30), assess risk before providing or entrusting important data (31), and assess the risk of "
           "their processing every year and report it to the provincial authorities (33)", "K", _CN_RULES),
    Source("DSL-27-30", "数据安全法 (DSL)", "Arts 27, 30",
           "important-data processors name a data security officer and body (27) and assess risk periodically, "
           "reporting to the competent departments (30)", "K"),
    Source("AUTO-10", "汽车数据安全管理若干规定（试行） (Order 7, 2021)", "Art 10",
           "an automotive data processor handling important data assesses its risks and reports to the "
           "provincial CAC and departments", "K", _CN_RULES),
    Source("AUTO-13-14", "汽车数据安全管理若干规定（试行） (Order 7, 2021)", "Arts 13-14",
           "processors of important data report by 15 December each year (13): the officer and the user-rights "
           "contact; kinds, scale, purpose and necessity of the data; protection measures incl. storage place "
           "and period; provision to domestic third parties; incidents; complaints; those exporting add (14): "
           "the recipients, the kinds, scale, purpose and necessity of what left, where and how long it is "
           "kept abroad and how it is used, complaints about the export", "K", _CN_RULES),
    Source("AUTO-13-NOTICE", "上海市网信办: 关于报送2022年度汽车数据安全管理情况的通知 (2022-11-23)", "notice",
           "the annual automobile data security report, on the CAC template, is filed by 15 December by the "
           "processors of important data registered in the province", "V",
           "reprint by 数据法盟 (public page; its address was not kept)"),
    Source("AUTO-3", "汽车数据安全管理若干规定（试行） (Order 7, 2021)", "Art 3",
           "PI of owners, drivers, passengers and people outside the car, anonymised information excluded; "
           "trajectories, audio, video, images and biometrics are sensitive; important data (1)-(6)", "V",
           "https://flfgdq.cn/law/汽车数据安全管理若干规定-试行-2021年"),
    Source("SAM-4", "数据出境安全评估办法 (CAC Order 11, 2022)", "Art 4",
           "an assessment is declared for important data, by a CIIO or a processor of PI of >= 1,000,000 people, "
           "or after 100,000 people's PI / 10,000 people's SPI since 1 January of the previous year", "V",
           "https://dlscs.com.cn/newsinfo/6256058.html"),
    Source("SAM-5", "数据出境安全评估办法 (CAC Order 11, 2022)", "Art 5",
           "before declaring, a risk self-assessment of (1) the lawfulness, legitimacy and necessity of the "
           "purpose, scope and method of the export and of the recipient's processing; (2) the scale, scope, kinds "
           "and sensitivity of the data and the risks to national security, public interest and people's rights; "
           "(3) the recipient's undertakings and its management and technical measures and capability; (4) the "
           "risk of tampering, destruction, leaks, loss, transfer or unlawful use during and after the export, "
           "and whether the channels for people to defend their rights are open; (5) whether the contract or "
           "other legal document with the recipient sets out the data-security duties; (6) anything else", "K",
           "http://www.taicivideo.com/plus/view.php?aid=94088 (items (3)-(5) read in a summary)"),
    Source("SAM-GUIDE", "数据出境安全评估申报指南 (CAC, 1st ed. 2022; 2nd ed. 2024), annex: "
           "数据出境风险自评估报告（模板）",
           "template", "the self-assessment report is in Chinese, made within 3 months before the declaration, "
           "and opens with 一、自评估工作情况 (dates, organisation, process, method) and 二、出境活动整体情况 "
           "(the processor, the data to leave, the overseas recipient, the legal documents)", "V",
           "http://www.boteman.cn/paper/369973826.html"),
    Source("XB-7-9", "促进和规范数据跨境流动规定 (CAC Order 16, in force 2024-03-22)", "Arts 5, 7, 8, 9",
           "since 1 January of the current year: fewer than 100,000 people's non-sensitive PI is free (5(4)); "
           "100,000 to 999,999 people's non-sensitive PI or 1 to 9,999 people's SPI needs a standard contract or "
           "certification (8); 1,000,000 people's non-sensitive PI, 10,000 people's SPI or important data need an "
           "assessment (7); an assessment lasts 3 years (9)", "V", "https://www.cac.gov.cn/2024-03/22/c_1712776611775634.htm"),
    Source("SCM-5-7", "个人信息出境标准合同办法 (CAC Order 13, in force 2023-06-01)", "Arts 5, 7",
           "the PIA before a standard-contract export weighs (1) lawfulness, legitimacy and necessity of purpose, "
           "scope and method, (2) scale, kinds and sensitivity and the risks to people's rights, (3) the "
           "recipient's undertakings and capability, (4) risks after the export and the channels for people's "
           "rights, (5) the effect of the recipient country's PI rules on performing the contract, (6) anything "
           "else (5); the contract is filed with the provincial CAC within 10 working days of taking effect, with "
           "the PIA report (7)", "K", _CN_RULES),
    Source("SCC-GUIDE", "个人信息出境标准合同备案指南 (CAC, 2nd ed., 2024-03-22)", "scope",
           "the contract route is for non-CIIOs exporting 100,000 to 999,999 people's non-sensitive PI or fewer "
           "than 10,000 people's SPI since 1 January; splitting volumes to avoid an assessment is prohibited", "V",
           "https://www.waitang.com/report/51485001.html"),
    Source("SCC-APPX1", "个人信息出境标准合同, 附录一 个人信息出境说明", "Appendix 1",
           "the description of the export the contract carries: purpose, method, scale, kinds of PI, kinds of "
           "SPI, onward recipients, transmission method, retention period and place abroad, other matters", "K",
           "https://lawinsider.com/zh/contracts/h0LZOQx5UHf (the appendix's title read, V)"),
    Source("FG-LOG", "fleetgate transparency log (docs/gate.md, docs/security.md)", "—",
           "every figure of this document is read from log entries verified by `fleetgate audit verify` (and the "
           "catalog rows checked against them); each entry can be proved with `fleetgate audit prove N`", "I"),
)}


def source_rows(ids: list[str]) -> list[list[str]]:
    """Rows of the sources table of a document, in the order first cited."""
    seen = list(dict.fromkeys(ids))
    return [[s.instrument, s.article, s.says, s.evidence, s.url or "—"] for s in (SOURCES[i] for i in seen)]


SOURCE_HEADERS = ["instrument", "article", "what it says (as used here)", "evidence", "where read"]
