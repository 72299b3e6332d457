"""Issued months, their marks and late events billed as adjustments (moto, template tables)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from agentpool import billing_periods
from agentpool.billing_periods import (
    ISSUED_MARK,
    ISSUED_PARTITION,
    MAX_MARK_ATTEMPTS,
    BillingPeriods,
    billing_month,
    next_month,
)
from agentpool.tier_shards import TIER_SHARDS, tier_partition
from agentpool.tiers import TIERS
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


def test_mark_issued_marks_every_tier_shard(stack: LedgerStack) -> None:
    assert BillingPeriods(stack.client, "totals").mark_issued("2026-03", tiers={"legacy"})
    issued_at = stack.totals(ISSUED_PARTITION, "month#2026-03")[ISSUED_MARK]
    for tier in [*TIERS, "legacy"]:
        for shard in range(TIER_SHARDS):
            item = stack.totals(tier_partition(tier, shard), "month#2026-03")
            assert set(item) == {"pk", "sk", ISSUED_MARK}, (tier, shard)
            assert item[ISSUED_MARK] == issued_at, (tier, shard)


def test_mark_issued_again_changes_no_mark(stack: LedgerStack) -> None:
    periods = BillingPeriods(stack.client, "totals")
    periods.mark_issued("2026-03")
    before = stack.totals_table.scan()["Items"]
    assert periods.mark_issued("2026-03", tiers={"legacy"}) is False
    assert stack.totals_table.scan()["Items"] == before


class ConflictingDynamoDB:
    """A client whose TransactWriteItems is cancelled by a conflict `conflicts` times."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.calls = 0

    def transact_write_items(self, **params: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.conflicts:
            reasons = [{"Code": "None"}] + [{"Code": "TransactionConflict"}] * (
                len(params["TransactItems"]) - 1
            )
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )
        return {}


def test_mark_issued_retries_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billing_periods.time, "sleep", lambda _seconds: None)
    client = ConflictingDynamoDB(conflicts=MAX_MARK_ATTEMPTS - 1)
    assert BillingPeriods(client, "totals").mark_issued("2026-03") is True
    assert client.calls == MAX_MARK_ATTEMPTS


def test_mark_issued_raises_lasting_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billing_periods.time, "sleep", lambda _seconds: None)
    client = ConflictingDynamoDB(conflicts=MAX_MARK_ATTEMPTS)
    with pytest.raises(ClientError, match="TransactionCanceledException"):
        BillingPeriods(client, "totals").mark_issued("2026-03")
    assert client.calls == MAX_MARK_ATTEMPTS


def test_no_item_in_every_transaction(stack: LedgerStack) -> None:
    actions: list[list[dict[str, Any]]] = []
    stack.client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: actions.append(params["TransactItems"]),
    )
    for index in range(40):
        tenant = f"tenant-{index % 5}"
        stack.ledger.record([rated_usage(index, tenant_id=tenant)])
    assert len(actions) == 40
    keys = [{_key_of(action) for action in transaction} for transaction in actions]
    assert set.intersection(*keys) == set()
    assert all("ConditionCheck" not in action for t in actions for action in t)
    # Each transaction's tier shard month total is the item that checks the issued mark.
    for transaction in actions:
        [checked] = [
            a["Update"] for a in transaction if "ConditionExpression" in a.get("Update", {})
        ]
        assert checked["Key"]["sk"] == {"S": "month#2026-03"}
        assert checked["Key"]["pk"]["S"].startswith(f"tier#{TIER}#")
        assert checked["ConditionExpression"] == f"attribute_not_exists({ISSUED_MARK})"


def _key_of(action: dict[str, Any]) -> tuple[str, ...]:
    [(kind, body)] = action.items()
    key = body["Item"] if kind == "Put" else body["Key"]
    return tuple(
        str(value)
        for name, value in sorted(key.items())
        if name in {"pk", "sk", "tenant_id", "event_id"}
    )
