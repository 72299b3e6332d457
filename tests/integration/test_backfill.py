"""`agentpool events publish` through the local stack: validate, publish, bill each event once."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from agentpool.events import MeteringEvent, parse_event, stable_event_id
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .cli_runner import agentpool
from .conftest import Onboarding

pytestmark = pytest.mark.integration

MODELS = ("mistral.ministral-3-8b-instruct", "openai.gpt-oss-120b-1:0")
DISTINCT_EVENTS = 300
REPEATED_LINES = 40


def event_detail(
    rng: random.Random, tenant_id: str, tier: str, index: int, when: datetime
) -> dict[str, Any]:
    request_id = f"backfill-{tenant_id}-{index}"
    common = {
        "schema_version": 1,
        "event_time": when.isoformat().replace("+00:00", "Z"),
        "tenant_id": tenant_id,
        "tier": tier,
        "user_id": f"user-{index % 3}",
        "request_id": request_id,
    }
    kind = index % 4
    if kind == 0:
        return {
            **common,
            "event_id": stable_event_id(request_id, "model"),
            "detail_type": "Model Usage",
            "model_id": MODELS[index % len(MODELS)],
            "usage": {"input_tokens": rng.randint(1, 9_000), "output_tokens": rng.randint(1, 900)},
            "model_calls": rng.randint(1, 4),
        }
    if kind == 1:
        return {
            **common,
            "event_id": stable_event_id(request_id, "tool"),
            "detail_type": "Tool Invoked",
            "tool": "document_search",
            "decision": "allowed",
        }
    if kind == 2:
        return {
            **common,
            "event_id": stable_event_id(request_id, "runtime"),
            "detail_type": "Runtime Usage",
            "runtime_session_id": f"{tenant_id}-runtime-session-{index:024d}",
            # Strings, so that the quantities stay exact Decimals in JSON.
            "vcpu_seconds": f"{rng.randint(1, 90_000) / 1000:.3f}",
            "memory_gb_seconds": f"{rng.randint(1, 180_000) / 1000:.3f}",
        }
    return {
        **common,
        "event_id": stable_event_id(request_id, "invocation"),
        "detail_type": "Invocation Completed",
        "status": "succeeded",
        "latency_ms": rng.randint(100, 9_000),
        "session_id": f"session-{index}",
        "runtime_session_id": f"{tenant_id}-runtime-session-{index:024d}",
    }


def backfill_details(tenants: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Return distinct event details over several tenants and days, one in an earlier month."""
    rng = random.Random(7)  # noqa: S311 - seeded test data
    now = datetime.now(UTC).replace(microsecond=0)
    details = []
    for index in range(DISTINCT_EVENTS):
        tenant_id, tier = tenants[index % len(tenants)]
        when = now - timedelta(hours=rng.randint(0, 24 * 6))
        details.append(event_detail(rng, tenant_id, tier, index, when))
    # 40 days back is always in an earlier month than today.
    tenant_id, tier = tenants[0]
    details.append(event_detail(rng, tenant_id, tier, DISTINCT_EVENTS, now - timedelta(days=40)))
    return details


def ledger_entries(target: operations.Target, tenant_id: str) -> list[dict[str, Any]]:
    table = target.table("LedgerTableName")
    arguments: dict[str, Any] = {
        "KeyConditionExpression": Key("tenant_id").eq(tenant_id),
        "ConsistentRead": True,
    }
    entries: list[dict[str, Any]] = []
    while True:
        page = table.query(**arguments)
        entries.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return entries
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def month_totals(target: operations.Target, tenant_id: str) -> Decimal:
    """Return the sum of the tenant's month totals (sk `month#YYYY-MM`) over all months."""
    items = target.table("TotalsTableName").query(
        KeyConditionExpression=Key("pk").eq(tenant_id) & Key("sk").begins_with("month#"),
        ConsistentRead=True,
    )["Items"]
    return sum(
        (Decimal(item.get("cost_usd", 0)) for item in items if item["sk"].count("#") == 1),
        Decimal(0),
    )


def write_lines(path: Path, details: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(detail) + "\n" for detail in details), encoding="utf-8")


def test_backfill_bills_each_event_once(
    stack: LocalStack,
    target: operations.Target,
    onboard: Onboarding,
    state_file: Path,
    tmp_path: Path,
) -> None:
    tenants = [(onboard.tenant(tier), tier) for tier in ("basic", "basic", "premium")]
    details = backfill_details(tenants)
    repeated = random.Random(11).sample(details, REPEATED_LINES)  # noqa: S311 - test data
    path = tmp_path / "backfill.jsonl"
    write_lines(path, details + repeated)
    distinct: dict[str, MeteringEvent] = {
        event.event_id: event for event in map(parse_event, details)
    }
    catalog = default_catalog()

    published = agentpool(state_file, "events", "publish", str(path))
    stack.wait_for_metering(timeout=120)

    assert published.returncode == 0, published.stderr
    assert f"Published {len(details) + REPEATED_LINES} events" in published.stdout
    assert len(distinct) == DISTINCT_EVENTS + 1
    for tenant_id, _ in tenants:
        own = [event for event in distinct.values() if event.tenant_id == tenant_id]
        expected = sum((rate_event(event, catalog).amount_usd for event in own), Decimal(0))
        entries = ledger_entries(target, tenant_id)
        assert len(entries) == len(own), tenant_id
        assert {entry["event_id"] for entry in entries} == {event.event_id for event in own}
        assert month_totals(target, tenant_id) == expected, tenant_id
        assert expected > 0, tenant_id


def test_backfill_with_invalid_lines_publishes_nothing(
    stack: LocalStack,
    target: operations.Target,
    onboard: Onboarding,
    state_file: Path,
    tmp_path: Path,
) -> None:
    tenant_id = onboard.tenant("basic")
    details = backfill_details([(tenant_id, "basic")])[:20]
    conflicting = {**details[3], "user_id": "someone-else"}
    lines = [json.dumps(detail) for detail in details]
    lines[4] = json.dumps({**details[4], "event_time": "yesterday"})
    lines[9] = "{not json"
    lines.append(json.dumps(conflicting))
    path = tmp_path / "invalid.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    published = agentpool(state_file, "events", "publish", str(path))
    stack.wait_for_metering()

    assert published.returncode == 1
    assert f"{path}:5: event_time" in published.stderr
    assert f"{path}:10: invalid JSON" in published.stderr
    assert f"{path}:21: event id {details[3]['event_id']} is already used by line 4" in (
        published.stderr
    )
    assert "3 invalid lines; published nothing" in published.stderr
    assert ledger_entries(target, tenant_id) == []


def test_backfill_missing_file_fails(state_file: Path, tmp_path: Path) -> None:
    published = agentpool(state_file, "events", "publish", str(tmp_path / f"{uuid.uuid4()}.jsonl"))
    assert published.returncode == 1
    assert "not found" in published.stderr


@pytest.mark.parametrize(
    ("case", "change", "reason"),
    [
        (
            "unregistered tenant",
            {"tenant_id": "no-such-tenant"},
            "tenant no-such-tenant is not in the tenant registry",
        ),
        ("unknown tier", {"tier": "gold"}, "tier 'gold' is not a configured tier (basic, premium)"),
        (
            "future event",
            {"event_time": "2030-01-15T08:00:00Z"},
            "event time 2030-01-15T08:00:00+00:00 is in the future",
        ),
    ],
)
def test_backfill_rejects_unbillable_event(
    stack: LocalStack,
    target: operations.Target,
    onboard: Onboarding,
    state_file: Path,
    tmp_path: Path,
    case: str,
    change: dict[str, str],
    reason: str,
) -> None:
    tenant_id = onboard.tenant("basic")
    details = backfill_details([(tenant_id, "basic")])[:5]
    details[2] = {**details[2], **change}
    path = tmp_path / "unbillable.jsonl"
    write_lines(path, details)

    published = agentpool(state_file, "events", "publish", str(path))
    stack.wait_for_metering()

    assert published.returncode == 1, case
    assert f"{path}:3: event {details[2]['event_id']}: {reason}" in published.stderr, case
    assert "1 invalid line; published nothing" in published.stderr, case
    assert ledger_entries(target, tenant_id) == [], case
    assert ledger_entries(target, "no-such-tenant") == [], case
