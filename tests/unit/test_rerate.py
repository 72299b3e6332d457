"""Re-rating a month with another catalog: differences recorded once, issued months adjusted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from agentpool.billing.rerate import RerateResult, Rerating, plan_rerating
from agentpool.billing_periods import BillingPeriods
from agentpool.pricing.catalog import DEFAULT_CATALOG_PATH, PriceCatalog, default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.usage import TokenUsage
from tests.unit.pricing_support import (
    LEDGER_TABLE,
    TOTALS_TABLE,
    LedgerStack,
    model_usage,
    set_fake_credentials,
    tool_invoked,
)

TENANT = "acme"
MONTH = "2026-03"
MODEL = "mistral.ministral-3-8b-instruct"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerStack]:
    set_fake_credentials(monkeypatch)
    with mock_aws():
        yield LedgerStack()


def doubled_catalog() -> PriceCatalog:
    """The shipped catalog with the basic model's output price doubled."""
    data: dict[str, Any] = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    data["catalog_version"] = "test-doubled"
    prices = data["models"][MODEL][0]["usd_per_million"]
    prices["output"] = str(Decimal(prices["output"]) * 2)
    return PriceCatalog(data)


def record_month(stack: LedgerStack) -> list[Any]:
    events = [
        model_usage(
            TokenUsage(input_tokens=1_000 + index, output_tokens=300 + index),
            MODEL,
            request_id=f"req-{index}",
            event_time=datetime(2026, 3, 1 + index, 9, 0, tzinfo=UTC),
        )
        for index in range(5)
    ]
    events.append(tool_invoked())
    stack.ledger.record(rate_event(event, default_catalog()) for event in events)
    return events


def month_cost(stack: LedgerStack, month: str) -> Decimal:
    return stack.counter(TENANT, f"month#{month}", "cost_usd")


def rerating() -> Rerating:
    return Rerating(boto3.client("dynamodb", region_name="us-east-1"), LEDGER_TABLE, TOTALS_TABLE)


def test_rerate_records_each_difference(stack: LedgerStack) -> None:
    events = record_month(stack)
    catalog = doubled_catalog()

    result = rerating().run([TENANT], MONTH, catalog)

    expected = sum((rate_event(event, catalog).amount_usd for event in events), Decimal(0))
    rerates = [entry for entry in stack.ledger_entries() if entry.get("rerate_of")]
    assert result.entries == 6
    assert len(result.recorded) == 5
    assert result.unchanged == 1
    assert month_cost(stack, MONTH) == expected
    assert len(rerates) == 5
    assert {entry["month"] for entry in rerates} == {MONTH}
    assert stack.counter(TENANT, f"month#{MONTH}", "events") == 6


def test_rerate_rerun_adds_nothing(stack: LedgerStack) -> None:
    record_month(stack)
    rerating().run([TENANT], MONTH, doubled_catalog())
    cost = month_cost(stack, MONTH)
    entries = len(stack.ledger_entries())

    again = rerating().run([TENANT], MONTH, doubled_catalog())

    assert again.recorded == []
    assert again.unchanged == 6
    assert month_cost(stack, MONTH) == cost
    assert len(stack.ledger_entries()) == entries


def test_rerate_back_restores_amounts(stack: LedgerStack) -> None:
    record_month(stack)
    original = month_cost(stack, MONTH)
    rerating().run([TENANT], MONTH, doubled_catalog())

    back = rerating().run([TENANT], MONTH, default_catalog())

    assert len(back.recorded) == 5
    assert month_cost(stack, MONTH) == original


def test_rerate_of_issued_month_is_adjustment(stack: LedgerStack) -> None:
    events = record_month(stack)
    BillingPeriods(stack.client, TOTALS_TABLE).mark_issued(MONTH)
    issued_cost = month_cost(stack, MONTH)
    catalog = doubled_catalog()

    result = rerating().run([TENANT], MONTH, catalog)

    difference = sum(
        (rate_event(e, catalog).amount_usd - rate_event(e, default_catalog()).amount_usd)
        for e in events
    )
    rerates = [entry for entry in stack.ledger_entries() if entry.get("rerate_of")]
    assert month_cost(stack, MONTH) == issued_cost
    assert month_cost(stack, "2026-04") == difference
    assert result.difference_usd == difference
    assert {entry["adjustment_of_month"] for entry in rerates} == {MONTH}
    assert {entry["month"] for entry in rerates} == {"2026-04"}


def test_rerate_skips_unpriced_events(stack: LedgerStack) -> None:
    record_month(stack)
    data: dict[str, Any] = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    del data["models"][MODEL]
    before = month_cost(stack, MONTH)

    result = rerating().run([TENANT], MONTH, PriceCatalog(data))

    assert len(result.unpriced) == 5
    assert result.recorded == []
    assert month_cost(stack, MONTH) == before


def test_plan_counts_earlier_reratings() -> None:
    event = model_usage(TokenUsage(input_tokens=1_000, output_tokens=300), MODEL)
    rated = rate_event(event, default_catalog())
    original = {
        "event_id": event.event_id,
        "month": MONTH,
        "amount_usd": rated.amount_usd,
        "event": event.model_dump_json(),
    }
    target = rate_event(event, doubled_catalog()).amount_usd
    earlier = {
        "event_id": "rerate-1",
        "month": MONTH,
        "amount_usd": target - rated.amount_usd,
        "rerate_of": event.event_id,
        "event": event.model_dump_json(),
    }
    result = RerateResult(MONTH, "test-doubled")

    planned = plan_rerating([original, earlier], MONTH, doubled_catalog(), result)

    assert planned == []
    assert result.unchanged == 1
