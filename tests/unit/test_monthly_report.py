"""Monthly reports: rounding, adjustments, reconciliation, rendering and idempotent reruns."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from agentpool.billing.render import report_csv, report_html, report_json
from agentpool.billing.report import (
    ReconciliationError,
    build_tenant_report,
    display_usd,
    reconcile,
)
from agentpool.billing.run import (
    MonthNotEndedError,
    ReportRun,
    ReportTargets,
    previous_month,
    tenant_report_key,
    tier_summary_key,
)
from agentpool.billing_periods import BillingPeriods
from agentpool.events import InvocationCompleted, stable_event_id
from agentpool.ledger import ledger_item
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.registry import Tenant
from agentpool.usage import TokenUsage
from tests.unit.pricing_support import (
    LEDGER_TABLE,
    TOTALS_TABLE,
    LedgerStack,
    model_usage,
    set_fake_credentials,
    tool_invoked,
)

MONTH = "2026-03"
BUCKET = "reports-bucket"
BUS = "metering"
ACME = Tenant(tenant_id="acme", name="Acme <Clinic>", tier="basic", status="active")
MODEL = "mistral.ministral-3-8b-instruct"


def entry(amount: str, day: str = "2026-03-14", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e-{amount}-{day}-{len(extra)}",
        "event_time": f"{day}T09:30:00Z",
        "month": MONTH,
        "user_id": "user-a",
        "detail_type": "Model Usage",
        "item": MODEL,
        "amount_usd": Decimal(amount),
        "catalog_version": "test",
        "quantities": {"input": Decimal(10)},
    } | extra


def totals_for_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    sums: dict[str, Decimal] = {}
    for item in entries:
        for suffix in ("", f"#user#{item['user_id']}", f"#model#{item['item']}"):
            key = f"month#{MONTH}{suffix}"
            sums[key] = sums.get(key, Decimal(0)) + item["amount_usd"]
    return [{"sk": key, "cost_usd": value} for key, value in sums.items()]


# ------------------------------------------------------------------------------ rounding


@pytest.mark.parametrize(
    ("amount", "display"),
    [
        ("0.005", "0.00"),
        ("0.015", "0.02"),
        ("0.025", "0.02"),
        ("1.234999", "1.23"),
        ("0.00017115", "0.00"),
        ("-0.015", "-0.02"),
    ],
)
def test_display_rounds_half_even(amount: str, display: str) -> None:
    assert display_usd(Decimal(amount)) == display


def test_total_rounds_exact_sum_not_lines() -> None:
    # Three lines of 0.004 show 0.00 each, but their exact sum 0.012 shows 0.01.
    entries = [entry("0.004", day) for day in ("2026-03-01", "2026-03-02", "2026-03-03")]
    report = build_tenant_report(
        "acme", "Acme", "basic", MONTH, entries, totals_for_entries(entries)
    )
    assert [day.cost_usd.display for day in report.daily[:3]] == ["0.00", "0.00", "0.00"]
    assert report.total_usd.exact == "0.012"
    assert report.total_usd.display == "0.01"


def test_amounts_stay_exact_in_report() -> None:
    entries = [entry("0.00017115")]
    report = build_tenant_report(
        "acme", "Acme", "basic", MONTH, entries, totals_for_entries(entries)
    )
    assert report.usage_usd.exact == "0.00017115"
    assert report.breakdown["model"][0].cost_usd.exact == "0.00017115"


# --------------------------------------------------------------------------- adjustments


def test_adjustments_listed_apart_from_usage() -> None:
    adjustment = entry(
        "-0.50",
        "2026-03-02",
        adjustment_of_month="2026-02",
        rerate_of="old-event",
        adjustment_reason="price correction",
    )
    entries = [entry("2.00"), adjustment]
    report = build_tenant_report(
        "acme", "Acme", "basic", MONTH, entries, totals_for_entries(entries)
    )
    assert report.usage_usd.exact == "2"
    assert report.adjustments_usd.exact == "-0.5"
    assert report.total_usd.display == "1.50"
    assert [line.adjustment_of_month for line in report.adjustments] == ["2026-02"]
    assert report.adjustments[0].rerate_of == "old-event"
    assert report.adjustments[0].reason == "price correction"
    # The daily chart and breakdowns show the month's own usage only.
    assert report.daily[1].cost_usd.exact == "0"
    assert report.breakdown["model"][0].cost_usd.exact == "2"


# ------------------------------------------------------------------------ reconciliation


def test_reconcile_rejects_cent_difference() -> None:
    entries = [entry("1.00")]
    totals = [{"sk": f"month#{MONTH}", "cost_usd": Decimal("1.01")}]
    with pytest.raises(ReconciliationError, match=r"ledger 1\.00 != totals 1\.01"):
        reconcile("acme", MONTH, entries, totals)


def test_reconcile_rejects_breakdown_difference() -> None:
    entries = [entry("1.00")]
    totals = totals_for_entries(entries)
    totals.append({"sk": f"month#{MONTH}#tool#web_search", "cost_usd": Decimal("0.05")})
    with pytest.raises(ReconciliationError, match="tool#web_search"):
        reconcile("acme", MONTH, entries, totals)


def test_reconcile_accepts_sub_cent_difference() -> None:
    entries = [entry("1.000001")]
    totals = [
        {"sk": f"month#{MONTH}", "cost_usd": Decimal("1.000002")},
        {"sk": f"month#{MONTH}#user#user-a", "cost_usd": Decimal("1.000001")},
        {"sk": f"month#{MONTH}#model#{MODEL}", "cost_usd": Decimal("1.000001")},
    ]
    assert reconcile("acme", MONTH, entries, totals).status == "matched"


def test_reconcile_ignores_counter_only_items() -> None:
    totals = [{"sk": f"month#{MONTH}#other", "invocations": Decimal(3)}]
    assert reconcile("acme", MONTH, [], totals).keys_compared == 0


# ----------------------------------------------------------------------------- rendering


@pytest.fixture
def sample_report() -> Any:
    entries = [
        entry("0.25", "2026-03-01"),
        entry("0.75", "2026-03-14", user_id="user-b"),
        entry("0.10", "2026-03-20", adjustment_of_month="2026-02"),
    ]
    return build_tenant_report(
        "acme", "Acme <Clinic>", "basic", MONTH, entries, totals_for_entries(entries)
    )


def test_csv_parses_with_total_row(sample_report: Any) -> None:
    rows = list(csv.DictReader(io.StringIO(report_csv(sample_report))))
    total = next(row for row in rows if row["section"] == "total" and row["name"] == "total")
    assert total["amount_usd"] == "1.1"
    assert total["amount_usd_display"] == "1.10"
    assert len([row for row in rows if row["section"] == "day"]) == 31
    assert [row["name"] for row in rows if row["section"] == "user"] == ["user-a", "user-b"]
    assert len([row for row in rows if row["section"] == "adjustment"]) == 1


def test_json_round_trips(sample_report: Any) -> None:
    data = json.loads(report_json(sample_report))
    assert data["total_usd"] == {"exact": "1.1", "display": "1.10"}
    assert data["adjustments"][0]["adjustment_of_month"] == "2026-02"
    assert data["reconciliation"]["status"] == "matched"


def test_html_embeds_svg_chart(sample_report: Any) -> None:
    html = report_html(sample_report)
    assert "<svg" in html
    assert "Daily cost, 2026-03" in html
    # No script is loaded from elsewhere, so the page opens offline.
    assert "<script src" not in html
    assert "kozea" not in html


def test_html_escapes_tenant_name(sample_report: Any) -> None:
    html = report_html(sample_report)
    assert "Acme &lt;Clinic&gt;" in html
    assert "Acme <Clinic>" not in html


def test_previous_month_wraps_year() -> None:
    assert previous_month(datetime(2026, 1, 1, 2, 0, tzinfo=UTC)) == "2025-12"
    assert previous_month(datetime(2026, 3, 1, 2, 0, tzinfo=UTC)) == "2026-02"


# ------------------------------------------------------------------------ run with moto


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerStack]:
    set_fake_credentials(monkeypatch)
    with mock_aws():
        stack = LedgerStack()
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("events").create_event_bus(Name=BUS)
        yield stack


def invocation(request_id: str, day: int) -> InvocationCompleted:
    return InvocationCompleted(
        event_id=stable_event_id(request_id, "invocation"),
        event_time=datetime(2026, 3, day, 12, tzinfo=UTC),
        tenant_id="acme",
        tier="basic",
        user_id="user-a",
        request_id=request_id,
        status="succeeded",
        latency_ms=1200,
        session_id="session-1",
        runtime_session_id="runtime-session-0123456789abcdef0123",
    )


def seed(stack: LedgerStack) -> None:
    catalog = default_catalog()
    usage = TokenUsage(input_tokens=1000, output_tokens=500)
    events = [
        invocation("req-1", 3),
        model_usage(usage, MODEL, request_id="req-1", tenant_id="acme", tier="basic"),
        tool_invoked(),
        model_usage(
            usage,
            MODEL,
            request_id="req-2",
            user_id="user-b",
            event_time=datetime(2026, 3, 20, tzinfo=UTC),
        ),
    ]
    result = stack.ledger.record([rate_event(event, catalog) for event in events])
    assert result.failed == []


def seed_adjustment(stack: LedgerStack, amount: Decimal) -> None:
    """Write an adjustment of February billed in March, to the ledger and its totals."""
    rated = rate_event(
        model_usage(
            TokenUsage(input_tokens=1, output_tokens=1),
            MODEL,
            request_id="late-1",
            event_time=datetime(2026, 2, 27, tzinfo=UTC),
        ),
        default_catalog(),
    )
    item = ledger_item(rated) | {
        "month": MONTH,
        "amount_usd": amount,
        "adjustment_of_month": "2026-02",
        "adjustment_reason": "late event",
    }
    stack.ledger_table.put_item(Item=item)
    for sk in (f"month#{MONTH}", f"month#{MONTH}#user#user-a", f"month#{MONTH}#model#{MODEL}"):
        stack.totals_table.update_item(
            Key={"pk": "acme", "sk": sk},
            UpdateExpression="ADD cost_usd :amount",
            ExpressionAttributeValues={":amount": amount},
        )
    # The tier's month total carries the adjustment too, on one of its shards.
    stack.totals_table.update_item(
        Key={"pk": "tier#basic#0", "sk": f"month#{MONTH}"},
        UpdateExpression="ADD cost_usd :amount",
        ExpressionAttributeValues={":amount": amount},
    )


def run_reports(clock_hour: int = 2) -> Any:
    run = ReportRun(
        boto3.client("dynamodb"),
        boto3.client("s3"),
        boto3.client("events"),
        ReportTargets(LEDGER_TABLE, TOTALS_TABLE, BUCKET, BUS),
        clock=lambda: datetime(2026, 4, 1, clock_hour, tzinfo=UTC),
    )
    return run.run(MONTH, [ACME])


def s3_text(key: str) -> str:
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return str(body.decode())


def test_run_writes_every_file(aws: LedgerStack) -> None:
    seed(aws)
    result = run_reports()
    for extension in ("csv", "json", "html"):
        assert tenant_report_key(MONTH, "acme", extension) in result.keys
    assert tier_summary_key(MONTH, "basic", "json") in result.keys
    assert json.loads(s3_text(tenant_report_key(MONTH, "acme", "json")))["tenant_id"] == "acme"


def test_run_total_matches_ledger(aws: LedgerStack) -> None:
    seed(aws)
    result = run_reports()
    ledger_sum = sum((item["amount_usd"] for item in aws.ledger_entries()), Decimal(0))
    assert result.total_usd == ledger_sum
    assert result.tiers[0].totals_table_usd == f"{ledger_sum.normalize():f}"


def test_rerun_writes_same_bytes(aws: LedgerStack) -> None:
    seed(aws)
    first = run_reports(clock_hour=2)
    before = {key: s3_text(key) for key in first.keys}
    second = run_reports(clock_hour=5)
    assert {key: s3_text(key) for key in second.keys} == before
    assert first.event is not None
    assert second.event is not None
    assert second.event.event_id == first.event.event_id


def test_run_includes_seeded_adjustment(aws: LedgerStack) -> None:
    seed(aws)
    seed_adjustment(aws, Decimal("-0.000100"))
    result = run_reports()
    [report] = result.reports
    assert report.adjustments_usd.exact == "-0.0001"
    assert [line.adjustment_of_month for line in report.adjustments] == ["2026-02"]


def test_run_fails_on_unreconciled_totals(aws: LedgerStack) -> None:
    seed(aws)
    aws.totals_table.update_item(
        Key={"pk": "acme", "sk": f"month#{MONTH}"},
        UpdateExpression="ADD cost_usd :amount",
        ExpressionAttributeValues={":amount": Decimal("0.02")},
    )
    with pytest.raises(ReconciliationError, match="acme"):
        run_reports()
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET)
    assert listed.get("KeyCount", 0) == 0


def test_run_counts_dynamodb_reads(aws: LedgerStack) -> None:
    seed(aws)
    result = run_reports()
    shards_with_usage = sum(
        1
        for item in aws.totals_table.scan()["Items"]
        if item["pk"].startswith("tier#basic#") and item["sk"] == f"month#{MONTH}"
    )
    # One ledger index query and one totals query for the tenant, one get per tier shard.
    assert result.read_requests == 2 + 8
    # 4 ledger entries; the month, 2 users, 1 model and 1 tool totals; the shards' months.
    assert result.items_read == 4 + 5 + shards_with_usage
    assert result.estimated_read_units > 0


def test_run_marks_month_issued(aws: LedgerStack) -> None:
    seed(aws)
    result = run_reports()
    assert result.issued is True
    assert BillingPeriods(boto3.client("dynamodb"), TOTALS_TABLE).issued_months() == {MONTH}


def test_run_rejects_issuing_open_month(aws: LedgerStack) -> None:
    run = ReportRun(
        boto3.client("dynamodb"),
        boto3.client("s3"),
        None,
        ReportTargets(LEDGER_TABLE, TOTALS_TABLE, BUCKET, None),
        clock=lambda: datetime(2026, 3, 31, 23, 59, tzinfo=UTC),
    )
    with pytest.raises(MonthNotEndedError, match=MONTH):
        run.run(MONTH, [ACME])
    assert BillingPeriods(boto3.client("dynamodb"), TOTALS_TABLE).issued_months() == frozenset()


def test_draft_run_leaves_month_open(aws: LedgerStack) -> None:
    seed(aws)
    run = ReportRun(
        boto3.client("dynamodb"),
        boto3.client("s3"),
        None,
        ReportTargets(LEDGER_TABLE, TOTALS_TABLE, BUCKET, None),
        clock=lambda: datetime(2026, 3, 20, tzinfo=UTC),
    )
    result = run.run(MONTH, [ACME], issue=False)
    assert result.issued is False
    assert BillingPeriods(boto3.client("dynamodb"), TOTALS_TABLE).issued_months() == frozenset()
