"""The demo's fixed prompts give exact, hand-computed totals.

Token counts come from the Bedrock stand-in (Tekken tokenizer for Mistral, the documented
approximation for gpt-oss) and are fixed by the demo's texts. Costs are computed by hand from
catalog.json: basic input and output 0.15 USD per million tokens; premium input 0.15 and
output 0.60 per million; each allowed Gateway tool call 0.005 USD per thousand. Each AgentCore
Memory event costs 0.25 USD per thousand. The agent stores every answered turn as one Memory
event, so each tenant has as many Memory events as successful invocations.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from agentpool_dev.demo import DemoResult, run_demo
from agentpool_dev.local_stack import LocalStack, Ports

pytestmark = pytest.mark.integration

# Fields: invocations, input tokens, output tokens, tool calls, Memory events, cost in USD.
# harbor-clinic: (558 + 483) x 0.15 / 1e6 + 3 x 0.000005 + 3 x 0.00025
#              = 0.00015615 + 0.000015 + 0.00075
# meadow-clinic: (143 + 112) x 0.15 / 1e6 + 1 x 0.000005 + 1 x 0.00025
#              = 0.00003825 + 0.000005 + 0.00025
# st-anne-hospital: 774 x 0.15 / 1e6 + 420 x 0.60 / 1e6 + 4 x 0.000005 + 2 x 0.00025
#                 = 0.0001161 + 0.000252 + 0.00002 + 0.0005
# basic tier: harbor-clinic + meadow-clinic = 0.00092115 + 0.00029325
EXPECTED_TENANTS = {
    "harbor-clinic": (3, 558, 483, 3, 3, Decimal("0.00092115")),
    "meadow-clinic": (1, 143, 112, 1, 1, Decimal("0.00029325")),
    "st-anne-hospital": (2, 774, 420, 4, 2, Decimal("0.0008881")),
}
EXPECTED_TIERS = {
    "basic": (4, 701, 595, 4, 4, Decimal("0.0012144")),
    "premium": (2, 774, 420, 4, 2, Decimal("0.0008881")),
}


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoResult]:
    # Its own stack, so that tier totals hold the demo's tenants only.
    stack = LocalStack(
        ports=Ports.free(), log_dir=tmp_path_factory.mktemp("demo-logs"), state_file=None
    )
    state = stack.start()
    try:
        yield run_demo(stack, state)
    finally:
        stack.stop()


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
def test_demo_tenant_totals_exact(demo_result: DemoResult, tenant_id: str) -> None:
    assert summary(demo_result.tenants[tenant_id]["total"]) == EXPECTED_TENANTS[tenant_id]


@pytest.mark.parametrize("tier", sorted(EXPECTED_TIERS))
def test_demo_tier_totals_exact(demo_result: DemoResult, tier: str) -> None:
    assert summary(demo_result.tiers[tier]) == EXPECTED_TIERS[tier]


def test_demo_costs_are_decimal(demo_result: DemoResult) -> None:
    for usage in demo_result.tenants.values():
        assert type(usage["total"]["cost_usd"]) is Decimal


def test_demo_answers_come_from_stand_in(demo_result: DemoResult) -> None:
    for response in demo_result.responses:
        assert response["output"].startswith("[stand-in model")
