"""Builders shared by the pricing and ledger tests: events, catalogs and DynamoDB tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from agentpool.events import MemoryUsage, ModelUsage, RuntimeUsage, ToolInvoked, stable_event_id
from agentpool.ledger import Ledger
from agentpool.pricing.catalog import DEFAULT_CATALOG_PATH, PriceCatalog
from agentpool.pricing.rating import RatedEvent
from agentpool.tier_shards import TIER_SHARDS, tier_partition
from agentpool.usage import TokenUsage
from tests.unit.dynamo_tables import create_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LEDGER_TABLE = "ledger"
TOTALS_TABLE = "totals"
TENANT = "acme"
TIER = "basic"
EVENT_TIME = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def load_pricing_cases() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "pricing-cases.json").read_text(encoding="utf-8"))
    return data


def catalog_from_cases(test_catalog: dict[str, Any]) -> PriceCatalog:
    """Turn the fixture's `test_catalog` into a `PriceCatalog`.

    The fixture keys models by id and AgentCore resources as `agentcore.<resource>`, with one
    entry or a list of dated entries each. It omits `source` and `source_date`, which the
    catalog requires, so test values fill them. Memory and web search prices, which no case
    uses, come from the shipped catalog.
    """
    shipped = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    data: dict[str, Any] = {
        "catalog_version": "pricing-cases",
        "currency": "USD",
        "models": {},
        "runtime": [],
        "gateway": [],
        "memory": shipped["memory"],
        "web_search": shipped["web_search"],
    }
    for item, value in test_catalog.items():
        entries = [
            {**entry, "source": "test price, tests/fixtures/pricing-cases.json"}
            | {"source_date": "2026-01-01"}
            for entry in (value if isinstance(value, list) else [value])
        ]
        if item.startswith("agentcore."):
            data[item.removeprefix("agentcore.")] = entries
        else:
            data["models"][item] = entries
    return PriceCatalog(data)


def catalog_without_web_search() -> PriceCatalog:
    """The shipped catalog whose only web search price takes effect in 2099, so that a query
    before then is unpriced."""
    shipped = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    later = [{**entry, "effective_from": "2099-01-01T00:00:00Z"} for entry in shipped["web_search"]]
    return PriceCatalog({**shipped, "web_search": later})


def model_usage(
    usage: TokenUsage,
    model_id: str,
    *,
    request_id: str = "req-1",
    user_id: str = "user-a",
    event_time: datetime = EVENT_TIME,
    tenant_id: str = TENANT,
    tier: str = TIER,
) -> ModelUsage:
    return ModelUsage(
        event_id=stable_event_id(request_id, "model"),
        event_time=event_time,
        tenant_id=tenant_id,
        tier=tier,
        user_id=user_id,
        request_id=request_id,
        model_id=model_id,
        usage=usage,
    )


def runtime_usage(vcpu_seconds: Decimal, memory_gb_seconds: Decimal) -> RuntimeUsage:
    return RuntimeUsage(
        event_id=stable_event_id("req-1", "runtime"),
        event_time=EVENT_TIME,
        tenant_id=TENANT,
        tier=TIER,
        user_id="user-a",
        request_id="req-1",
        runtime_session_id="runtime-session-0123456789abcdef0123",
        vcpu_seconds=vcpu_seconds,
        memory_gb_seconds=memory_gb_seconds,
    )


def memory_usage(events: int, *, event_time: datetime = EVENT_TIME) -> MemoryUsage:
    return MemoryUsage(
        event_id=stable_event_id("req-1", "memory-usage"),
        event_time=event_time,
        tenant_id=TENANT,
        tier=TIER,
        user_id="user-a",
        request_id="req-1",
        events=events,
    )


def tool_invoked(
    decision: str = "allowed",
    index: int = 0,
    *,
    tool: str = "document_search",
    event_time: datetime = EVENT_TIME,
) -> ToolInvoked:
    return ToolInvoked.model_validate(
        {
            "event_id": stable_event_id("req-1", "tool", index),
            "event_time": event_time,
            "tenant_id": TENANT,
            "tier": TIER,
            "user_id": "user-a",
            "request_id": "req-1",
            "tool": tool,
            "decision": decision,
        }
    )


def assert_exact_decimals(rated: RatedEvent) -> None:
    """Fail when any number on the rated event is not a `Decimal` (a float above all)."""
    assert type(rated.amount_usd) is Decimal
    for value in [*rated.quantities.values(), *rated.unit_prices.values()]:
        assert type(value) is Decimal


class LedgerStack:
    """The ledger and totals tables in moto, with readers for the tests."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(self.client, "LedgerTable", LEDGER_TABLE)
        create_table(self.client, "TotalsTable", TOTALS_TABLE)
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        self.ledger_table = resource.Table(LEDGER_TABLE)
        self.totals_table = resource.Table(TOTALS_TABLE)
        self.ledger = Ledger(self.client, LEDGER_TABLE, TOTALS_TABLE)

    def totals(self, pk: str, sk: str) -> dict[str, Any]:
        item: dict[str, Any] = self.totals_table.get_item(Key={"pk": pk, "sk": sk}).get("Item", {})
        return item

    def counter(self, pk: str, sk: str, name: str) -> Decimal:
        value = self.totals(pk, sk).get(name, Decimal(0))
        assert type(value) is Decimal
        return value

    def tier_counter(self, tier: str, sk: str, name: str) -> Decimal:
        """Sum one counter over every shard of a tier's totals."""
        return sum(
            (self.counter(tier_partition(tier, shard), sk, name) for shard in range(TIER_SHARDS)),
            Decimal(0),
        )

    def ledger_entries(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.ledger_table.scan()["Items"]
        return items


def set_fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point boto3 at fake credentials and a region, so nothing can reach a real account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
