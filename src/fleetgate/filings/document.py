"""A filing as data (sections of paragraphs, lists and tables) and its renderings: Markdown, HTML, PDF.

Markdown is the source: HTML is that Markdown rendered by markdown-it-py (CommonMark plus tables,
raw HTML off, so a purpose typed by an engineer can never inject markup), and PDF is that HTML laid
out by WeasyPrint (Pango finds the CJK font the Makefile installs). One text, three formats, so
what a compliance officer reads in the PDF is what the tests checked in the Markdown.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from markdown_it import MarkdownIt

from fleetgate.errors import FleetgateError

_STYLE = """
body{font-family:'Noto Sans CJK SC','WenQuanYi Zen Hei','Noto Sans',system-ui,sans-serif;margin:2rem auto;
max-width:1000px;color:#1d2330;font-size:11pt;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.15rem;border-bottom:1px solid #dde;padding-bottom:.2rem;margin-top:1.6rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #dde;padding:.2rem .45rem;overflow-wrap:anywhere;text-align:left;vertical-align:top}
th{background:#f3f5f9}code{font-size:.85em}
blockquote{color:#6b7385;margin:.4rem 0;padding-left:.8rem;border-left:3px solid #dde}
@page{size:A4;margin:18mm 16mm}
"""
# Characters that mean something to Markdown inline, escaped so that data reads as data: always the
# backslash, emphasis stars, backticks, link brackets, the angle bracket, entities and the table pipe; an
# underscore only where it could open or close emphasis (not inside after_sales); a line-start marker only at
# the start of a paragraph.
_MD_SPECIAL = re.compile(r"([\\*`\[\]<&|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_MD_LINE_START = re.compile(r"^(\d*)([#>+=.)-])")


class Format(StrEnum):
    """What a filing is written as."""

    md = "md"
    html = "html"
    pdf = "pdf"


def md_text(value: object, block: bool = False) -> str:
    """A value as Markdown inline text: special characters escaped, newlines folded; `block`: it starts a
    paragraph, so leading blanks go (four would make a code block) and a heading, quote or list marker is
    escaped."""
    text = _MD_SPECIAL.sub(r"\\\1", str(value)).replace("\n", " ")
    return _MD_LINE_START.sub(r"\1\\\2", text.strip()) if block else text


@dataclass
class Table:
    headers: Sequence[str]
    rows: list[Sequence[object]]


@dataclass
class Todo:
    """What the processor must still write: fleetgate does not hold these facts."""

    text: str


@dataclass
class Section:
    """A numbered section: its title and blocks (paragraph text, bullet lists, tables, notes)."""

    title: str
    blocks: list[str | list[str] | Table | Todo] = field(default_factory=list)

    def text(self, text: str) -> Section:
        self.blocks.append(text)
        return self

    def bullets(self, items: Sequence[str]) -> Section:
        self.blocks.append(list(items) or ["none"])
        return self

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str = "none") -> Section:
        if rows:
            self.blocks.append(Table(headers, [list(r) for r in rows]))
        else:
            self.blocks.append(empty)
        return self

    def todo(self, text: str) -> Section:
        self.blocks.append(Todo(text))
        return self


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        s = Section(f"{len(self.sections) + 1}. {title}")
        self.sections.append(s)
        return s

    def titles(self) -> list[str]:
        return [s.title for s in self.sections]


def to_markdown(doc: Document) -> str:
    out = [f"# {md_text(doc.title)}", "", md_text(doc.subtitle), ""]
    for section in doc.sections:
        out += [f"## {md_text(section.title)}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("| " + " | ".join(md_text(h) for h in block.headers) + " |")
                out.append("|" + "---|" * len(block.headers))
                out += ["| " + " | ".join(md_text(_cell(v)) for v in row) + " |" for row in block.rows]
            elif isinstance(block, list):
                out += [f"- {md_text(item)}" for item in block]
            elif isinstance(block, Todo):
                out.append(f"> **TO COMPLETE:** {md_text(block.text)}")
            else:
                out.append(md_text(block, block=True))
            out.append("")
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return "—" if value is None or value == "" else str(value)


def to_html(doc: Document) -> str:
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(to_markdown(doc))
    return (f"<!doctype html><html lang=zh-Hans><head><meta charset=utf-8><title>{html.escape(doc.title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def to_pdf(doc: Document) -> bytes:
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Pango libraries are missing
        raise FleetgateError(f"PDF needs WeasyPrint and Pango ({type(exc).__name__}: {exc}); install them with "
                             "`pip install 'fleetgate[pdf]'` and `apt-get install libpango-1.0-0 "
                             "libpangoft2-1.0-0`, or write --format md or html") from None
    return weasyprint.HTML(string=to_html(doc)).write_pdf()


def render(doc: Document, fmt: Format) -> bytes:
    if fmt is Format.pdf:
        return to_pdf(doc)
    return (to_html(doc) if fmt is Format.html else to_markdown(doc)).encode("utf-8")


def write(doc: Document, path: Path, fmt: Format) -> Path:
    """Write the document atomically (a temporary file, fsync, rename): a crash leaves the old file or none."""
    data = render(doc, fmt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path
