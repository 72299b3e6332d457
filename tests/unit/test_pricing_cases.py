"""Every case of tests/fixtures/pricing-cases.json, as one test named by the case id.

Amounts are compared as `Decimal` to `Decimal(expected)`, and every amount must be a `Decimal`
by type, so a float anywhere on the path from usage to stored amount fails the case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from agentpool.events import InvocationCompleted, stable_event_id
from agentpool.pricing.catalog import PriceCatalog
from agentpool.pricing.rating import RatedEvent, rate_event
from agentpool.tvm import TenantScope, TokenVendingMachine
from agentpool.usage import from_converse, from_openai
from tests.unit.pricing_support import (
    TENANT,
    TIER,
    LedgerStack,
    assert_exact_decimals,
    catalog_from_cases,
    load_pricing_cases,
    model_usage,
    runtime_usage,
    set_fake_credentials,
    tool_invoked,
)

CASES = load_pricing_cases()
CATALOG = catalog_from_cases(CASES["test_catalog"])
TENANT_ACCESS_ROLE = "arn:aws:iam::123456789012:role/agentpool-tenant-access"

Check = Callable[[dict[str, Any], LedgerStack], None]
CHECKS: dict[str, Check] = {}


def check(case_id: str) -> Callable[[Check], Check]:
    def register(function: Check) -> Check:
        CHECKS[case_id] = function
        return function

    return register


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerStack]:
    set_fake_credentials(monkeypatch)
    with mock_aws():
        yield LedgerStack()


@pytest.mark.parametrize("case", CASES["cases"], ids=[case["id"] for case in CASES["cases"]])
def test_pricing_case(case: dict[str, Any], stack: LedgerStack) -> None:
    CHECKS[case["id"]](case, stack)


def test_every_pricing_case_has_a_check() -> None:
    assert sorted(CHECKS) == sorted(case["id"] for case in CASES["cases"])


def rate(event: Any, catalog: PriceCatalog = CATALOG) -> RatedEvent:
    rated = rate_event(event, catalog)
    assert_exact_decimals(rated)
    assert rated.priced
    return rated


def rate_converse(case: dict[str, Any]) -> RatedEvent:
    return rate(model_usage(from_converse(case["converse_usage"]), case["model"]))


def rate_openai(case: dict[str, Any]) -> RatedEvent:
    return rate(model_usage(from_openai(case["openai_usage"]), case["model"]))


def converse_stream(usage: dict[str, Any], stop_reason: str, text_chunks: int) -> list[Any]:
    """Build the events of a ConverseStream response, whose last event carries the usage."""
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    events += [
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": f"part {index} "}}}
        for index in range(text_chunks)
    ]
    events += [
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": stop_reason}},
        {"metadata": {"usage": usage, "metrics": {"latencyMs": 812}}},
    ]
    return events


def metadata_usage(stream: list[dict[str, Any]]) -> dict[str, Any]:
    usage: dict[str, Any] = next(event for event in stream if "metadata" in event)["metadata"][
        "usage"
    ]
    return usage


@check("stream-and-plain-cost-the-same")
def _stream_and_plain(case: dict[str, Any], stack: LedgerStack) -> None:
    plain = from_converse(case["converse_usage"])
    streamed = from_converse(metadata_usage(converse_stream(case["converse_usage"], "end_turn", 5)))
    # A stream cut short by the token limit still ends with its metadata event.
    cut_short = from_converse(
        metadata_usage(converse_stream(case["converse_usage"], "max_tokens", 1))
    )
    assert streamed == plain
    assert cut_short == plain
    expected = Decimal(case["expected_usd"])
    assert rate(model_usage(plain, case["model"])).amount_usd == expected
    assert rate(model_usage(streamed, case["model"])).amount_usd == expected
    assert rate(model_usage(cut_short, case["model"])).amount_usd == expected


@check("cache-read-tokens-priced-once")
def _cache_read(case: dict[str, Any], stack: LedgerStack) -> None:
    rated = rate_converse(case)
    assert rated.amount_usd == Decimal(case["expected_usd"])
    assert rated.quantities["cache_read_tokens"] == Decimal(15872)
    assert rated.quantities["input_tokens"] == Decimal(239)


@check("openai-shape-cached-tokens-not-added-twice")
def _openai_cached(case: dict[str, Any], stack: LedgerStack) -> None:
    usage = from_openai(case["openai_usage"])
    assert usage.input_tokens == 86
    assert usage.cache_read_tokens == 17817
    assert usage.output_tokens == 100
    assert rate_openai(case).amount_usd == Decimal(case["expected_usd"])


@check("cache-write-priced-at-write-rate-only")
def _cache_write(case: dict[str, Any], stack: LedgerStack) -> None:
    rated = rate_converse(case)
    assert rated.amount_usd == Decimal(case["expected_usd"])
    assert set(rated.unit_prices) == {"cache_write_5m"}


@check("reasoning-tokens-inside-output")
def _reasoning(case: dict[str, Any], stack: LedgerStack) -> None:
    usage = from_openai(case["openai_usage"])
    assert usage.output_tokens == 1944
    assert usage.reasoning_tokens == 1360
    rated = rate_openai(case)
    assert rated.amount_usd == Decimal(case["expected_usd"])
    assert "reasoning" not in rated.unit_prices


@check("same-event-delivered-twice")
def _delivered_twice(case: dict[str, Any], stack: LedgerStack) -> None:
    usage_event = model_usage(from_converse(case["converse_usage"]), case["model"])
    completed = InvocationCompleted(
        event_id=stable_event_id("req-1", "invocation"),
        event_time=usage_event.event_time,
        tenant_id=TENANT,
        tier=TIER,
        user_id="user-a",
        request_id="req-1",
        status="succeeded",
        latency_ms=950,
        session_id="session-1",
        runtime_session_id="runtime-session-0123456789abcdef0123",
    )
    batch = [rate(usage_event), rate(completed)]
    results = [stack.ledger.record(batch) for _ in range(case["deliveries"])]
    # The second delivery also repeats an event inside its own batch.
    results.append(stack.ledger.record([*batch, *batch]))

    expected = Decimal(case["expected_usd"])
    month = "month#2026-03"
    assert sorted(results[0].recorded) == sorted(r.event.event_id for r in batch)
    assert all(not result.recorded for result in results[1:])
    assert all(not result.failed for result in results)
    assert stack.counter(TENANT, month, "cost_usd") == expected
    assert stack.tier_counter(TIER, month, "cost_usd") == expected
    assert stack.counter(TENANT, f"{month}#user#user-a", "cost_usd") == expected
    assert stack.counter(TENANT, month, "invocations") == Decimal(case["expected_invocations"])
    assert stack.tier_counter(TIER, month, "invocations") == Decimal(case["expected_invocations"])
    assert stack.counter(TENANT, month, "events") == Decimal(2)
    assert len(stack.ledger_entries()) == 2


@check("price-change-at-month-start")
def _price_change(case: dict[str, Any], stack: LedgerStack) -> None:
    # Rating and the ledger take no clock: event time alone chooses the price and month, so
    # processing on `processed_at` (a later month) cannot change either.
    assert datetime.fromisoformat(case["processed_at"]) > max(
        datetime.fromisoformat(event["event_time"]) for event in case["events"]
    )
    rated = [
        rate(
            model_usage(
                from_converse(event["converse_usage"]),
                case["model"],
                request_id=f"req-{index}",
                event_time=datetime.fromisoformat(event["event_time"]),
            )
        )
        for index, event in enumerate(case["events"])
    ]
    result = stack.ledger.record(rated)
    assert len(result.recorded) == len(case["events"])
    for event, rated_event in zip(case["events"], rated, strict=True):
        month = f"month#{event['expected_month']}"
        assert rated_event.amount_usd == Decimal(event["expected_usd"])
        assert stack.counter(TENANT, month, "cost_usd") == Decimal(event["expected_usd"])
        assert stack.tier_counter(TIER, month, "cost_usd") == Decimal(event["expected_usd"])


@check("two-users-one-tenant-credential-cache")
def _two_users(case: dict[str, Any], stack: LedgerStack) -> None:
    assume_role_requests: list[dict[str, Any]] = []
    sts = boto3.client("sts", region_name="us-east-1")
    sts.meta.events.register(
        "provide-client-params.sts.AssumeRole",
        lambda params, **_: assume_role_requests.append(params),
    )
    machine = TokenVendingMachine(TENANT_ACCESS_ROLE, sts_client=sts, region_name="us-east-1")
    rated = []
    for index, call in enumerate(case["calls"]):
        # Each call runs with its own user's credentials, then a second call of the first user
        # inside the credentials' lifetime must reuse its cached session.
        session = machine.session_for(TenantScope(TENANT, TIER, call["user"]))
        caller = session.client("sts").get_caller_identity()
        assert caller["Arn"].endswith(f"/tenant-{call['user']}")
        event = model_usage(
            from_converse(call["converse_usage"]),
            case["model"],
            request_id=f"req-{index}",
            user_id=call["user"],
        )
        rated.append(rate(event))
    machine.session_for(TenantScope(TENANT, TIER, case["calls"][0]["user"]))

    user_tags = [
        {tag["Key"]: tag["Value"] for tag in request["Tags"]}["UserId"]
        for request in assume_role_requests
    ]
    assert user_tags == [call["user"] for call in case["calls"]]
    assert machine.assume_role_calls == len(case["calls"])

    result = stack.ledger.record(rated)
    assert len(result.recorded) == len(case["calls"])
    month = "month#2026-03"
    for call, rated_event in zip(case["calls"], rated, strict=True):
        user_sk = f"{month}#user#{call['user']}"
        assert rated_event.amount_usd == Decimal(call["expected_usd"])
        assert stack.counter(TENANT, user_sk, "cost_usd") == Decimal(call["expected_usd"])
    assert stack.counter(TENANT, month, "cost_usd") == Decimal(case["expected_tenant_usd"])


@check("agent-runtime-seconds")
def _runtime(case: dict[str, Any], stack: LedgerStack) -> None:
    usage = case["usage"]
    memory_gb_seconds = Decimal(usage["memory_gb"]) * Decimal(usage["seconds"])
    rated = rate(runtime_usage(Decimal(usage["vcpu_seconds"]), memory_gb_seconds))
    assert rated.amount_usd == Decimal(case["expected_usd"])
    assert rated.item == case["resource"]


@check("single-tool-call")
def _single_tool_call(case: dict[str, Any], stack: LedgerStack) -> None:
    assert case["usage"]["invocations"] == 1
    rated = rate(tool_invoked())
    assert rated.amount_usd == Decimal(case["expected_usd"])
    assert rated.amount_usd > 0
    stack.ledger.record([rated])
    stored = stack.ledger_entries()[0]["amount_usd"]
    assert type(stored) is Decimal
    assert stored == Decimal(case["expected_usd"])
