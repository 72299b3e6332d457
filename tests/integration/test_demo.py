"""The demo's fixed prompts give exact, hand-computed totals.

Token counts come from the Bedrock stand-in (Tekken tokenizer for Mistral, the documented
approximation for gpt-oss) and are fixed by the demo's texts. Costs are computed by hand from
catalog.json: basic input and output 0.15 USD per million tokens; premium input 0.15 and
output 0.60 per million; each allowed Gateway tool call 0.005 USD per thousand. An allowed web
search call also runs one query at 7.00 USD per thousand. Each AgentCore Memory event costs
0.25 USD per thousand. The agent stores every answered turn as one Memory event, so each
tenant has as many Memory events as successful invocations.

Runtime usage also reaches the ledger, through the usage log group and RuntimeUsageFunction.
Its seconds are the stand-in's wall-clock time, so they vary between runs. Each tenant's cost
is therefore the fixed amount below plus the runtime cost of its ledger entries, which the test
prices again by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from agentpool_dev.demo import DemoResult, local_target, run_demo
from agentpool_dev.demo_data import TENANTS
from agentpool_dev.local_stack import LocalStack

from .conftest import running_stack

pytestmark = pytest.mark.integration

# Fields: invocations, input tokens, output tokens, tool calls, Memory events, cost in USD
# without runtime usage.
# harbor-clinic: (558 + 483) x 0.15 / 1e6 + 3 x 0.000005 + 3 x 0.00025
#              = 0.00015615 + 0.000015 + 0.00075
# meadow-clinic: (143 + 112) x 0.15 / 1e6 + 1 x 0.000005 + 1 x 0.00025
#              = 0.00003825 + 0.000005 + 0.00025
# st-anne-hospital: each of its 2 premium invocations calls document search and web search.
# The stand-in's web results name the web search id (web-search.v1), which is in the input.
#   784 x 0.15 / 1e6 + 420 x 0.60 / 1e6 + 4 x 0.000005 + 2 x 0.007 + 2 x 0.00025
#   = 0.0001176 + 0.000252 + 0.00002 + 0.014 + 0.0005
# basic tier: harbor-clinic + meadow-clinic = 0.00092115 + 0.00029325
EXPECTED_TENANTS = {
    "harbor-clinic": (3, 558, 483, 3, 3, Decimal("0.00092115")),
    "meadow-clinic": (1, 143, 112, 1, 1, Decimal("0.00029325")),
    "st-anne-hospital": (2, 784, 420, 4, 2, Decimal("0.0148896")),
}
EXPECTED_TIERS = {
    "basic": (4, 701, 595, 4, 4, Decimal("0.0012144")),
    "premium": (2, 784, 420, 4, 2, Decimal("0.0148896")),
}


# AgentCore Runtime prices of catalog.json, in USD per vCPU-hour and per GB-hour.
USD_PER_VCPU_HOUR = Decimal("0.0895")
USD_PER_GB_HOUR = Decimal("0.00945")


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Its own stack, so that tier totals contain the demo's tenants only.
    with running_stack(tmp_path_factory.mktemp("demo-logs")) as stack:
        yield stack


@pytest.fixture(scope="module")
def demo_result(demo_stack: LocalStack) -> DemoResult:
    assert demo_stack.state is not None
    return run_demo(demo_stack, demo_stack.state)


def runtime_entries(stack: LocalStack, tenant_id: str) -> list[dict[str, Any]]:
    assert stack.state is not None
    entries = (
        local_target(stack.state, stack)
        .table("LedgerTableName")
        .query(KeyConditionExpression=Key("tenant_id").eq(tenant_id), ConsistentRead=True)["Items"]
    )
    return [entry for entry in entries if entry["detail_type"] == "Runtime Usage"]


def hand_priced_runtime(entries: list[dict[str, Any]]) -> Decimal:
    """Price runtime entries again: (vCPU-s x 0.0895 + GB-s x 0.00945) / 3600, each rounded
    half-even to 12 places as a ledger amount is."""
    total = Decimal(0)
    for entry in entries:
        quantities = entry["quantities"]
        amount = (
            quantities["vcpu_seconds"] * USD_PER_VCPU_HOUR
            + quantities["memory_gb_seconds"] * USD_PER_GB_HOUR
        ) / 3600
        total += amount.quantize(Decimal("1e-12"), rounding=ROUND_HALF_EVEN)
    return total


def tenant_runtime_cost(stack: LocalStack, tenant_id: str) -> Decimal:
    return hand_priced_runtime(runtime_entries(stack, tenant_id))


def summary(total: dict[str, Decimal]) -> tuple[Decimal, ...]:
    return (
        total["invocations"],
        total["input_tokens"],
        total["output_tokens"],
        total["tool_calls"],
        total["memory_events"],
        total["cost_usd"],
    )


@pytest.mark.parametrize("tenant_id", sorted(EXPECTED_TENANTS))
def test_demo_tenant_totals_exact(
    demo_stack: LocalStack, demo_result: DemoResult, tenant_id: str
) -> None:
    *counts, cost = EXPECTED_TENANTS[tenant_id]
    runtime_cost = tenant_runtime_cost(demo_stack, tenant_id)
    total = summary(demo_result.tenants[tenant_id]["total"])
    assert total[:5] == tuple(counts)
    assert total[5] == cost + runtime_cost


@pytest.mark.parametrize("tier", sorted(EXPECTED_TIERS))
def test_demo_tier_totals_exact(demo_stack: LocalStack, demo_result: DemoResult, tier: str) -> None:
    *counts, cost = EXPECTED_TIERS[tier]
    runtime_cost = sum(
        (tenant_runtime_cost(demo_stack, t.tenant_id) for t in TENANTS if t.tier == tier),
        Decimal(0),
    )
    total = summary(demo_result.tiers[tier])
    assert total[:5] == tuple(counts)
    assert total[5] == cost + runtime_cost


def test_demo_web_search_breakdown_exact(demo_result: DemoResult) -> None:
    tools = demo_result.tenants["st-anne-hospital"]["tool"]
    # 2 web search calls, each 0.000005 for the Gateway call and 0.007 for its query.
    assert tools["web_search"]["tool_calls"] == Decimal(2)
    assert tools["web_search"]["cost_usd"] == Decimal("0.01401")
    assert tools["document_search"]["tool_calls"] == Decimal(2)
    assert tools["document_search"]["cost_usd"] == Decimal("0.00001")


@pytest.mark.parametrize("tenant_id", sorted(EXPECTED_TENANTS))
def test_demo_runtime_usage_billed(
    demo_stack: LocalStack, demo_result: DemoResult, tenant_id: str
) -> None:
    # One usage record, and so one ledger entry, per started second of each invocation.
    started_seconds = sum(
        math.ceil(record.duration_seconds)
        for record in demo_stack.agentcore.records
        if record.runtime_session_id.startswith(f"{tenant_id}.")
    )
    entries = runtime_entries(demo_stack, tenant_id)
    assert demo_stack.state is not None
    total = (
        local_target(demo_stack.state, demo_stack)
        .table("TotalsTableName")
        .get_item(Key={"pk": tenant_id, "sk": f"month#{demo_result.month}"}, ConsistentRead=True)[
            "Item"
        ]
    )
    assert len(entries) == started_seconds
    assert started_seconds >= EXPECTED_TENANTS[tenant_id][0]
    assert total["runtime_vcpu_seconds"] == sum(
        (entry["quantities"]["vcpu_seconds"] for entry in entries), Decimal(0)
    )


def test_demo_costs_are_decimal(demo_result: DemoResult) -> None:
    for usage in demo_result.tenants.values():
        assert type(usage["total"]["cost_usd"]) is Decimal


def test_demo_answers_come_from_stand_in(demo_result: DemoResult) -> None:
    for response in demo_result.responses:
        assert response["output"].startswith("[stand-in model")
