"""Issued months and late events billed as adjustments (moto, tables built from template.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from moto import mock_aws

from agentpool.billing_periods import BillingPeriods, billing_month, next_month
from tests.unit.pricing_support import TENANT, TIER, LedgerStack, set_fake_credentials
from tests.unit.test_ledger import rated_usage


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerStack]:
    set_fake_credentials(monkeypatch)
    with mock_aws():
        yield LedgerStack()


def test_next_month_crosses_year() -> None:
    assert next_month("2026-12") == "2027-01"
    assert next_month("2026-03") == "2026-04"


def test_billing_month_skips_issued_months() -> None:
    assert billing_month("2026-03", set()) == "2026-03"
    assert billing_month("2026-03", {"2026-03"}) == "2026-04"
    assert billing_month("2026-03", {"2026-03", "2026-04"}) == "2026-05"
    assert billing_month("2026-05", {"2026-03"}) == "2026-05"


def test_mark_issued_once(stack: LedgerStack) -> None:
    periods = BillingPeriods(stack.client, "totals")
    assert periods.mark_issued("2026-03", "reports/2026-03/") is True
    assert periods.mark_issued("2026-03") is False
    assert periods.issued_months() == frozenset({"2026-03"})


def test_mark_issued_rejects_malformed_month(stack: LedgerStack) -> None:
    with pytest.raises(ValueError, match="does not match format"):
        BillingPeriods(stack.client, "totals").mark_issued("March")


def test_late_event_billed_in_next_month(stack: LedgerStack) -> None:
    on_time = rated_usage(1)
    stack.ledger.record([on_time])
    BillingPeriods(stack.client, "totals").mark_issued("2026-03")
    before = stack.totals(TENANT, "month#2026-03")
    late = rated_usage(2, tokens=3000)
    result = stack.ledger.record([late])
    assert result.recorded == [late.event.event_id]
    assert stack.totals(TENANT, "month#2026-03") == before
    assert stack.counter(TENANT, "day#2026-03-14", "cost_usd") == on_time.amount_usd
    assert stack.counter(TENANT, "month#2026-04", "cost_usd") == late.amount_usd
    assert stack.counter(TENANT, "month#2026-04", "adjustment_usd") == late.amount_usd
    adjustment = "month#2026-04#adjustment#2026-03"
    assert stack.counter(TENANT, adjustment, "cost_usd") == late.amount_usd
    assert stack.tier_counter(TIER, adjustment, "cost_usd") == late.amount_usd
    entry = stack.ledger_table.get_item(Key={"tenant_id": TENANT, "event_id": late.event.event_id})[
        "Item"
    ]
    assert entry["month"] == "2026-04"
    assert entry["day"] == "2026-03-14"
    assert entry["adjustment_of_month"] == "2026-03"
    assert entry["event_time"] == "2026-03-14T09:30:00Z"


def test_duplicate_of_billed_event_no_adjustment(stack: LedgerStack) -> None:
    event = rated_usage(1)
    stack.ledger.record([event])
    BillingPeriods(stack.client, "totals").mark_issued("2026-03")
    result = stack.ledger.record([event])
    assert result.duplicates == [event.event.event_id]
    assert stack.totals(TENANT, "month#2026-04") == {}


def test_month_issued_during_batch_rebilled(
    stack: LedgerStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    periods = stack.ledger.periods
    read_before_issue = periods.issued_months()
    reads: list[frozenset[str]] = []

    def stale_then_fresh() -> frozenset[str]:
        # The first read happens before the report run marks March; the mark lands before
        # the transaction, as when the two run at the same time.
        if not reads:
            reads.append(read_before_issue)
            BillingPeriods(stack.client, "totals").mark_issued("2026-03")
            return read_before_issue
        fresh = BillingPeriods(stack.client, "totals").issued_months()
        reads.append(fresh)
        return fresh

    monkeypatch.setattr(periods, "issued_months", stale_then_fresh)
    late = rated_usage(1)
    result = stack.ledger.record([late])
    assert result.recorded == [late.event.event_id]
    assert len(reads) == 2
    assert stack.totals(TENANT, "month#2026-03") == {}
    assert stack.counter(TENANT, "month#2026-04", "adjustment_usd") == late.amount_usd


def test_late_event_of_new_year(stack: LedgerStack) -> None:
    BillingPeriods(stack.client, "totals").mark_issued("2026-12")
    late = rated_usage(1, event_time=datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    stack.ledger.record([late])
    assert stack.counter(TENANT, "month#2027-01", "adjustment_usd") == late.amount_usd
    assert stack.counter(TENANT, "month#2027-01", "events") == Decimal(1)
