"""Rating of metering events with exact Decimal amounts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from moto import mock_aws

from agentpool.events import InvocationCompleted, stable_event_id
from agentpool.pricing.catalog import DEFAULT_CATALOG_PATH, PriceCatalog, default_catalog
from agentpool.pricing.rating import AMOUNT_QUANTUM, quantize_amount, rate_event
from agentpool.usage import TokenUsage
from tests.unit.pricing_support import (
    TENANT,
    LedgerStack,
    assert_exact_decimals,
    catalog_without_web_search,
    memory_usage,
    model_usage,
    runtime_usage,
    set_fake_credentials,
    tool_invoked,
)

BASIC_MODEL = "mistral.ministral-3-8b-instruct"
# A time at which the shipped catalog prices web search queries.
AFTER_WEB_SEARCH_PRICE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerStack]:
    set_fake_credentials(monkeypatch)
    with mock_aws():
        yield LedgerStack()


def catalog_with_runtime_price(usd_per_vcpu_hour: str) -> PriceCatalog:
    data: dict[str, Any] = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    data["runtime"][0]["usd_per_vcpu_hour"] = usd_per_vcpu_hour
    data["runtime"][0]["usd_per_gb_hour"] = "0"
    return PriceCatalog(data)


def test_unknown_model_rated_unpriced() -> None:
    rated = rate_event(model_usage(TokenUsage(input_tokens=10), "unknown.model"), default_catalog())
    assert rated.priced is False
    assert rated.amount_usd == Decimal(0)
    assert type(rated.amount_usd) is Decimal
    assert rated.unpriced_reason is not None
    assert "unknown.model" in rated.unpriced_reason
    assert rated.quantities == {"input_tokens": Decimal(10)}


def test_unpriced_token_class_rated_unpriced() -> None:
    # The shipped basic-tier model has no cache-read price, so cache reads cannot be priced.
    event = model_usage(TokenUsage(input_tokens=10, cache_read_tokens=5), BASIC_MODEL)
    rated = rate_event(event, default_catalog())
    assert rated.priced is False
    assert rated.amount_usd == Decimal(0)
    assert rated.unpriced_reason is not None
    assert "cache_read" in rated.unpriced_reason


def test_runtime_before_catalog_start_unpriced() -> None:
    event = runtime_usage(Decimal(10), Decimal(10)).model_copy(
        update={"event_time": datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)}
    )
    rated = rate_event(event, default_catalog())
    assert rated.priced is False
    assert rated.amount_usd == Decimal(0)


def test_unpriced_event_recorded_not_dropped(stack: LedgerStack) -> None:
    rated = rate_event(model_usage(TokenUsage(input_tokens=7), "unknown.model"), default_catalog())
    result = stack.ledger.record([rated])
    assert result.recorded == [rated.event.event_id]
    [entry] = stack.ledger_entries()
    assert entry["priced"] is False
    assert entry["amount_usd"] == Decimal(0)
    assert "unknown.model" in entry["unpriced_reason"]
    assert stack.counter(TENANT, "month#2026-03", "unpriced_events") == Decimal(1)
    assert stack.counter(TENANT, "month#2026-03", "events") == Decimal(1)
    assert stack.counter(TENANT, "month#2026-03", "input_tokens") == Decimal(7)


def test_priced_model_usage_exact() -> None:
    event = model_usage(TokenUsage(input_tokens=1_000_000, output_tokens=1), BASIC_MODEL)
    rated = rate_event(event, default_catalog())
    assert_exact_decimals(rated)
    assert rated.priced is True
    assert rated.amount_usd == Decimal("0.15000015")
    assert rated.unit_prices == {"input": Decimal("0.15"), "output": Decimal("0.15")}
    assert rated.catalog_version == default_catalog().version


def test_token_amount_not_rounded() -> None:
    # One token at 0.15 USD per million is 1.5e-7 USD, which the 1e-12 quantum keeps exactly.
    rated = rate_event(model_usage(TokenUsage(output_tokens=1), BASIC_MODEL), default_catalog())
    assert rated.amount_usd == Decimal("0.00000015")


def test_denied_tool_call_costs_nothing() -> None:
    rated = rate_event(tool_invoked("denied"), default_catalog())
    assert rated.priced is True
    assert rated.amount_usd == Decimal(0)
    assert rated.quantities == {"invocations": Decimal(1)}


def test_document_search_call_priced_per_invocation() -> None:
    rated = rate_event(tool_invoked(event_time=AFTER_WEB_SEARCH_PRICE), default_catalog())
    assert_exact_decimals(rated)
    assert rated.amount_usd == Decimal("0.000005")
    assert rated.quantities == {"invocations": Decimal(1)}
    assert rated.unit_prices == {"per_thousand": Decimal("0.005")}


def test_web_search_call_adds_query_price() -> None:
    event = tool_invoked(tool="web_search", event_time=AFTER_WEB_SEARCH_PRICE)
    rated = rate_event(event, default_catalog())
    assert_exact_decimals(rated)
    assert rated.priced is True
    # One Gateway invocation at $0.005 and one query at $7.00 per thousand.
    assert rated.amount_usd == Decimal("0.007005")
    assert rated.quantities == {"invocations": Decimal(1), "queries": Decimal(1)}
    assert rated.unit_prices == {
        "per_thousand": Decimal("0.005"),
        "queries_per_thousand": Decimal("7.00"),
    }
    assert rated.catalog_version == default_catalog().version
    assert rated.item == "web_search"


def test_denied_web_search_costs_nothing() -> None:
    event = tool_invoked("denied", tool="web_search", event_time=AFTER_WEB_SEARCH_PRICE)
    rated = rate_event(event, default_catalog())
    assert rated.priced is True
    assert rated.amount_usd == Decimal(0)
    assert rated.quantities == {"invocations": Decimal(1)}
    assert rated.unit_prices == {}


def test_web_search_without_price_unpriced() -> None:
    rated = rate_event(tool_invoked(tool="web_search"), catalog_without_web_search())
    assert rated.priced is False
    assert rated.amount_usd == Decimal(0)
    assert rated.unpriced_reason is not None
    assert "agentcore.web_search" in rated.unpriced_reason
    assert rated.unit_prices == {}
    assert rated.quantities == {"invocations": Decimal(1), "queries": Decimal(1)}


def test_unpriced_web_search_recorded_and_counted(stack: LedgerStack) -> None:
    rated = rate_event(tool_invoked(tool="web_search"), catalog_without_web_search())
    result = stack.ledger.record([rated])
    assert result.recorded == [rated.event.event_id]
    [entry] = stack.ledger_entries()
    assert entry["priced"] is False
    assert entry["amount_usd"] == Decimal(0)
    assert "agentcore.web_search" in entry["unpriced_reason"]
    assert stack.counter(TENANT, "month#2026-03", "unpriced_events") == Decimal(1)
    assert stack.counter(TENANT, "month#2026-03", "tool_calls") == Decimal(1)


def test_web_search_ledger_entry_exact(stack: LedgerStack) -> None:
    event = tool_invoked(tool="web_search", event_time=AFTER_WEB_SEARCH_PRICE)
    stack.ledger.record([rate_event(event, default_catalog())])
    [entry] = stack.ledger_entries()
    assert entry["amount_usd"] == Decimal("0.007005")
    assert entry["unit_prices"] == {
        "per_thousand": Decimal("0.005"),
        "queries_per_thousand": Decimal("7"),
    }
    assert entry["catalog_version"] == default_catalog().version
    assert stack.counter(TENANT, "month#2026-12", "cost_usd") == Decimal("0.007005")
    assert stack.counter(TENANT, "month#2026-12#tool#web_search", "cost_usd") == Decimal("0.007005")


def test_invocation_completed_costs_nothing() -> None:
    event = InvocationCompleted(
        event_id=stable_event_id("req-1", "invocation"),
        event_time=datetime(2026, 3, 1, tzinfo=UTC),
        tenant_id=TENANT,
        tier="basic",
        user_id="user-a",
        request_id="req-1",
        status="failed",
        latency_ms=10,
        session_id="session-1",
        runtime_session_id="runtime-session-0123456789abcdef0123",
    )
    rated = rate_event(event, default_catalog())
    assert rated.priced is True
    assert rated.amount_usd == Decimal(0)
    assert rated.item == "invocation"


def test_amount_quantum_is_twelve_places() -> None:
    assert Decimal("1e-12") == AMOUNT_QUANTUM
    assert quantize_amount(Decimal("0.1234567890125")) == Decimal("0.123456789012")
    assert quantize_amount(Decimal("0.1234567890135")) == Decimal("0.123456789014")


def test_runtime_amount_rounded_to_quantum() -> None:
    # 1 vCPU-second at 0.0895 USD per vCPU-hour is 0.0000248611... USD, a repeating decimal.
    rated = rate_event(runtime_usage(Decimal(1), Decimal(0)), default_catalog())
    assert rated.amount_usd == Decimal("0.000024861111")
    assert rated.amount_usd.as_tuple().exponent == -12


@pytest.mark.parametrize(
    ("vcpu_seconds", "expected"),
    [
        pytest.param("1", "0E-12", id="half-to-even-zero"),
        pytest.param("3", "2E-12", id="half-up-to-even"),
        pytest.param("5", "2E-12", id="half-down-to-even"),
        pytest.param("7", "4E-12", id="half-up-to-four"),
    ],
)
def test_runtime_amount_rounds_half_even(vcpu_seconds: str, expected: str) -> None:
    # 1.8e-9 USD per vCPU-hour is 5e-13 USD per vCPU-second: half of AMOUNT_QUANTUM.
    catalog = catalog_with_runtime_price("0.0000000018")
    rated = rate_event(runtime_usage(Decimal(vcpu_seconds), Decimal(0)), catalog)
    assert rated.amount_usd == Decimal(expected)
    assert type(rated.amount_usd) is Decimal


def test_runtime_memory_priced_per_gb_hour() -> None:
    rated = rate_event(runtime_usage(Decimal(0), Decimal(3600)), default_catalog())
    assert rated.amount_usd == Decimal("0.00945")
    assert rated.unit_prices == {"vcpu_hour": Decimal("0.0895"), "gb_hour": Decimal("0.00945")}


def test_memory_events_priced_per_thousand() -> None:
    rated = rate_event(memory_usage(3), default_catalog())
    assert rated.priced is True
    assert rated.item == "agentcore.memory"
    assert rated.amount_usd == Decimal("0.00075")
    assert rated.amount_usd == quantize_amount(rated.amount_usd)
    assert rated.quantities == {"events": Decimal(3)}
    assert rated.unit_prices == {"per_thousand": Decimal("0.25")}
    assert_exact_decimals(rated)


def test_memory_before_catalog_start_unpriced() -> None:
    event = memory_usage(3, event_time=datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC))
    rated = rate_event(event, default_catalog())
    assert rated.priced is False
    assert rated.amount_usd == Decimal(0)
    assert rated.unpriced_reason is not None
    assert "agentcore.memory" in rated.unpriced_reason
    assert rated.quantities == {"events": Decimal(3)}


def test_unpriced_memory_recorded_and_counted(stack: LedgerStack) -> None:
    event = memory_usage(2, event_time=datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC))
    stack.ledger.record([rate_event(event, default_catalog())])
    [entry] = stack.ledger_entries()
    assert entry["priced"] is False
    assert stack.counter(TENANT, "month#2025-12", "unpriced_events") == Decimal(1)
    assert stack.counter(TENANT, "month#2025-12", "memory_events") == Decimal(2)
    assert stack.counter(TENANT, "month#2025-12", "cost_usd") == Decimal(0)
