"""Self-contained HTML reports with embedded plots."""

from fleetgate.report.html import HtmlReport, figure_png, table_html

__all__ = ["HtmlReport", "figure_png", "table_html"]
