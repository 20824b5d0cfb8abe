"""A small HTML report builder: sections of text, tables and PNG figures, all in one file."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330}
h1{font-size:1.6rem}h2{font-size:1.2rem;border-bottom:1px solid #dde;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
td,th{border:1px solid #dde;padding:.25rem .5rem;text-align:left}
th{background:#f3f5f9}td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#6b7385}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0}.bad{color:#b00020}
"""


def table_html(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; numbers are right-aligned."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            cls = ' class="num"' if isinstance(value, int | float) and not isinstance(value, bool) else ""
            text = f"{value:,.4g}" if isinstance(value, float) else str(value)
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure_png(fig: Any) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


@dataclass
class HtmlReport:
    """Sections appended in order, written as one self-contained HTML file."""

    title: str
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        """Start a section."""
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, muted: bool = False) -> None:
        """A paragraph."""
        cls = ' class="muted"' if muted else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """A table."""
        self.parts.append(table_html(headers, rows))

    def image(self, png: bytes, alt: str) -> None:
        """An embedded PNG."""
        data = base64.b64encode(png).decode("ascii")
        self.parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')

    def write(self, path: Path) -> Path:
        """Write the report atomically."""
        doc = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(self.title)}</title>"
               f"<style>{_STYLE}</style><h1>{html.escape(self.title)}</h1>{''.join(self.parts)}</html>")
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(doc, encoding="utf-8")
        tmp.replace(path)
        return path
