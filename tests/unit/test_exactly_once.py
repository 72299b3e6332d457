"""Exactly-once ledger under faults: the aggregator Lambda fed from a queue, DynamoDB in moto.

`QueueDriver` delivers the metering queue to the aggregator as Lambda's SQS event source
mapping does: batches of up to 100, partial batch responses, and a batch whose invocation
fails (a crash or a timeout) returns whole to the queue. The queue has the template's redrive
policy (3 receives, then the dead-letter queue). Faults are injected at every step: before a
ledger transaction, after it committed but before its response, in the middle of a
multi-chunk batch, after the handler returned but before the SQS delete, and as throttling.
Whatever happens, the totals must equal the sum over distinct events, to the exact Decimal.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from agentpool import ledger as ledger_module
from agentpool.billing_periods import BillingPeriods
from agentpool.events import (
    InvocationCompleted,
    MeteringEvent,
    ModelUsage,
    RuntimeUsage,
    ToolInvoked,
    stable_event_id,
)
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import RatedEvent, rate_event
from agentpool.usage import TokenUsage
from agentpool_dev.eventbridge import rule_message
from tests.unit.fast_moto import fast_transactions_fixture  # noqa: F401 - a fixture
from tests.unit.pricing_support import LedgerStack
from tests.unit.test_aggregator import FakeContext, load_app

MAX_RECEIVE_COUNT = 3
LAMBDA_BATCH_SIZE = 100
TENANTS = {"acme": "basic", "globex": "premium", "initech": "basic", "umbrella": "premium"}
MODELS = {"basic": "mistral.ministral-3-8b-instruct", "premium": "openai.gpt-oss-120b-1:0"}
UNPRICED_MODEL = "test.model-not-in-catalog"


class CrashError(Exception):
    """An injected failure of the Lambda invocation, like a timeout or an out-of-memory kill."""


class FaultyDynamoDB:
    """Wraps a DynamoDB client and fails the TransactWriteItems calls that `plan` names.

    `plan` maps the number of a TransactWriteItems call (1-based) to a fault:
    "crash-before" (the call never reaches DynamoDB), "crash-after" (it commits, then the
    invocation dies before it sees the response), "throttle" (DynamoDB throttles it) or
    "lost-response" (it commits and the response is lost, so the ledger retries it).
    """

    def __init__(self, client: Any, plan: dict[int, str]) -> None:
        self._client = client
        self.plan = plan
        self.calls = 0
        self.injected: Counter[str] = Counter()
        # Crashes are injected only while armed: the driver disarms them for a batch with a
        # message on its last receive, which a crash would send to the dead-letter queue.
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **params: Any) -> Any:
        self.calls += 1
        fault = self.plan.get(self.calls)
        if fault in ("crash-before", "crash-after") and not self.armed:
            fault = None
        if fault:
            self.injected[fault] += 1
        if fault == "crash-before":
            raise CrashError(f"crash before transaction {self.calls}")
        if fault == "throttle":
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "injected"}},
                "TransactWriteItems",
            )
        response = self._client.transact_write_items(**params)
        if fault == "crash-after":
            raise CrashError(f"crash after transaction {self.calls} committed")
        if fault == "lost-response":
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "injected"}},
                "TransactWriteItems",
            )
        return response


@dataclass
class Message:
    message_id: str
    body: str
    receive_count: int = 0
    in_flight: bool = False


class Queue:
    """An SQS standard queue with a redrive policy, in memory.

    moto's SQS reads every message's attributes on every receive, which makes a queue of
    thousands of messages take minutes. This model keeps the semantics the aggregator relies
    on: a received message is invisible until deleted or released, each receive counts, and a
    message received `MAX_RECEIVE_COUNT` times moves to the dead-letter queue instead of being
    received again. Released messages go to the back, so redeliveries arrive out of order.
    """

    def __init__(self) -> None:
        self.messages: dict[str, Message] = {}
        self.dead_letters: list[Message] = []

    def send(self, bodies: list[str]) -> None:
        for body in bodies:
            message = Message(str(uuid.uuid4()), body)
            self.messages[message.message_id] = message

    def receive(self, max_messages: int) -> list[Message]:
        received: list[Message] = []
        for message in list(self.messages.values()):
            if len(received) == max_messages:
                break
            if message.in_flight:
                continue
            if message.receive_count >= MAX_RECEIVE_COUNT:
                del self.messages[message.message_id]
                self.dead_letters.append(message)
                continue
            message.receive_count += 1
            message.in_flight = True
            received.append(message)
        return received

    def delete(self, message: Message) -> None:
        del self.messages[message.message_id]

    def release(self, message: Message) -> None:
        # Visibility timeout expired: the message becomes visible again, at the back.
        message.in_flight = False
        self.messages[message.message_id] = self.messages.pop(message.message_id)


class QueueDriver:
    """Deliver a `Queue` to a handler, as Lambda's SQS event source mapping does."""

    def __init__(
        self,
        queue: Queue,
        handler: Callable[[dict[str, Any]], Any],
        faulty: FaultyDynamoDB,
    ) -> None:
        self.queue = queue
        self.faulty = faulty
        self.handler = handler
        self.batches = 0
        self.crashed_batches = 0
        self.lost_deletes = 0
        # Batch numbers after which the poller "dies" before deleting what succeeded.
        self.drop_deletes_after: set[int] = set()

    def deliver_once(self) -> bool:
        messages = self.queue.receive(LAMBDA_BATCH_SIZE)
        if not messages:
            return False
        self.batches += 1
        # In AWS a message that failed 3 times waits in the dead-letter queue for a redrive.
        # Faults stay off for a batch with a message on its last receive, so that every valid
        # event reaches the ledger in this test.
        self.faulty.armed = all(m.receive_count < MAX_RECEIVE_COUNT for m in messages)
        event = {
            "Records": [
                {
                    "messageId": m.message_id,
                    "receiptHandle": f"receipt-{m.message_id}-{m.receive_count}",
                    "body": m.body,
                    "attributes": {"ApproximateReceiveCount": str(m.receive_count)},
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:metering",
                    "awsRegion": "us-east-1",
                }
                for m in messages
            ]
        }
        try:
            response = self.handler(event)
        except CrashError:
            self.crashed_batches += 1
            for message in messages:
                self.queue.release(message)
            return True
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        if self.batches in self.drop_deletes_after and self.faulty.armed:
            self.lost_deletes += 1
            for message in messages:
                self.queue.release(message)
            return True
        for message in messages:
            if message.message_id in failed:
                self.queue.release(message)
            else:
                self.queue.delete(message)
        return True

    def drain(self, max_batches: int = 10_000) -> None:
        for _ in range(max_batches):
            if not self.deliver_once():
                return
        raise AssertionError(f"queue not drained within {max_batches} batches")


def make_events(count: int, rng: random.Random) -> list[MeteringEvent]:
    """Build `count` distinct events over four tenants, every event type and three months."""
    start = datetime(2026, 2, 1, tzinfo=UTC)
    span_seconds = int((datetime(2026, 5, 1, tzinfo=UTC) - start).total_seconds())
    events: list[MeteringEvent] = []
    for index in range(count):
        tenant = rng.choice(sorted(TENANTS))
        tier = TENANTS[tenant]
        request_id = f"req-{index}"
        common: dict[str, Any] = {
            "event_time": start + timedelta(seconds=rng.randrange(span_seconds)),
            "tenant_id": tenant,
            "tier": tier,
            "user_id": f"user-{rng.randrange(3)}",
            "request_id": request_id,
        }
        kind = index % 5
        if kind in (0, 1):
            unpriced = index % 97 == 0
            events.append(
                ModelUsage(
                    event_id=stable_event_id(request_id, "model-usage"),
                    model_id=UNPRICED_MODEL if unpriced else MODELS[tier],
                    usage=TokenUsage(
                        input_tokens=rng.randrange(1, 40_000),
                        output_tokens=rng.randrange(0, 4_000),
                        # The shipped models have no cache prices, so these are unpriced.
                        cache_read_tokens=1_000 if index % 89 == 0 else 0,
                    ),
                    model_calls=rng.randrange(1, 4),
                    **common,
                )
            )
        elif kind == 2:
            events.append(
                ToolInvoked(
                    event_id=stable_event_id(request_id, "tool", 0),
                    tool=rng.choice(["document_search", "web_search"]),
                    decision="denied" if index % 11 == 0 else "allowed",
                    **common,
                )
            )
        elif kind == 3:
            events.append(
                RuntimeUsage(
                    event_id=stable_event_id(request_id, "runtime"),
                    runtime_session_id=f"{tenant}.{uuid.UUID(int=index)}",
                    vcpu_seconds=Decimal(rng.randrange(1, 10_000_000)) / Decimal(1_000_000),
                    memory_gb_seconds=Decimal(rng.randrange(1, 20_000_000)) / Decimal(1_000_000),
                    **common,
                )
            )
        else:
            events.append(
                InvocationCompleted(
                    event_id=stable_event_id(request_id, "invocation"),
                    status="failed" if index % 13 == 0 else "succeeded",
                    latency_ms=rng.randrange(100, 30_000),
                    session_id=str(uuid.UUID(int=index)),
                    runtime_session_id=f"{tenant}.{uuid.UUID(int=index)}",
                    **common,
                )
            )
    return events


def sum_by(
    rated: list[RatedEvent], key: Callable[[RatedEvent], tuple[str, ...]]
) -> dict[tuple[str, ...], Decimal]:
    sums: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for item in rated:
        sums[key(item)] += item.amount_usd
    return dict(sums)


def month(rated: RatedEvent) -> str:
    return rated.event.event_time.strftime("%Y-%m")


def day(rated: RatedEvent) -> str:
    return rated.event.event_time.strftime("%Y-%m-%d")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, fast_transactions: None) -> Iterator[dict[str, Any]]:
    """The aggregator app, its tables and a metering queue with a dead-letter queue, in moto."""
    monkeypatch.setattr(ledger_module.time, "sleep", lambda _seconds: None)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LEDGER_TABLE": "ledger",
        "TOTALS_TABLE": "totals",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "agentpool-test",
        "POWERTOOLS_SERVICE_NAME": f"aggregator-{uuid.uuid4().hex[:8]}",
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        stack = LedgerStack()
        yield {"stack": stack, "app": load_app()}


def handler_for(app: ModuleType) -> Callable[[dict[str, Any]], Any]:
    return lambda event: app.lambda_handler(event, FakeContext())


def scan_all(table: Any) -> list[dict[str, Any]]:
    page = table.scan()
    items: list[dict[str, Any]] = page["Items"]
    while "LastEvaluatedKey" in page:
        page = table.scan(ExclusiveStartKey=page["LastEvaluatedKey"])
        items.extend(page["Items"])
    return items


def test_ledger_exact_under_faults(world: dict[str, Any]) -> None:
    rng = random.Random(20260314)  # noqa: S311 - test data, not a secret
    stack: LedgerStack = world["stack"]
    app = world["app"]
    queue = Queue()
    events = make_events(int(__import__("os").environ.get("N_EVENTS", "3000")), rng)
    catalog = default_catalog()
    rated = {event.event_id: rate_event(event, catalog) for event in events}

    # Phase 1: every event except a set held back as late arrivals, with duplicates, in random
    # order, with malformed messages mixed in.
    march = [e for e in events if e.event_time.strftime("%Y-%m") == "2026-03"]
    late = {e.event_id for e in rng.sample(march, len(march) // 6)}
    on_time = [e for e in events if e.event_id not in late]
    bodies = [rule_message(e) for e in on_time]
    bodies += [
        rule_message(e) for e in rng.sample(on_time, len(on_time) // 5)
    ]  # duplicate publishes
    malformed = ["not json", json.dumps({"source": "agentpool", "detail": {}}), "{}"]
    bodies += malformed
    rng.shuffle(bodies)
    queue.send(bodies)

    faulty = FaultyDynamoDB(app.ledger._client, {})
    app.ledger._client = faulty
    app.ledger.periods._client = faulty
    faults = ["crash-before", "crash-after", "throttle", "lost-response"]
    # A fault on every 7th transaction: with chunks of a few dozen events, batches of 100
    # span several transactions, so crashes also land in the middle of a batch.
    faulty.plan = {call: faults[(call // 7) % len(faults)] for call in range(7, 5_000, 7)}

    driver = QueueDriver(queue, handler_for(app), faulty)
    driver.drop_deletes_after = set(range(3, 200, 9))
    driver.drain()

    # The report run issues March. Phase 2: the late March events arrive, each twice, with
    # another round of duplicates of events that were already recorded.
    assert BillingPeriods(stack.client, "totals").mark_issued("2026-03")
    march_before = stack.totals("acme", "month#2026-03")
    late_bodies = [rule_message(e) for e in events if e.event_id in late] * 2
    late_bodies += [rule_message(e) for e in rng.sample(on_time, len(on_time) // 10)]
    rng.shuffle(late_bodies)
    queue.send(late_bodies)
    driver.drop_deletes_after = {driver.batches + 2}
    driver.drain()

    # Every injected fault happened.
    assert faulty.injected["crash-before"] > 0
    assert faulty.injected["crash-after"] > 0
    assert faulty.injected["throttle"] > 0
    assert faulty.injected["lost-response"] > 0
    assert driver.crashed_batches > 0
    assert driver.lost_deletes > 0

    # Malformed messages, and only they, went to the dead-letter queue.
    assert sorted(m.body for m in queue.dead_letters) == sorted(malformed)
    assert all(m.receive_count == MAX_RECEIVE_COUNT for m in queue.dead_letters)

    # One ledger entry per distinct event.
    entries = scan_all(stack.ledger_table)
    assert len(entries) == len(events)
    assert {e["event_id"] for e in entries} == set(rated)
    assert sum((e["amount_usd"] for e in entries), Decimal(0)) == sum(
        (r.amount_usd for r in rated.values()), Decimal(0)
    )

    # Billed month: the event's month, except the late March events, billed in April.
    def billed(item: RatedEvent) -> str:
        return "2026-04" if item.event.event_id in late else month(item)

    all_rated = list(rated.values())
    by_tenant_month = sum_by(all_rated, lambda r: (r.event.tenant_id, billed(r)))
    for (tenant, billing_month), expected in by_tenant_month.items():
        sk = f"month#{billing_month}"
        assert stack.counter(tenant, sk, "cost_usd") == expected, (tenant, billing_month)
    events_by_tenant_month = Counter((r.event.tenant_id, billed(r)) for r in all_rated)
    for (tenant, billing_month), count in events_by_tenant_month.items():
        assert stack.counter(tenant, f"month#{billing_month}", "events") == count

    by_tier_month = sum_by(all_rated, lambda r: (r.event.tier, billed(r)))
    for (tier, billing_month), expected in by_tier_month.items():
        assert stack.tier_counter(tier, f"month#{billing_month}", "cost_usd") == expected

    on_time_rated = [r for r in all_rated if r.event.event_id not in late]
    by_tenant_day = sum_by(on_time_rated, lambda r: (r.event.tenant_id, day(r)))
    for (tenant, event_day), expected in by_tenant_day.items():
        assert stack.counter(tenant, f"day#{event_day}", "cost_usd") == expected
    by_tier_day = sum_by(on_time_rated, lambda r: (r.event.tier, day(r)))
    for (tier, event_day), expected in by_tier_day.items():
        assert stack.tier_counter(tier, f"day#{event_day}", "cost_usd") == expected

    # The issued month did not move; the late events are April adjustments of March.
    assert stack.totals("acme", "month#2026-03") == march_before
    late_rated = [rated[event_id] for event_id in late]
    by_tenant_adjustment = sum_by(late_rated, lambda r: (r.event.tenant_id,))
    for (tenant,), expected in by_tenant_adjustment.items():
        adjustment = "month#2026-04#adjustment#2026-03"
        assert stack.counter(tenant, adjustment, "cost_usd") == expected
        assert stack.counter(tenant, "month#2026-04", "adjustment_usd") == expected
    late_entries = [e for e in entries if e["event_id"] in late]
    assert {e["month"] for e in late_entries} == {"2026-04"}
    assert {e["adjustment_of_month"] for e in late_entries} == {"2026-03"}
    assert {e["event_time"][:7] for e in late_entries} == {"2026-03"}

    # Unpriced usage is counted, never priced at zero silently.
    unpriced = sum(1 for r in all_rated if not r.priced)
    assert unpriced > 0
    assert sum(
        (
            stack.counter(tenant, f"month#{m}", "unpriced_events")
            for tenant in TENANTS
            for m in ("2026-02", "2026-03", "2026-04")
        ),
        Decimal(0),
    ) == Decimal(unpriced)
