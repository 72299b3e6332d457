"""Render reports as CSV, JSON and HTML. The HTML page embeds a pygal chart as inline SVG."""

from __future__ import annotations

import csv
import io
import json
import uuid
from decimal import Decimal
from functools import cache

import pygal
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygal.style import Style

from agentpool.billing.report import TenantReport, TierSummary

FORMATS = ("csv", "json", "html")
CSV_COLUMNS = ("section", "name", "events", "amount_usd", "amount_usd_display")
_CHART_STYLE = Style(
    background="white",
    plot_background="white",
    colors=("#2f6f9f",),
    font_family="Helvetica, Arial, sans-serif",
)


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("agentpool.billing", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        keep_trailing_newline=True,
    )


def report_json(report: TenantReport | TierSummary) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def report_csv(report: TenantReport) -> str:
    """Write one row per total, day, breakdown line and adjustment, exact and for display."""
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerow(["total", "usage", "", report.usage_usd.exact, report.usage_usd.display])
    writer.writerow(
        [
            "total",
            "adjustments",
            len(report.adjustments),
            report.adjustments_usd.exact,
            report.adjustments_usd.display,
        ]
    )
    writer.writerow(["total", "total", "", report.total_usd.exact, report.total_usd.display])
    for day in report.daily:
        writer.writerow(["day", day.day, "", day.cost_usd.exact, day.cost_usd.display])
    for kind, lines in report.breakdown.items():
        for line in lines:
            writer.writerow(
                [kind, line.name, line.events, line.cost_usd.exact, line.cost_usd.display]
            )
    for adjustment in report.adjustments:
        writer.writerow(
            [
                "adjustment",
                f"{adjustment.adjustment_of_month} {adjustment.event_id}",
                1,
                adjustment.amount_usd.exact,
                adjustment.amount_usd.display,
            ]
        )
    return output.getvalue()


def tier_csv(summary: TierSummary) -> str:
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(("tenant_id", "tenant_name", "total_usd", "total_usd_display"))
    for line in summary.tenants:
        writer.writerow(
            [line.tenant_id, line.tenant_name, line.total_usd.exact, line.total_usd.display]
        )
    writer.writerow(["", "total", summary.total_usd.exact, summary.total_usd.display])
    return output.getvalue()


def daily_cost_chart(report: TenantReport) -> str:
    """Render the daily cost as an SVG bar chart, with no scripts and no external links."""
    chart = pygal.Bar(
        style=_CHART_STYLE,
        width=900,
        height=320,
        show_legend=False,
        x_label_rotation=0,
        show_minor_x_labels=False,
        y_title="USD",
        # pygal links its tooltip script from a CDN by default; a report must open offline.
        js=[],
        disable_xml_declaration=True,
        title=f"Daily cost, {report.month}",
    )
    # pygal ids each chart's SVG elements with a random uuid4. A fixed id per tenant and month
    # keeps a rerun's HTML byte for byte the same.
    chart.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"agentpool/{report.tenant_id}/{report.month}"))
    chart.x_labels = [day.day[-2:] for day in report.daily]
    chart.x_labels_major = [day.day[-2:] for day in report.daily[::5]]
    # Floats only draw the bars. Every amount printed on the page is the exact Decimal.
    chart.add("cost", [float(Decimal(day.cost_usd.exact)) for day in report.daily])
    svg: str = chart.render(is_unicode=True)
    return svg


def report_html(report: TenantReport) -> str:
    template = _environment().get_template("tenant_report.html.j2")
    return template.render(report=report, chart=Markup(daily_cost_chart(report)))  # noqa: S704 - pygal's own SVG, with text escaped by its XML writer


def tenant_files(report: TenantReport) -> dict[str, str]:
    """Return the report's files by extension: csv, json and html."""
    return {"csv": report_csv(report), "json": report_json(report), "html": report_html(report)}


def tier_files(summary: TierSummary) -> dict[str, str]:
    return {"csv": tier_csv(summary), "json": report_json(summary)}
