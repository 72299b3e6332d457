"""InvocationService with a hard cap: reserve the worst case, settle it, reject over budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from agentpool.admission import Admission
from agentpool.agent_contract import AgentResponse, ToolCallRecord
from agentpool.budget import BudgetExceededError, WorstCase, current_month
from agentpool.events import MeteringEvent
from agentpool.http import error_response
from agentpool.identity import CallerIdentity
from agentpool.invocation import InvocationRequest, InvocationService
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.registry import Tenant
from agentpool.tiers import TIERS, Tool
from agentpool_dev.moto_atomic import serialize_dynamodb_writes
from tests.unit.dynamo_tables import create_table
from tests.unit.pricing_support import TOTALS_TABLE, LedgerStack, set_fake_credentials

TENANT = "clinic-a"
SESSIONS_TABLE = "sessions"
PROMPT = "When is the flu clinic open?"
BUDGET = Decimal("1.00")
CALLER = CallerIdentity(tenant_id=TENANT, user_id="u-1", claimed_tier="basic")


def worst_case_usd() -> Decimal:
    return WorstCase().cost(PROMPT, default_catalog(), TIERS["basic"], datetime.now(UTC))


class FakeRegistry:
    def __init__(self, hard_cap: bool = True) -> None:
        self.hard_cap = hard_cap

    def get(self, tenant_id: str) -> Tenant:
        return Tenant(
            tenant_id=tenant_id,
            name="Clinic",
            tier="basic",
            status="active",
            monthly_budget_usd=BUDGET,
            hard_cap=self.hard_cap,
        )


class MotoVendingMachine:
    """Returns a plain session, which moto serves; IAM is not simulated here."""

    def session_for(self, scope: Any) -> boto3.session.Session:
        return boto3.session.Session(region_name="us-east-1")


class FakeRuntime:
    """Answers every request, after `gate` opens when one is given."""

    def __init__(
        self,
        gate: threading.Event | None = None,
        fail: bool = False,
        tool_calls: tuple[ToolCallRecord, ...] = (),
    ) -> None:
        self.gate = gate
        self.fail = fail
        self.tool_calls = tool_calls
        self.calls = 0
        self._lock = threading.Lock()

    def invoke(self, request: Any, runtime_session_id: str) -> AgentResponse:
        with self._lock:
            self.calls += 1
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.fail:
            raise RuntimeError("agent runtime unavailable")
        return AgentResponse(
            output="open on Tuesdays",
            model_id=request.model_id,
            usage={"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
            model_calls=1,
            tool_calls=self.tool_calls,
        )


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[MeteringEvent] = []
        self._lock = threading.Lock()

    def publish(self, events: list[MeteringEvent]) -> None:
        with self._lock:
            self.events.extend(events)


class Admit:
    def admit(self, tenant_id: str, tier: Any) -> Admission:
        return Admission(True)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerStack]:
    set_fake_credentials(monkeypatch)
    serialize_dynamodb_writes()
    with mock_aws():
        ledger_stack = LedgerStack()
        create_table(ledger_stack.client, "SessionsTable", SESSIONS_TABLE)
        yield ledger_stack


def build(
    stack: LedgerStack, runtime: FakeRuntime, publisher: FakePublisher, hard_cap: bool = True
) -> Any:
    return InvocationService(
        registry=FakeRegistry(hard_cap),  # type: ignore[arg-type]
        vending_machine=MotoVendingMachine(),  # type: ignore[arg-type]
        sessions_table=SESSIONS_TABLE,
        runtime=runtime,  # type: ignore[arg-type]
        publisher=publisher,  # type: ignore[arg-type]
        admission=Admit(),  # type: ignore[arg-type]
        totals_table=TOTALS_TABLE,
        catalog=default_catalog(),
        dynamodb_client=stack.client,
    )


def spend(stack: LedgerStack, amount: Decimal) -> None:
    """Add a recorded amount to the tenant's month, as the ledger does."""
    stack.totals_table.update_item(
        Key={"pk": TENANT, "sk": f"month#{current_month()}"},
        UpdateExpression="ADD cost_usd :a, committed_usd :a",
        ExpressionAttributeValues={":a": amount},
    )


def month_counter(stack: LedgerStack, name: str) -> Decimal:
    return stack.counter(TENANT, f"month#{current_month()}", name)


def reservation_states(stack: LedgerStack) -> list[str]:
    items = stack.totals_table.scan()["Items"]
    return [item["state"] for item in items if item["sk"].startswith("reservation#")]


def test_request_over_budget_rejected(stack: LedgerStack) -> None:
    spend(stack, BUDGET - worst_case_usd() / 2)
    runtime, publisher = FakeRuntime(), FakePublisher()

    with pytest.raises(BudgetExceededError) as raised:
        build(stack, runtime, publisher).invoke(
            CALLER, InvocationRequest(prompt=PROMPT), "r-1", "t"
        )

    response = error_response(raised.value, "r-1")
    assert response["statusCode"] == 429
    assert '"budget_exhausted"' in response["body"]
    assert int(response["headers"]["Retry-After"]) > 0
    assert runtime.calls == 0
    assert publisher.events == []
    assert month_counter(stack, "committed_usd") == BUDGET - worst_case_usd() / 2
    assert reservation_states(stack) == []


def test_request_within_budget_holds_actual_cost(stack: LedgerStack) -> None:
    runtime, publisher = FakeRuntime(), FakePublisher()

    result = build(stack, runtime, publisher).invoke(
        CALLER, InvocationRequest(prompt=PROMPT), "r-1", "t"
    )

    # 10 input and 5 output tokens at $0.15 per million each.
    actual = Decimal("0.00000225")
    assert result.output == "open on Tuesdays"
    assert runtime.calls == 1
    assert reservation_states(stack) == ["held"]
    assert month_counter(stack, "committed_usd") == actual
    assert month_counter(stack, "held_usd") == actual
    assert month_counter(stack, "reserved_usd") == 0

    rated = [rate_event(event, default_catalog()) for event in publisher.events]
    stack.ledger.record(rated)
    assert month_counter(stack, "cost_usd") == actual
    assert month_counter(stack, "committed_usd") == actual
    assert month_counter(stack, "held_usd") == 0


def test_tool_calls_held_until_hold_expires(stack: LedgerStack) -> None:
    calls = (
        ToolCallRecord(tool=Tool.DOCUMENT_SEARCH, decision="allowed"),
        ToolCallRecord(tool=Tool.DOCUMENT_SEARCH, decision="allowed"),
        ToolCallRecord(tool=Tool.DOCUMENT_SEARCH, decision="denied"),
    )
    runtime, publisher = FakeRuntime(tool_calls=calls), FakePublisher()

    build(stack, runtime, publisher).invoke(CALLER, InvocationRequest(prompt=PROMPT), "r-1", "t")

    # Tokens as above, plus 2 allowed Gateway calls at $0.005 per thousand: 0.00001.
    tokens, tools = Decimal("0.00000225"), Decimal("0.00001")
    assert month_counter(stack, "committed_usd") == tokens + tools
    rated = [rate_event(event, default_catalog()) for event in publisher.events]
    stack.ledger.record(rated)
    # The Gateway's tool events carry other request ids, so the tool part stays held.
    assert month_counter(stack, "held_usd") == tools
    assert month_counter(stack, "committed_usd") == tokens + tools
    assert reservation_states(stack) == ["held"]


def test_failed_agent_call_holds_only_worst_tool_calls(stack: LedgerStack) -> None:
    runtime, publisher = FakeRuntime(fail=True), FakePublisher()

    with pytest.raises(RuntimeError):
        build(stack, runtime, publisher).invoke(
            CALLER, InvocationRequest(prompt=PROMPT), "r-1", "t"
        )

    # The agent may have called tools before it failed: 12 basic calls at $0.005 per thousand
    # stay held until the hold expires. Nothing else is held.
    assert reservation_states(stack) == ["held"]
    assert month_counter(stack, "committed_usd") == Decimal("0.00006")
    assert month_counter(stack, "reserved_usd") == 0


def test_tenant_without_hard_cap_reserves_nothing(stack: LedgerStack) -> None:
    spend(stack, BUDGET * 2)
    runtime, publisher = FakeRuntime(), FakePublisher()

    build(stack, runtime, publisher, hard_cap=False).invoke(
        CALLER, InvocationRequest(prompt=PROMPT), "r-1", "t"
    )

    assert runtime.calls == 1
    assert reservation_states(stack) == []


def test_parallel_requests_admitted_within_cap(stack: LedgerStack) -> None:
    # Room for 2.5 worst cases, so exactly 2 of 8 parallel requests fit.
    spend(stack, BUDGET - worst_case_usd() * Decimal("2.5"))
    gate = threading.Event()
    runtime, publisher = FakeRuntime(gate), FakePublisher()
    service = build(stack, runtime, publisher)
    start = threading.Barrier(8)

    def attempt(index: int) -> bool:
        start.wait()
        try:
            service.invoke(CALLER, InvocationRequest(prompt=PROMPT), f"r-{index}", "t")
        except BudgetExceededError:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(attempt, index) for index in range(8)]
        # The admitted requests wait in the runtime until every rejection is in.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sum(1 for f in futures if f.done() and f.result() is False) >= 6:
                break
            time.sleep(0.01)
        gate.set()
        admitted = [future.result() for future in futures]

    assert admitted.count(True) == 2
    assert runtime.calls == 2
    assert reservation_states(stack).count("held") == 2
