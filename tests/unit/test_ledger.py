"""The ledger and totals in DynamoDB (moto, tables built from template.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from agentpool import ledger as ledger_module
from agentpool.ledger import (
    MAX_ATTEMPTS,
    MAX_TRANSACTION_ITEMS,
    Ledger,
    totals_for,
)
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import RatedEvent, rate_event
from agentpool.tier_shards import TIER_SHARDS, tier_partition
from agentpool.usage import TokenUsage
from tests.unit.pricing_support import (
    EVENT_TIME,
    TENANT,
    TIER,
    LedgerStack,
    memory_usage,
    model_usage,
    set_fake_credentials,
    tool_invoked,
)

MODEL = "openai.gpt-oss-120b-1:0"


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerStack]:
    set_fake_credentials(monkeypatch)
    with mock_aws():
        yield LedgerStack()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module.time, "sleep", lambda _seconds: None)


def rated_usage(
    index: int,
    *,
    tokens: int = 1000,
    user_id: str = "user-a",
    event_time: datetime = EVENT_TIME,
    tenant_id: str = TENANT,
) -> RatedEvent:
    event = model_usage(
        TokenUsage(input_tokens=tokens, output_tokens=tokens // 2),
        MODEL,
        request_id=f"req-{index}",
        user_id=user_id,
        event_time=event_time,
        tenant_id=tenant_id,
    )
    return rate_event(event, default_catalog())


def transaction_sizes(stack: LedgerStack) -> list[int]:
    sizes: list[int] = []
    stack.client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: sizes.append(len(params["TransactItems"])),
    )
    return sizes


def test_record_new_events(stack: LedgerStack) -> None:
    batch = [rated_usage(1), rated_usage(2)]
    result = stack.ledger.record(batch)
    assert result.recorded == [r.event.event_id for r in batch]
    assert result.duplicates == []
    assert result.failed == []
    assert len(stack.ledger_entries()) == 2


def test_duplicate_inside_batch_counts_once(stack: LedgerStack) -> None:
    first, second = rated_usage(1), rated_usage(2)
    result = stack.ledger.record([first, second, first])
    assert result.duplicates == [first.event.event_id]
    assert stack.counter(TENANT, "month#2026-03", "events") == Decimal(2)
    assert stack.counter(TENANT, "month#2026-03", "cost_usd") == first.amount_usd * 2


def test_duplicate_across_batches_counts_once(stack: LedgerStack) -> None:
    first, second, third = rated_usage(1), rated_usage(2), rated_usage(3)
    stack.ledger.record([first, second])
    result = stack.ledger.record([second, third, first])
    assert result.recorded == [third.event.event_id]
    assert sorted(result.duplicates) == sorted([first.event.event_id, second.event.event_id])
    assert stack.counter(TENANT, "month#2026-03", "events") == Decimal(3)
    assert stack.counter(TENANT, "month#2026-03", "input_tokens") == Decimal(3000)
    assert len(stack.ledger_entries()) == 3


def test_whole_batch_redelivered_counts_once(stack: LedgerStack) -> None:
    batch = [rated_usage(index) for index in range(5)]
    stack.ledger.record(batch)
    result = stack.ledger.record(batch)
    assert result.recorded == []
    assert len(result.duplicates) == 5
    assert stack.counter(TENANT, "month#2026-03", "events") == Decimal(5)


def test_large_batch_split_into_transactions(stack: LedgerStack) -> None:
    sizes = transaction_sizes(stack)
    batch = [rated_usage(index, user_id=f"user-{index % 7}") for index in range(150)]
    result = stack.ledger.record(batch)
    assert len(result.recorded) == 150
    assert len(set(result.recorded)) == 150
    assert result.failed == []
    assert len(sizes) > 1
    assert max(sizes) <= MAX_TRANSACTION_ITEMS
    assert stack.ledger.transactions == len(sizes)
    assert len(stack.ledger_entries()) == 150
    assert stack.counter(TENANT, "month#2026-03", "events") == Decimal(150)


def test_large_batch_redelivered_with_new_events(stack: LedgerStack) -> None:
    batch = [rated_usage(index) for index in range(150)]
    stack.ledger.record(batch[:120])
    result = stack.ledger.record(batch)
    assert len(result.recorded) == 30
    assert len(result.duplicates) == 120
    assert stack.counter(TENANT, "month#2026-03", "events") == Decimal(150)
    expected_cost = sum((r.amount_usd for r in batch), Decimal(0))
    assert stack.counter(TENANT, "month#2026-03", "cost_usd") == expected_cost


def test_tier_shards_sum_to_all_events(stack: LedgerStack) -> None:
    batch = [rated_usage(index, tokens=1000 + index) for index in range(64)]
    stack.ledger.record(batch)
    expected_cost = sum((r.amount_usd for r in batch), Decimal(0))
    shards_used = {
        shard
        for shard in range(TIER_SHARDS)
        if stack.totals(tier_partition(TIER, shard), "month#2026-03")
    }
    assert len(shards_used) > 1
    assert stack.tier_counter(TIER, "month#2026-03", "events") == Decimal(64)
    assert stack.tier_counter(TIER, "month#2026-03", "cost_usd") == expected_cost
    assert stack.tier_counter(TIER, "day#2026-03-14", "cost_usd") == expected_cost
    assert stack.tier_counter(TIER, f"month#2026-03#model#{MODEL}", "cost_usd") == expected_cost


def test_totals_by_day_month_user_model(stack: LedgerStack) -> None:
    day_one = rated_usage(1, tokens=1000, user_id="user-a")
    day_one_b = rated_usage(2, tokens=3000, user_id="user-b")
    day_two = rated_usage(3, tokens=5000, user_id="user-a", event_time=EVENT_TIME + timedelta(1))
    next_month = rated_usage(4, tokens=7000, event_time=datetime(2026, 4, 1, tzinfo=UTC))
    tool = rate_event(tool_invoked(), default_catalog())
    stack.ledger.record([day_one, day_one_b, day_two, next_month, tool])

    march = "month#2026-03"
    assert day_one.amount_usd == Decimal("0.00045")
    assert stack.counter(TENANT, "day#2026-03-14", "cost_usd") == Decimal("0.001805")
    assert stack.counter(TENANT, "day#2026-03-15", "cost_usd") == Decimal("0.00225")
    assert stack.counter(TENANT, march, "cost_usd") == Decimal("0.004055")
    assert stack.counter(TENANT, "month#2026-04", "cost_usd") == Decimal("0.00315")
    assert stack.counter(TENANT, f"{march}#user#user-a", "cost_usd") == Decimal("0.002705")
    assert stack.counter(TENANT, f"{march}#user#user-b", "cost_usd") == Decimal("0.00135")
    assert stack.counter(TENANT, f"{march}#model#{MODEL}", "cost_usd") == Decimal("0.00405")
    assert stack.counter(TENANT, f"{march}#model#{MODEL}", "output_tokens") == Decimal(4500)
    assert stack.counter(TENANT, f"{march}#tool#document_search", "tool_calls") == Decimal(1)
    assert stack.counter(TENANT, march, "model_calls") == Decimal(3)
    assert stack.counter(TENANT, march, "events") == Decimal(4)


def test_memory_events_counted_in_totals(stack: LedgerStack) -> None:
    stack.ledger.record([rate_event(memory_usage(3), default_catalog())])

    march = "month#2026-03"
    breakdown = f"{march}#memory#agentcore"
    assert stack.counter(TENANT, march, "memory_events") == Decimal(3)
    assert stack.counter(TENANT, march, "cost_usd") == Decimal("0.00075")
    assert stack.counter(TENANT, "day#2026-03-14", "memory_events") == Decimal(3)
    assert stack.counter(TENANT, breakdown, "memory_events") == Decimal(3)
    assert stack.counter(TENANT, breakdown, "cost_usd") == Decimal("0.00075")
    assert stack.tier_counter(TIER, breakdown, "memory_events") == Decimal(3)
    assert stack.counter(TENANT, march, "events") == Decimal(1)


def test_tenants_totals_kept_apart(stack: LedgerStack) -> None:
    stack.ledger.record([rated_usage(1, tenant_id="acme"), rated_usage(2, tenant_id="globex")])
    assert stack.counter("acme", "month#2026-03", "events") == Decimal(1)
    assert stack.counter("globex", "month#2026-03", "events") == Decimal(1)


def test_ledger_entry_fields(stack: LedgerStack) -> None:
    rated = rated_usage(1)
    stack.ledger.record([rated])
    [entry] = stack.ledger_entries()
    assert entry["tenant_id"] == TENANT
    assert entry["event_id"] == rated.event.event_id
    assert entry["event_time"] == "2026-03-14T09:30:00Z"
    assert entry["month"] == "2026-03"
    assert entry["amount_usd"] == rated.amount_usd
    assert entry["priced"] is True
    assert entry["quantities"]["input_tokens"] == Decimal(1000)
    assert entry["unit_prices"]["output"] == Decimal("0.60")


def test_totals_for_keys_are_independent() -> None:
    totals = totals_for(rated_usage(1))
    first, second = list(totals.values())[:2]
    first["events"] += 1
    assert second["events"] == Decimal(1)


class FakeDynamoDB:
    """A client whose TransactWriteItems fails as `fail` decides, then succeeds."""

    def __init__(self, fail: Any) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    def query(self, **params: Any) -> dict[str, Any]:
        return {"Items": []}  # no month is issued

    def batch_get_item(self, **params: Any) -> dict[str, Any]:
        return {"Responses": {}}  # no request has a budget hold

    def transact_write_items(self, **params: Any) -> dict[str, Any]:
        ids = [a["Put"]["Item"]["event_id"]["S"] for a in params["TransactItems"] if "Put" in a]
        self.calls.append(ids)
        error = self.fail(ids, len(self.calls))
        if error:
            raise ClientError(error, "TransactWriteItems")
        return {}


def cancelled(reasons: list[str]) -> dict[str, Any]:
    return {
        "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
        "CancellationReasons": [{"Code": code} for code in reasons],
    }


@pytest.mark.usefixtures("no_sleep")
def test_conflict_retried_then_recorded() -> None:
    client = FakeDynamoDB(
        lambda ids, call: cancelled(["TransactionConflict"]) if call < MAX_ATTEMPTS else None
    )
    result = Ledger(client, "ledger", "totals").record([rated_usage(1)])
    assert len(result.recorded) == 1
    assert len(client.calls) == MAX_ATTEMPTS


@pytest.mark.usefixtures("no_sleep")
def test_conflict_after_max_attempts_failed() -> None:
    client = FakeDynamoDB(lambda ids, call: cancelled(["TransactionConflict"]))
    batch = [rated_usage(1), rated_usage(2)]
    result = Ledger(client, "ledger", "totals").record(batch)
    assert result.failed == [r.event.event_id for r in batch]
    assert result.recorded == []
    assert len(client.calls) == MAX_ATTEMPTS


@pytest.mark.usefixtures("no_sleep")
def test_throttling_retried() -> None:
    throttled = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
    client = FakeDynamoDB(lambda ids, call: throttled if call == 1 else None)
    result = Ledger(client, "ledger", "totals").record([rated_usage(1)])
    assert len(result.recorded) == 1


@pytest.mark.usefixtures("no_sleep")
def test_duplicates_use_no_attempt() -> None:
    batch = [rated_usage(index) for index in range(MAX_ATTEMPTS + 1)]
    bad_ids = [r.event.event_id for r in batch]

    def fail(ids: list[str], call: int) -> dict[str, Any] | None:
        # Report one more duplicate on each call, as concurrent deliveries might.
        if call <= MAX_ATTEMPTS:
            return cancelled(
                ["ConditionalCheckFailed" if i == bad_ids[call - 1] else "None" for i in ids]
            )
        return None

    result = Ledger(FakeDynamoDB(fail), "ledger", "totals").record(batch)
    assert result.duplicates == bad_ids[:MAX_ATTEMPTS]
    assert result.recorded == bad_ids[MAX_ATTEMPTS:]
    assert result.failed == []


def test_rejected_event_fails_alone() -> None:
    batch = [rated_usage(index) for index in range(10)]
    bad = batch[6].event.event_id
    rejected = {"Error": {"Code": "ValidationException", "Message": "item too large"}}
    client = FakeDynamoDB(lambda ids, call: rejected if bad in ids else None)
    result = Ledger(client, "ledger", "totals").record(batch)
    assert result.failed == [bad]
    assert sorted(result.recorded) == sorted(r.event.event_id for r in batch if r is not batch[6])


def test_rejected_item_in_cancellation_fails_alone() -> None:
    batch = [rated_usage(index) for index in range(4)]
    bad = batch[0].event.event_id

    def fail(ids: list[str], call: int) -> dict[str, Any] | None:
        if bad not in ids:
            return None
        return cancelled(["ValidationError" if i == bad else "None" for i in ids])

    result = Ledger(FakeDynamoDB(fail), "ledger", "totals").record(batch)
    assert result.failed == [bad]
    assert len(result.recorded) == 3


def test_table_error_raised() -> None:
    missing = {"Error": {"Code": "ResourceNotFoundException", "Message": "no table"}}
    client = FakeDynamoDB(lambda ids, call: missing)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        Ledger(client, "ledger", "totals").record([rated_usage(1)])


def test_request_token_stable_for_same_events(stack: LedgerStack) -> None:
    tokens: list[str] = []
    stack.client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: tokens.append(params["ClientRequestToken"]),
    )
    batch = [rated_usage(1), rated_usage(2)]
    Ledger(stack.client, "ledger", "totals").record(batch)
    Ledger(stack.client, "ledger", "totals").record(list(batch))
    assert tokens[0] == tokens[1]
    assert 1 <= len(tokens[0]) <= 36
