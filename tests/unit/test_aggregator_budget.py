"""Budget alerts raised by the aggregator when recorded amounts cross a threshold (moto)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from moto import mock_aws

from agentpool.budget import BUDGET_DETAIL_TYPE, BUDGET_EVENT_SOURCE
from tests.unit.dynamo_tables import create_table
from tests.unit.pricing_support import LEDGER_TABLE, TOTALS_TABLE, LedgerStack, set_fake_credentials
from tests.unit.test_aggregator import FakeContext, load_app, sample_batch

TENANTS_TABLE = "tenants"


class FakeEvents:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"} for _ in Entries]}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    set_fake_credentials(monkeypatch)
    monkeypatch.setenv("LEDGER_TABLE", LEDGER_TABLE)
    monkeypatch.setenv("TOTALS_TABLE", TOTALS_TABLE)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "agentpool-test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"aggregator-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("TENANTS_TABLE", TENANTS_TABLE)
    monkeypatch.setenv("EVENT_BUS_NAME", "metering")
    with mock_aws():
        stack = LedgerStack()
        create_table(stack.client, "TenantsTable", TENANTS_TABLE)
        package_logger = logging.getLogger("agentpool")
        saved = (package_logger.handlers, package_logger.propagate, package_logger.level)
        module = load_app()
        module.stack = stack
        yield module
        package_logger.handlers, package_logger.propagate, package_logger.level = saved


def set_budget(app: ModuleType, budget: str) -> None:
    app.stack.client.put_item(
        TableName=TENANTS_TABLE,
        Item={
            "tenant_id": {"S": "acme"},
            "name": {"S": "Acme"},
            "tier": {"S": "premium"},
            "status": {"S": "active"},
            "monthly_budget_usd": {"N": budget},
        },
    )


def test_alerts_sent_once_when_budget_crossed(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = FakeEvents()
    monkeypatch.setattr(app, "events_client", lambda: events)
    set_budget(app, "0.0006")  # the sample batch costs 0.000651720139
    app.lambda_handler(sample_batch(), FakeContext())
    app.lambda_handler(sample_batch(), FakeContext())
    details = [json.loads(entry["Detail"]) for entry in events.entries]
    assert [d["threshold_percent"] for d in details] == [80, 100]
    assert {entry["Source"] for entry in events.entries} == {BUDGET_EVENT_SOURCE}
    assert {entry["DetailType"] for entry in events.entries} == {BUDGET_DETAIL_TYPE}
    assert Decimal(details[0]["spent_usd"]) == Decimal("0.000651720139")


def test_no_alert_below_threshold(app: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    events = FakeEvents()
    monkeypatch.setattr(app, "events_client", lambda: events)
    app.lambda_handler(sample_batch(), FakeContext())  # no override: the tier's $500
    assert events.entries == []
