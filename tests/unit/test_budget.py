"""Monthly budgets: hard-cap reservations under concurrency, and threshold alerts (moto)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from moto import mock_aws

from agentpool.budget import (
    HOLD_TIMEOUT,
    RESERVATION_TIMEOUT,
    BudgetAlerts,
    BudgetExceededError,
    BudgetGuard,
    ThresholdCrossing,
    WorstCase,
    crossed_thresholds,
    current_month,
    held_amounts,
)
from agentpool.ledger import Ledger
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import RatedEvent, rate_event
from agentpool.tiers import TIERS
from agentpool.usage import TokenUsage
from agentpool_dev.moto_atomic import serialize_dynamodb_writes
from tests.unit.pricing_support import (
    LEDGER_TABLE,
    TOTALS_TABLE,
    LedgerStack,
    catalog_without_web_search,
    model_usage,
    set_fake_credentials,
)

TENANT = "acme"
# $0.15 per million input and output tokens in the shipped catalog.
MODEL_ID = "mistral.ministral-3-8b-instruct"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerStack]:
    set_fake_credentials(monkeypatch)
    serialize_dynamodb_writes()
    with mock_aws():
        yield LedgerStack()


def spend(stack: LedgerStack, amount: str) -> None:
    """Add a recorded amount to the tenant's month, as the ledger does."""
    stack.totals_table.update_item(
        Key={"pk": TENANT, "sk": f"month#{current_month()}"},
        UpdateExpression="ADD cost_usd :a, committed_usd :a",
        ExpressionAttributeValues={":a": Decimal(amount)},
    )


def test_parallel_requests_admitted_within_budget(stack: LedgerStack) -> None:
    spend(stack, "9.95")  # $0.05 left of $10
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    start = threading.Barrier(8)

    def attempt(index: int) -> bool:
        start.wait()
        try:
            guard.reserve(TENANT, f"req-{index}", Decimal("0.02"), Decimal("10"))
        except BudgetExceededError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = list(pool.map(attempt, range(8)))
    assert admitted.count(True) == 2
    month = stack.totals(TENANT, f"month#{current_month()}")
    assert month["committed_usd"] == Decimal("9.99")
    assert month["reserved_usd"] == Decimal("0.04")


def test_settle_without_events_frees_reservation(stack: LedgerStack) -> None:
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    reservation = guard.reserve(TENANT, "req-1", Decimal("0.02"), Decimal("10"))
    assert guard.settle(reservation, {}) is True
    assert guard.settle(reservation, {}) is False
    month = stack.totals(TENANT, f"month#{current_month()}")
    assert month["committed_usd"] == Decimal(0)
    assert month["reserved_usd"] == Decimal(0)
    assert month["held_usd"] == Decimal(0)
    assert stack.totals(TENANT, "reservation#req-1")["state"] == "settled"


def test_settle_frees_budget(stack: LedgerStack) -> None:
    spend(stack, "9.97")
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    first = guard.reserve(TENANT, "req-1", Decimal("0.02"), Decimal("10"))
    with pytest.raises(BudgetExceededError):
        guard.reserve(TENANT, "req-2", Decimal("0.02"), Decimal("10"))
    guard.settle(first, {})
    guard.reserve(TENANT, "req-3", Decimal("0.02"), Decimal("10"))


def rated_request(request_id: str, input_tokens: int, output_tokens: int) -> RatedEvent:
    """Rate a model usage event of the current month at the default catalog's prices."""
    event = model_usage(
        TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens),
        MODEL_ID,
        request_id=request_id,
        tenant_id=TENANT,
        event_time=datetime.now(UTC),
    )
    return rate_event(event, default_catalog())


def test_hold_blocks_until_ledger_records(stack: LedgerStack) -> None:
    budget = Decimal("0.05")
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    # 100,000 input and 100,000 output tokens at $0.15 per million each: $0.03.
    rated = rated_request("req-1", 100_000, 100_000)
    assert rated.amount_usd == Decimal("0.03")
    first = guard.reserve(TENANT, "req-1", Decimal("0.04"), budget)

    assert guard.settle(first, held_amounts([rated])) is True
    month = stack.totals(TENANT, f"month#{current_month()}")
    assert month["committed_usd"] == Decimal("0.03")
    assert month["held_usd"] == Decimal("0.03")
    assert month["reserved_usd"] == Decimal(0)
    with pytest.raises(BudgetExceededError):
        guard.reserve(TENANT, "req-2", Decimal("0.03"), budget)

    assert stack.ledger.record([rated]).recorded == [rated.event.event_id]
    assert stack.ledger.record([rated]).duplicates == [rated.event.event_id]
    month = stack.totals(TENANT, f"month#{current_month()}")
    assert month["cost_usd"] == Decimal("0.03")
    assert month["committed_usd"] == Decimal("0.03")
    assert month["held_usd"] == Decimal(0)
    hold = stack.totals(TENANT, "reservation#req-1")
    assert hold["state"] == "held"
    assert hold["pending_usd"] == {}
    with pytest.raises(BudgetExceededError):
        guard.reserve(TENANT, "req-2", Decimal("0.03"), budget)
    guard.reserve(TENANT, "req-3", Decimal("0.02"), budget)
    assert stack.counter(TENANT, f"month#{current_month()}", "committed_usd") == budget


def test_expired_hold_frees_budget_once(stack: LedgerStack) -> None:
    budget = Decimal("0.05")
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    rated = rated_request("req-1", 100_000, 100_000)
    started = datetime.now(UTC) - HOLD_TIMEOUT - timedelta(seconds=1)
    first = guard.reserve(TENANT, "req-1", Decimal("0.04"), budget, now=started)
    guard.settle(first, held_amounts([rated]), now=started)

    # The events never arrived in time, so the admission expires the hold.
    guard.reserve(TENANT, "req-2", Decimal("0.03"), budget)
    assert stack.totals(TENANT, "reservation#req-1")["state"] == "expired"
    assert stack.counter(TENANT, f"month#{current_month()}", "committed_usd") == Decimal("0.03")

    # Events of an expired hold are recorded like any other, once.
    stack.ledger.record([rated])
    month = stack.totals(TENANT, f"month#{current_month()}")
    assert month["cost_usd"] == Decimal("0.03")
    assert month["committed_usd"] == Decimal("0.06")
    assert month["held_usd"] == Decimal(0)


def test_fresh_reservation_not_expired(stack: LedgerStack) -> None:
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    guard.reserve(TENANT, "req-1", Decimal("0.04"), Decimal("0.05"))
    with pytest.raises(BudgetExceededError):
        guard.reserve(TENANT, "req-2", Decimal("0.02"), Decimal("0.05"))
    assert stack.totals(TENANT, "reservation#req-1")["state"] == "open"


def test_stale_open_reservation_expired(stack: LedgerStack) -> None:
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    started = datetime.now(UTC) - RESERVATION_TIMEOUT - timedelta(seconds=1)
    guard.reserve(TENANT, "req-1", Decimal("0.04"), Decimal("0.05"), now=started)
    guard.reserve(TENANT, "req-2", Decimal("0.02"), Decimal("0.05"))
    month = stack.totals(TENANT, f"month#{current_month()}")
    assert month["committed_usd"] == Decimal("0.02")
    assert month["reserved_usd"] == Decimal("0.02")


def test_reserve_exactly_remaining_admitted(stack: LedgerStack) -> None:
    spend(stack, "9.98")
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    guard.reserve(TENANT, "req-1", Decimal("0.02"), Decimal("10"))
    with pytest.raises(BudgetExceededError):
        guard.reserve(TENANT, "req-2", Decimal("0.000000000001"), Decimal("10"))


def test_same_request_not_reserved_twice(stack: LedgerStack) -> None:
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    first = guard.reserve(TENANT, "req-1", Decimal("0.02"), Decimal("10"))
    again = guard.reserve(TENANT, "req-1", Decimal("0.02"), Decimal("10"))
    assert again == first
    assert stack.totals(TENANT, f"month#{current_month()}")["reserved_usd"] == Decimal("0.02")


def test_worst_case_above_budget_rejected(stack: LedgerStack) -> None:
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    with pytest.raises(BudgetExceededError):
        guard.reserve(TENANT, "req-1", Decimal("11"), Decimal("10"))
    assert stack.totals(TENANT, f"month#{current_month()}") == {}


# A bound small enough to work out by hand.
SMALL_BOUND = WorstCase(
    max_model_calls=2,
    context_bytes=1000,
    max_output_tokens=500,
    max_tool_calls=3,
    max_memory_events=1,
)


def test_worst_case_cost_bound() -> None:
    bound = SMALL_BOUND
    prompt = "héllo"  # 6 UTF-8 bytes
    assert bound.input_tokens(prompt) == 2 * (6 + 1000)
    assert bound.output_tokens() == 1000
    # Tokens at $0.15 per million in and out, 3 tool calls at $0.005 and 1 Memory event at
    # $0.25 per thousand. The basic tier has no web search, so no query is in the bound.
    cost = bound.cost(prompt, default_catalog(), TIERS["basic"], datetime.now(UTC))
    assert cost == Decimal("0.0004518") + Decimal("0.000015") + Decimal("0.00025")


def test_worst_case_premium_includes_web_search() -> None:
    bound = SMALL_BOUND
    # 2,012 input tokens at $0.15 and 1,000 output tokens at $0.60 per million: 0.0009018.
    # 3 tool calls at $0.005 per thousand, and as many web search queries at $7.00 per
    # thousand: 0.000015 + 0.021. 1 Memory event at $0.25 per thousand: 0.00025.
    cost = bound.cost("héllo", default_catalog(), TIERS["premium"], datetime.now(UTC))
    assert cost == Decimal("0.0221668")


def test_default_worst_case_premium_exact() -> None:
    # 4 x (3 + 8,000) input tokens at $0.15 and 4 x 4,096 output tokens at $0.60 per million:
    # 0.0048018 + 0.0098304. 12 tool calls at $0.005 and 12 web search queries at $7.00 per
    # thousand: 0.00006 + 0.084. 1 Memory event at $0.25 per thousand: 0.00025.
    cost = WorstCase().cost("abc", default_catalog(), TIERS["premium"], datetime.now(UTC))
    assert cost == Decimal("0.0989422")


def test_worst_case_without_web_search_price() -> None:
    # Without a web search price, a web search call is recorded unpriced at 0, so the bound
    # adds nothing for its query.
    # 0.0048018 + 0.0098304 for tokens, 0.000015 for 3 tool calls, 0.00025 for Memory.
    when = datetime(2026, 3, 14, tzinfo=UTC)
    catalog = catalog_without_web_search()
    cost = WorstCase(max_tool_calls=3).cost("abc", catalog, TIERS["premium"], when)
    assert cost == Decimal("0.0148972")


def test_default_worst_case_is_agent_contract() -> None:
    bound = WorstCase()
    assert bound.max_model_calls == 4
    assert bound.max_tool_calls == 12
    assert bound.input_tokens("abc") == 4 * (3 + 8_000)
    assert bound.output_tokens() == 4 * 4_096


def test_thresholds_crossed() -> None:
    budget = Decimal("25")
    assert crossed_thresholds(TENANT, "2026-03", Decimal("19.99"), budget) == []
    assert [
        c.threshold_percent for c in crossed_thresholds(TENANT, "2026-03", Decimal("20"), budget)
    ] == [80]
    assert [
        c.threshold_percent for c in crossed_thresholds(TENANT, "2026-03", Decimal("25"), budget)
    ] == [80, 100]


def test_alert_sent_once_per_threshold(stack: LedgerStack) -> None:
    sent: list[ThresholdCrossing] = []
    alerts = BudgetAlerts(stack.client, TOTALS_TABLE, sent.append)
    month = current_month()
    spend(stack, "21")
    alerts.check(TENANT, month, Decimal("25"))
    alerts.check(TENANT, month, Decimal("25"))
    spend(stack, "5")
    alerts.check(TENANT, month, Decimal("25"))
    alerts.check(TENANT, month, Decimal("25"))
    assert [c.threshold_percent for c in sent] == [80, 100]


def test_parallel_alert_checks_send_once(stack: LedgerStack) -> None:
    sent: list[ThresholdCrossing] = []
    alerts = BudgetAlerts(stack.client, TOTALS_TABLE, sent.append)
    spend(stack, "30")
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda _: alerts.check(TENANT, current_month(), Decimal("25")), range(6)))
    assert sorted(c.threshold_percent for c in sent) == [80, 100]


def test_failed_publish_alert_retried_after_claim_timeout(stack: LedgerStack) -> None:
    def failing(_crossing: ThresholdCrossing) -> None:
        raise RuntimeError("bus unavailable")

    spend(stack, "30")
    with pytest.raises(RuntimeError):
        BudgetAlerts(stack.client, TOTALS_TABLE, failing).check(
            TENANT, current_month(), Decimal("25")
        )
    sent: list[ThresholdCrossing] = []
    alerts = BudgetAlerts(stack.client, TOTALS_TABLE, sent.append)
    alerts.check(TENANT, current_month(), Decimal("25"))
    # The 80 % claim is fresh, so another aggregator may still be sending it.
    assert [c.threshold_percent for c in sent] == [100]
    stack.totals_table.update_item(
        Key={"pk": TENANT, "sk": f"budget-alert#{current_month()}#80"},
        UpdateExpression="SET claimed_at = :old",
        ExpressionAttributeValues={":old": "2000-01-01T00:00:00+00:00"},
    )
    alerts.check(TENANT, current_month(), Decimal("25"))
    assert [c.threshold_percent for c in sent] == [100, 80]


class ExpireBeforeFirstTransaction:
    """A DynamoDB client that expires the tenant's stale holds just before the first write."""

    def __init__(self, client: Any, guard: BudgetGuard) -> None:
        self._client = client
        self._guard = guard
        self.expired = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **params: Any) -> Any:
        if self.expired == 0:
            self.expired = self._guard.expire_stale(TENANT)
        return self._client.transact_write_items(**params)


def test_hold_expired_during_ledger_write(stack: LedgerStack) -> None:
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    rated = rated_request("req-1", 100_000, 100_000)
    started = datetime.now(UTC) - HOLD_TIMEOUT - timedelta(seconds=1)
    first = guard.reserve(TENANT, "req-1", Decimal("0.04"), Decimal("0.05"), now=started)
    guard.settle(first, held_amounts([rated]), now=started)
    client = ExpireBeforeFirstTransaction(stack.client, guard)

    result = Ledger(client, LEDGER_TABLE, TOTALS_TABLE).record([rated])

    month = stack.totals(TENANT, f"month#{current_month()}")
    assert client.expired == 1
    assert stack.totals(TENANT, "reservation#req-1")["state"] == "expired"
    assert result.recorded == [rated.event.event_id]
    # Removed by the expiry, so the ledger must not remove it again: 0.03 - 0.03 + 0.03.
    assert month["cost_usd"] == Decimal("0.03")
    assert month["committed_usd"] == Decimal("0.03")
    assert month["held_usd"] == Decimal(0)
