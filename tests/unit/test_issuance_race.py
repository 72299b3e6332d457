"""Issuing a month while its events are recorded: each event is billed exactly once.

`Interleaved` wraps the DynamoDB client of one side and runs the other side once, right before
the side's n-th DynamoDB call. Each case starts from empty tables in moto, and n goes from the
first call to one past the last. Whatever the order, every event must be either in the issued
March report or an April adjustment of March, never both and never neither, and March's totals
must not move after the report read them.

The events belong to three tenants of three tiers, one of them a tier that `agentpool.tiers`
does not define. So both ways of checking the issued mark are interleaved: the condition on
the tier shard's month total, and the ConditionCheck on the month item. The events of the
defined tiers come in one batch and the others in a second batch, as the aggregator receives
them in separate SQS batches.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from agentpool.billing.run import ReportRun, ReportTargets, RunResult
from agentpool.ledger import Ledger
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import RatedEvent, rate_event
from agentpool.registry import Tenant
from agentpool.tiers import TIERS
from agentpool.usage import TokenUsage
from tests.unit.fast_moto import fast_transactions_fixture  # noqa: F401 - a fixture
from tests.unit.pricing_support import (
    LEDGER_TABLE,
    TOTALS_TABLE,
    LedgerStack,
    model_usage,
    set_fake_credentials,
)

MONTH = "2026-03"
NEXT = "2026-04"
BUCKET = "reports-bucket"
MODEL = "mistral.ministral-3-8b-instruct"
TENANTS = [
    Tenant(tenant_id="acme", name="Acme", tier="basic", status="active"),
    Tenant(tenant_id="globex", name="Globex", tier="premium", status="active"),
    # A tier that an older registry item may still name, with no entry in agentpool.tiers.
    Tenant(tenant_id="hooli", name="Hooli", tier="legacy", status="active"),
]


class Interleaved:
    """A DynamoDB client that runs `action` once, right before its `at`-th API call."""

    def __init__(self, client: Any, at: int, action: Callable[[], None]) -> None:
        self._client = client
        self._at = at
        self._action = action
        self.calls = 0
        self.operations: list[str] = []
        self.action_ran = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in self._client.meta.method_to_api_mapping:
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.operations.append(name)
            if self.calls == self._at:
                self.run_action()
            return method(*args, **kwargs)

        return call

    def run_action(self) -> None:
        assert not self.action_ran
        self.action_ran = True
        self._action()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch, fast_transactions: None) -> None:
    set_fake_credentials(monkeypatch)


def march_events(per_tenant: int) -> list[RatedEvent]:
    catalog = default_catalog()
    rated = []
    for tenant in TENANTS:
        for index in range(per_tenant):
            event = model_usage(
                TokenUsage(input_tokens=1000 + index, output_tokens=200),
                MODEL,
                request_id=f"{tenant.tenant_id}-req-{index}",
                user_id=f"user-{index % 3}",
                event_time=datetime(2026, 3, 1 + index, 10, tzinfo=UTC),
                tenant_id=tenant.tenant_id,
                tier=tenant.tier,
            )
            rated.append(rate_event(event, catalog))
    return rated


def batches_of(events: list[RatedEvent]) -> list[list[RatedEvent]]:
    defined = [r for r in events if r.event.tier in TIERS]
    return [defined, [r for r in events if r.event.tier not in TIERS]]


def record_all(ledger: Ledger, events: list[RatedEvent]) -> None:
    for batch in batches_of(events):
        result = ledger.record(batch)
        assert result.failed == []
        assert sorted(result.recorded) == sorted(r.event.event_id for r in batch)


def report_run(client: Any) -> ReportRun:
    return ReportRun(
        client,
        boto3.client("s3"),
        None,
        ReportTargets(LEDGER_TABLE, TOTALS_TABLE, BUCKET, None),
        clock=lambda: datetime(2026, 4, 1, 2, tzinfo=UTC),
    )


def new_stack() -> LedgerStack:
    stack = LedgerStack()
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return stack


def billed_sum(entries: list[dict[str, Any]], month: str, **match: str) -> Decimal:
    return sum(
        (
            e["amount_usd"]
            for e in entries
            if e["month"] == month and all(e[k] == v for k, v in match.items())
        ),
        Decimal(0),
    )


def assert_billed_once(
    stack: LedgerStack, batch: list[RatedEvent], issued: RunResult, at: int
) -> tuple[int, int]:
    """Check that each event is in the issued report or an adjustment, and count each kind."""
    entries = stack.ledger_entries()
    ids = [e["event_id"] for e in entries]
    assert sorted(ids) == sorted(r.event.event_id for r in batch), at
    assert {e["month"] for e in entries} <= {MONTH, NEXT}, at
    adjusted = [e for e in entries if e["month"] == NEXT]
    assert all(e["adjustment_of_month"] == MONTH for e in adjusted), at
    in_march = [e for e in entries if e["month"] == MONTH]
    assert all("adjustment_of_month" not in e for e in in_march), at
    assert issued.issued is True

    # The issued report contains exactly the entries billed in March, and March did not move.
    for report in issued.reports:
        tenant = report.tenant_id
        march = billed_sum(entries, MONTH, tenant_id=tenant)
        assert Decimal(report.total_usd.exact) == march, (at, tenant)
        assert report.counters.get("events", 0) == sum(
            1 for e in in_march if e["tenant_id"] == tenant
        ), (at, tenant)
        assert stack.counter(tenant, f"month#{MONTH}", "cost_usd") == march, (at, tenant)
        april = billed_sum(entries, NEXT, tenant_id=tenant)
        adjustment = f"month#{NEXT}#adjustment#{MONTH}"
        assert stack.counter(tenant, adjustment, "cost_usd") == april, (at, tenant)
        assert stack.counter(tenant, f"month#{NEXT}", "cost_usd") == april, (at, tenant)
    for summary in issued.tiers:
        march = billed_sum(entries, MONTH, tier=summary.tier)
        assert Decimal(summary.total_usd.exact) == march, (at, summary.tier)
        assert stack.tier_counter(summary.tier, f"month#{MONTH}", "cost_usd") == march
    total = sum((r.amount_usd for r in batch), Decimal(0))
    assert billed_sum(entries, MONTH) + billed_sum(entries, NEXT) == total, at
    return len(in_march), len(adjusted)


def assert_redelivery_changes_nothing(stack: LedgerStack, batch: list[RatedEvent]) -> None:
    before = stack.totals_table.scan()["Items"]
    for part in batches_of(batch):
        result = stack.ledger.record(part)
        assert sorted(result.duplicates) == sorted(r.event.event_id for r in part)
        assert result.recorded == []
    assert stack.totals_table.scan()["Items"] == before


@pytest.mark.usefixtures("credentials")
def test_issuing_at_each_step_of_recording() -> None:
    assert "legacy" not in TIERS
    # Enough events that the batch of the defined tiers takes two transactions.
    batch = march_events(24)
    outcomes: list[tuple[int, int]] = []
    at = 1
    while True:
        with mock_aws():
            stack = new_stack()
            issued: list[RunResult] = []

            def issue(stack: LedgerStack = stack, issued: list[RunResult] = issued) -> None:
                issued.append(report_run(stack.client).run(MONTH, TENANTS))

            client = Interleaved(stack.client, at, issue)
            ledger = Ledger(client, LEDGER_TABLE, TOTALS_TABLE)
            record_all(ledger, batch)
            last_case = not client.action_ran
            if last_case:
                client.run_action()  # issued after the last call of the recording
            # The first batch takes two transactions and the second one.
            assert client.operations.count("transact_write_items") >= 3, at
            outcomes.append(assert_billed_once(stack, batch, issued[0], at))
            assert_redelivery_changes_nothing(stack, batch)
        if last_case:
            break
        at += 1
    # Issuing between the transactions split the events across months.
    assert len(outcomes) >= 6
    assert outcomes[0] == (0, len(batch))
    assert outcomes[-1] == (len(batch), 0)
    assert any(0 < in_march < len(batch) for in_march, _ in outcomes)


@pytest.mark.usefixtures("credentials")
def test_recording_at_each_step_of_issuing() -> None:
    # The report run makes calls per tenant and per tier shard, so each case records few events.
    batch = march_events(3)
    outcomes: list[tuple[int, int]] = []
    at = 1
    while True:
        with mock_aws():
            stack = new_stack()

            def record(stack: LedgerStack = stack) -> None:
                record_all(stack.ledger, batch)

            client = Interleaved(stack.client, at, record)
            issued = report_run(client).run(MONTH, TENANTS)
            last_case = not client.action_ran
            if last_case:
                client.run_action()  # recorded after the last call of the report run
            outcomes.append(assert_billed_once(stack, batch, issued, at))
            assert_redelivery_changes_nothing(stack, batch)
        if last_case:
            break
        at += 1
    # Recorded before the mark, the events are billed in March. After it, all are adjustments.
    assert outcomes[0] == (len(batch), 0)
    assert all(outcome == (0, len(batch)) for outcome in outcomes[1:])
    assert len(outcomes) > 3
