"""Aggregation throughput: metering events through pricing and the ledger, against a naive baseline.

Both paths start from the SQS message bodies (EventBridge envelopes) and parse and price each
event with `parse_envelope` and `rate_event`, as the aggregator does. Then:

- ledger: `Ledger.record` on each batch (conditional ledger puts and pre-summed totals in
  TransactWriteItems), the aggregator's write path;
- baseline: per event, one PutItem of an idempotency record on condition that it does not
  exist, then one UpdateItem that adds the amount to the tenant's month total.

Both write to the same moto server, each measurement to a fresh pair of tables with the keys of
template.yaml's LedgerTable and TotalsTable. Fresh tables matter because moto 5's
TransactWriteItems deep-copies the target table once per transaction item (for its rollback),
so its time grows with the table's size, which DynamoDB's does not. Requests are counted with
botocore hooks on the client: `before-parameter-build` once per API call and `before-send` once
per HTTP attempt, retries included. The handler's Powertools logs and metrics are not part of
either path.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer

from agentpool import usage as usage_shapes
from agentpool.events import (
    InvocationCompleted,
    ModelUsage,
    ToolInvoked,
    parse_envelope,
)
from agentpool.ledger import Ledger
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.tiers import TIERS
from agentpool_dev.eventbridge import rule_message
from agentpool_dev.template import Template
from benchmarks.common import FAKE_CREDENTIALS, median

BATCH_SIZES = (1, 10, 100)
# Events per measured repetition of each batch size: enough for a steady rate within the
# suite's time budget on a moto server.
EVENTS_PER_RUN = {1: 40, 10: 100, 100: 200}
WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
TENANTS = 20
USERS_PER_TENANT = 5
TOOL_SHARE = 0.3
SEED = 7

_serializer = TypeSerializer()


class RequestCounter:
    """Counts a client's API calls (`before-parameter-build`) and HTTP attempts (`before-send`)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.sends = 0
        self.transact_items = 0
        client.meta.events.register("before-parameter-build.dynamodb", self._call)
        client.meta.events.register("before-send.dynamodb", self._send)

    def _call(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls[model.name] += 1
        if model.name == "TransactWriteItems":
            self.transact_items += len(params["TransactItems"])

    def _send(self, **_: Any) -> None:
        self.sends += 1

    def reset(self) -> None:
        self.calls.clear()
        self.sends = 0
        self.transact_items = 0

    @property
    def writes(self) -> int:
        return sum(count for name, count in self.calls.items() if name in WRITE_OPERATIONS)

    @property
    def reads(self) -> int:
        return sum(count for name, count in self.calls.items() if name not in WRITE_OPERATIONS)


def message_bodies(count: int, rng: random.Random) -> list[str]:
    """SQS bodies of `count` events: per invocation a completion, model usage, maybe a tool."""
    tenant_weights = [1 / rank for rank in range(1, TENANTS + 1)]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    bodies: list[str] = []
    while len(bodies) < count:
        rank = rng.choices(range(TENANTS), weights=tenant_weights)[0]
        tier = "premium" if rank < 4 else "basic"
        request_id = str(uuid.uuid4())
        common: dict[str, Any] = {
            "event_time": start + timedelta(seconds=rng.randrange(28 * 86400)),
            "tenant_id": f"agg-{rank:02d}",
            "tier": tier,
            "user_id": f"user-{rng.randrange(USERS_PER_TENANT)}",
            "request_id": request_id,
        }
        bodies.append(
            rule_message(
                InvocationCompleted(
                    event_id=str(uuid.uuid4()),
                    status="succeeded",
                    latency_ms=rng.randrange(500, 5000),
                    session_id=str(uuid.uuid4()),
                    runtime_session_id=f"rt-{uuid.uuid4().hex}",
                    **common,
                )
            )
        )
        usage = {"inputTokens": rng.randrange(100, 2000), "outputTokens": rng.randrange(50, 800)}
        bodies.append(
            rule_message(
                ModelUsage(
                    event_id=str(uuid.uuid4()),
                    model_id=TIERS[tier].model_id,
                    usage=usage_shapes.from_converse(usage),
                    model_calls=rng.randrange(1, 4),
                    **common,
                )
            )
        )
        if rng.random() < TOOL_SHARE:
            tool = TIERS[tier].tools[0].value
            bodies.append(
                rule_message(
                    ToolInvoked(event_id=str(uuid.uuid4()), tool=tool, decision="allowed", **common)
                )
            )
    return bodies[:count]


def run_ledger(bodies: list[str], batch_size: int, ledger: Ledger) -> None:
    catalog = default_catalog()
    for start in range(0, len(bodies), batch_size):
        batch = [
            rate_event(parse_envelope(body), catalog) for body in bodies[start : start + batch_size]
        ]
        result = ledger.record(batch)
        if result.failed:
            raise RuntimeError(f"ledger write failed for {len(result.failed)} events")


def run_baseline(bodies: list[str], client: Any, ledger_table: str, totals_table: str) -> None:
    catalog = default_catalog()
    for body in bodies:
        rated = rate_event(parse_envelope(body), catalog)
        event = rated.event
        client.put_item(
            TableName=ledger_table,
            Item=_serializer.serialize({"tenant_id": event.tenant_id, "event_id": event.event_id})[
                "M"
            ],
            ConditionExpression="attribute_not_exists(event_id)",
        )
        month = event.event_time.strftime("%Y-%m")
        client.update_item(
            TableName=totals_table,
            Key=_serializer.serialize(
                {"pk": f"baseline#{event.tenant_id}", "sk": f"month#{month}"}
            )["M"],
            UpdateExpression="ADD cost_usd :amount, events :one",
            ExpressionAttributeValues={
                ":amount": _serializer.serialize(rated.amount_usd),
                ":one": _serializer.serialize(1),
            },
        )


def create_tables(client: Any, suffix: str) -> tuple[str, str]:
    """Create an empty ledger table and totals table with the template's keys; return names."""
    resources = Template().document["Resources"]
    names = []
    for logical_id in ("LedgerTable", "TotalsTable"):
        properties = resources[logical_id]["Properties"]
        name = f"bench-{logical_id}-{suffix}"
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": properties["KeySchema"],
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if properties.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        client.create_table(**request)
        names.append(name)
    return names[0], names[1]


def measure(action: Any, counter: RequestCounter, events: int) -> dict[str, float]:
    counter.reset()
    started, cpu = time.perf_counter(), time.process_time()
    action()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    return {
        "events_per_second": events / seconds,
        "client_cpu_ms_per_event": cpu_seconds * 1000 / events,
        "requests_per_event": sum(counter.calls.values()) / events,
        "write_requests_per_event": counter.writes / events,
        "http_requests_per_event": counter.sends / events,
        "read_requests_per_event": counter.reads / events,
        "transact_items_per_event": counter.transact_items / events,
    }


def run(moto_url: str, repetitions: int = 3) -> dict[str, Any]:
    session = boto3.session.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    client = session.client("dynamodb", endpoint_url=moto_url)
    # Tables are created through a client of their own, so that no count includes them.
    admin = session.client("dynamodb", endpoint_url=moto_url)
    counter = RequestCounter(client)
    rng = random.Random(SEED)  # noqa: S311 - reproducible events, not secrets
    # A first batch warms the clients, the catalog and pydantic's validators.
    run_ledger(message_bodies(20, rng), 10, Ledger(client, *create_tables(admin, "warm-up")))

    results: dict[str, Any] = {}
    for batch_size in BATCH_SIZES:
        count = EVENTS_PER_RUN[batch_size]
        repetitions_data: list[dict[str, Any]] = []
        for repetition in range(repetitions):
            ledger_bodies = message_bodies(count, rng)
            baseline_bodies = message_bodies(count, rng)

            suffix = f"{batch_size}-{repetition}"
            ledger = Ledger(client, *create_tables(admin, f"ledger-{suffix}"))
            baseline_tables = create_tables(admin, f"baseline-{suffix}")

            def ledger_path(
                bodies: list[str] = ledger_bodies, size: int = batch_size, ledger: Ledger = ledger
            ) -> None:
                run_ledger(bodies, size, ledger)

            def baseline_path(
                bodies: list[str] = baseline_bodies, tables: tuple[str, str] = baseline_tables
            ) -> None:
                run_baseline(bodies, client, *tables)

            # Alternate the order, so that neither path always runs on a warmer server.
            order = [("ledger", ledger_path), ("baseline", baseline_path)]
            if repetition % 2:
                order.reverse()
            measured = {name: measure(action, counter, count) for name, action in order}
            measured["speedup"] = {
                "ratio": measured["ledger"]["events_per_second"]
                / measured["baseline"]["events_per_second"]
            }
            repetitions_data.append(measured)
        summary: dict[str, Any] = {"events": count, "repetitions": repetitions_data}
        for name in ("ledger", "baseline"):
            summary[name] = {
                key: median([data[name][key] for data in repetitions_data])
                for key in repetitions_data[0][name]
            }
        summary["speedup"] = median([data["speedup"]["ratio"] for data in repetitions_data])
        results[str(batch_size)] = summary
    return {"batch_sizes": results}
