"""Monthly budgets: hard-cap reservations under concurrency, and threshold alerts (moto)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from moto import mock_aws

from agentpool.budget import (
    BudgetAlerts,
    BudgetExceededError,
    BudgetGuard,
    ThresholdCrossing,
    WorstCase,
    crossed_thresholds,
    current_month,
)
from agentpool.pricing.catalog import TokenPrices
from agentpool_dev.moto_atomic import serialize_dynamodb_writes
from tests.unit.pricing_support import TOTALS_TABLE, LedgerStack, set_fake_credentials

TENANT = "acme"


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


def test_reservation_released_once(stack: LedgerStack) -> None:
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    reservation = guard.reserve(TENANT, "req-1", Decimal("0.02"), Decimal("10"))
    assert guard.release(reservation) is True
    assert guard.release(reservation) is False
    month = stack.totals(TENANT, f"month#{current_month()}")
    assert month["committed_usd"] == Decimal(0)
    assert month["reserved_usd"] == Decimal(0)


def test_release_frees_budget(stack: LedgerStack) -> None:
    spend(stack, "9.97")
    guard = BudgetGuard(stack.client, TOTALS_TABLE)
    first = guard.reserve(TENANT, "req-1", Decimal("0.02"), Decimal("10"))
    with pytest.raises(BudgetExceededError):
        guard.reserve(TENANT, "req-2", Decimal("0.02"), Decimal("10"))
    guard.release(first)
    guard.reserve(TENANT, "req-3", Decimal("0.02"), Decimal("10"))


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


def test_worst_case_cost_bound() -> None:
    prices = TokenPrices.model_validate({"input": "0.15", "output": "0.60"})
    bound = WorstCase(max_model_calls=2, context_tokens=1000, max_output_tokens=500)
    prompt = "héllo"  # 6 UTF-8 bytes
    assert bound.input_tokens(prompt) == 2 * (6 + 1000)
    assert bound.output_tokens() == 1000
    assert bound.cost(prompt, prices) == Decimal("0.0009018")


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
