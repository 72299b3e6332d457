"""Hard-capped tenants over HTTP on the local stack: 429 budget_exhausted, no agent, no bill."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from boto3.dynamodb.conditions import Key

from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .conftest import Onboarding

pytestmark = pytest.mark.integration

PROMPT = "Who gets the flu vaccine?"


def set_hard_cap(target: operations.Target, tenant_id: str, budget_usd: Decimal) -> None:
    target.table("TenantsTableName").update_item(
        Key={"tenant_id": tenant_id},
        UpdateExpression="SET hard_cap = :on, monthly_budget_usd = :budget",
        ExpressionAttributeValues={":on": True, ":budget": budget_usd},
    )


def agent_runs(stack: LocalStack, tenant_id: str) -> int:
    records = stack.agentcore.records
    return sum(1 for r in records if r.runtime_session_id.startswith(f"{tenant_id}."))


def month_item(target: operations.Target, tenant_id: str) -> dict[str, object]:
    month = datetime.now(UTC).strftime("%Y-%m")
    item = target.table("TotalsTableName").get_item(
        Key={"pk": tenant_id, "sk": f"month#{month}"}, ConsistentRead=True
    )
    return dict(item.get("Item", {}))


def test_over_budget_request_gets_429(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    tenant_id = onboard.tenant("basic")
    user = onboard.user(tenant_id)
    # Below the worst case of one basic request (about $0.007), so nothing fits.
    set_hard_cap(target, tenant_id, Decimal("0.001"))

    status, body, headers = operations.call_api(
        target, "POST", "/invocations", user.token, {"prompt": PROMPT}
    )
    stack.wait_for_metering()

    ledger = target.table("LedgerTableName").query(
        KeyConditionExpression=Key("tenant_id").eq(tenant_id), ConsistentRead=True
    )["Items"]
    assert status == 429
    assert body["error"]["code"] == "budget_exhausted"
    assert body["error"]["requestId"]
    assert int(headers["Retry-After"]) > 0
    assert agent_runs(stack, tenant_id) == 0
    assert ledger == []
    assert month_item(target, tenant_id).get("cost_usd", 0) == 0


def test_within_budget_request_settles_reservation(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    tenant_id = onboard.tenant("basic")
    user = onboard.user(tenant_id)
    set_hard_cap(target, tenant_id, Decimal("5"))

    status, body = operations.invoke(target, user.token, PROMPT)
    stack.wait_for_metering()

    item = month_item(target, tenant_id)
    assert status == 200, body
    assert agent_runs(stack, tenant_id) == 1
    assert item["reserved_usd"] == 0
    # The ledger removed the request's own events from its hold when it recorded them. Its one
    # document search, metered by the Gateway under another request id, stays held until the
    # hold expires: $0.005 per thousand calls.
    tool_call = Decimal("0.000005")
    assert item["held_usd"] == tool_call
    assert item["committed_usd"] == item["cost_usd"] + tool_call
    assert Decimal(str(item["cost_usd"])) > tool_call
