"""Small SVG plots for the dashboard (matplotlib's object API, no pyplot state), cached per log size."""

from __future__ import annotations

import io
import threading
from functools import lru_cache

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from fleetgate.services.models import LedgerLine

_lock = threading.Lock()  # matplotlib's font cache and text layout are not thread-safe
OUTCOME_COLOURS = {"EXPORT_FREE": "#2e7d32", "EXPORT_FTZ_LIST": "#689f38", "STANDARD_CONTRACT_OR_CERT": "#f9a825",
                   "SECURITY_ASSESSMENT": "#ef6c00", "LOCAL_ONLY": "#c62828", "unclassified": "#757575"}
ORDER = list(OUTCOME_COLOURS)


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    FigureCanvasSVG(fig).print_svg(out)
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline: drop the XML prolog and doctype


def outcomes_svg(outcomes: dict[str, int]) -> str:
    return _outcomes(tuple(sorted(outcomes.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99)))


@lru_cache(maxsize=64)
def _outcomes(items: tuple[tuple[str, int], ...]) -> str:
    with _lock:
        fig = Figure(figsize=(6.4, 0.5 + 0.38 * max(1, len(items))), dpi=96)
        ax = fig.add_subplot()
        names = [k for k, _ in items]
        ax.barh(names, [v for _, v in items], color=[OUTCOME_COLOURS.get(k, "#607d8b") for k in names])
        for y, (_, v) in enumerate(items):
            ax.text(v, y, f" {v:,}", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("assets (each decided alone)")
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        return _svg(fig)


def ledger_svg(lines: list[LedgerLine]) -> str:
    return _ledger(tuple((f"{x.exporter} {x.year} {x.category.upper()}", x.subjects, x.threshold,
                          x.threshold_outcome) for x in lines))


@lru_cache(maxsize=64)
def _ledger(lines: tuple[tuple[str, int, int, str], ...]) -> str:
    with _lock:
        fig = Figure(figsize=(6.4, 0.7 + 0.45 * max(1, len(lines))), dpi=96)
        ax = fig.add_subplot()
        if not lines:
            ax.text(0.5, 0.5, "no one exported yet this year", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return _svg(fig)
        for y, (_label, subjects, threshold, outcome) in enumerate(lines):
            share = subjects / threshold
            ax.barh(y, share, color="#1565c0" if share < 0.8 else "#ef6c00")
            ax.text(share, y, f" {subjects:,} of {threshold:,} → {outcome}", va="center", fontsize=8)
        ax.axvline(1.0, color="#c62828", lw=1, ls="--")
        ax.set_yticks(range(len(lines)), [x[0] for x in lines])
        ax.set_xlim(0, 1.6)
        ax.set_xlabel("share of the next yearly threshold (Cross-Border Data Flow Provisions 2024)")
        ax.invert_yaxis()
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        return _svg(fig)
