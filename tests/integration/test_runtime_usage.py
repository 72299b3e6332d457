"""AgentCore usage logs on the local stack: ingested once, billed to the session's tenant."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from boto3.dynamodb.conditions import Key

from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.runtime_usage import SessionOwner, usage_events
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .cli_runner import agentpool
from .conftest import Onboarding

pytestmark = pytest.mark.integration


def test_usage_logs_billed_once_to_tenant(
    stack: LocalStack,
    target: operations.Target,
    onboard: Onboarding,
    tmp_path: Path,
    state_file: Path,
) -> None:
    tenant_id = onboard.tenant("basic")
    user = onboard.user(tenant_id)
    status, body = operations.invoke(target, user.token, "When is the flu clinic open?")
    assert status == 200, body
    stack.wait_for_metering()
    lines = [
        line
        for line in stack.agentcore.usage_log_lines()
        if json.loads(line)["attributes"]["session.id"].startswith(f"{tenant_id}.")
    ]
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = usage_events(lines, lambda *_: SessionOwner("basic", user.user_id)).events
    before = operations.tenant_month(target, tenant_id, expected[0].event_time.strftime("%Y-%m"))

    first = agentpool(state_file, "runtime-usage", "ingest", str(path))
    second = agentpool(state_file, "runtime-usage", "ingest", str(path))
    stack.wait_for_metering()

    month = expected[0].event_time.strftime("%Y-%m")
    totals = target.table("TotalsTableName").get_item(
        Key={"pk": tenant_id, "sk": f"month#{month}"}, ConsistentRead=True
    )["Item"]
    entries = target.table("LedgerTableName").query(
        KeyConditionExpression=Key("tenant_id").eq(tenant_id), ConsistentRead=True
    )["Items"]
    runtime_entries = [e for e in entries if e["detail_type"] == "Runtime Usage"]
    catalog = default_catalog()
    runtime_cost = sum((rate_event(e, catalog).amount_usd for e in expected), Decimal(0))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert len(expected) >= 1
    assert len(runtime_entries) == len(expected)
    assert {e["user_id"] for e in runtime_entries} == {user.user_id}
    assert totals["runtime_vcpu_seconds"] == sum((e.vcpu_seconds for e in expected), Decimal(0))
    assert totals["cost_usd"] == before["total"]["cost_usd"] + runtime_cost
    assert runtime_cost > 0
