"""POST /invocations on the local stack: real tokens, real HTTP, real events to real totals."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agentpool.pricing.catalog import MILLION, default_catalog
from agentpool.registry import TenantRegistry
from agentpool.tiers import TIERS
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .conftest import Onboarding

pytestmark = pytest.mark.integration

DOCUMENTS = {"flu.md": "Flu vaccine: adults over 65 get the high-dose vaccine on Tuesdays."}


def month_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def model_cost(model_id: str, input_tokens: int, output_tokens: int) -> Decimal:
    prices = default_catalog().model_price(model_id, datetime.now(UTC)).usd_per_million
    return (Decimal(input_tokens) * prices.input + Decimal(output_tokens) * prices.output) / MILLION


def memory_event_cost() -> Decimal:
    return default_catalog().memory_price(datetime.now(UTC)).usd_per_thousand_events / 1000


def test_memory_events_priced_in_month_totals(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    tenant_id = onboard.tenant("basic", DOCUMENTS)
    user = onboard.user(tenant_id)
    _, first = operations.invoke(target, user.token, "Who gets the high-dose flu vaccine?")
    status, _ = operations.invoke(target, user.token, "And on which day?", first["sessionId"])
    stack.wait_for_metering()

    month = month_now()
    breakdown = target.table("TotalsTableName").get_item(
        Key={"pk": tenant_id, "sk": f"month#{month}#memory#agentcore"}, ConsistentRead=True
    )["Item"]
    total = operations.tenant_month(target, tenant_id, month)["total"]
    assert status == 200
    assert total["memory_events"] == 2
    assert breakdown["memory_events"] == 2
    assert breakdown["cost_usd"] == 2 * memory_event_cost()
    assert breakdown["cost_usd"] == Decimal("0.0005")
    assert total["unpriced_events"] == 0


def test_basic_invocation_returns_answer(onboard: Onboarding, target: operations.Target) -> None:
    user = onboard.user(onboard.tenant("basic", DOCUMENTS))

    status, body = operations.invoke(target, user.token, "Who gets the high-dose flu vaccine?")

    assert status == 200
    assert set(body) == {"requestId", "sessionId", "tier", "model", "output", "usage"}
    assert body["tier"] == "basic"
    assert body["model"] == TIERS["basic"].model_id
    assert body["output"].startswith("[stand-in model")
    assert "high-dose" in body["output"]
    assert body["usage"]["inputTokens"] > 0
    assert body["usage"]["outputTokens"] > 0


def test_session_id_is_reused(onboard: Onboarding, target: operations.Target) -> None:
    user = onboard.user(onboard.tenant("basic", DOCUMENTS))
    _, first = operations.invoke(target, user.token, "First question about flu")

    status, second = operations.invoke(target, user.token, "Second question", first["sessionId"])

    assert status == 200
    assert second["sessionId"] == first["sessionId"]
    assert second["requestId"] != first["requestId"]


def test_usage_reaches_tenant_and_tier_totals(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    tenant_id = onboard.tenant("premium", DOCUMENTS)
    user = onboard.user(tenant_id)
    tier_before = operations.tier_month(target, "premium", month_now())

    responses = [
        operations.invoke(target, user.token, prompt)[1]
        for prompt in ("What is on Tuesdays?", "Find the latest flu guidance.")
    ]
    stack.wait_for_metering()

    input_tokens = sum(r["usage"]["inputTokens"] for r in responses)
    output_tokens = sum(r["usage"]["outputTokens"] for r in responses)
    expected_cost = model_cost(TIERS["premium"].model_id, input_tokens, output_tokens)
    # Premium offers both tools; the stand-in model calls each once per request, and each
    # allowed Gateway call costs 0.005 USD per thousand. Each web search call also runs one
    # query at 7.00 USD per thousand.
    tool_calls = 2 * len(responses)
    expected_cost += Decimal(tool_calls) * Decimal("0.005") / 1000
    expected_cost += len(responses) * Decimal("7.00") / 1000
    # The agent stores each answered turn as one AgentCore Memory event, 0.25 USD per thousand.
    expected_cost += len(responses) * memory_event_cost()
    usage = operations.tenant_month(target, tenant_id, month_now())
    total = usage["total"]
    assert total["invocations"] == 2
    assert total["input_tokens"] == input_tokens
    assert total["output_tokens"] == output_tokens
    assert total["tool_calls"] == tool_calls
    assert total["cost_usd"] == expected_cost
    assert usage["user"][user.user_id]["cost_usd"] == expected_cost
    assert usage["model"][TIERS["premium"].model_id]["input_tokens"] == input_tokens
    tier_after = operations.tier_month(target, "premium", month_now())
    assert tier_after["invocations"] - tier_before["invocations"] == 2
    assert tier_after["cost_usd"] - tier_before["cost_usd"] == expected_cost


def test_basic_tier_offers_document_search_only(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    tenant_id = onboard.tenant("basic", DOCUMENTS)
    user = onboard.user(tenant_id)

    status, _ = operations.invoke(target, user.token, "Search the web for flu news")
    stack.wait_for_metering()

    usage = operations.tenant_month(target, tenant_id, month_now())
    assert status == 200
    assert set(usage["tool"]) == {"document_search"}
    assert usage["total"]["tool_calls"] == 1


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("{}", "prompt"),
        ('{"prompt": ""}', "prompt"),
        ('{"prompt": "   "}', "prompt"),
        ('{"prompt": 42}', "prompt"),
        (json.dumps({"prompt": "x" * (32 * 1024 + 1)}), "prompt"),
        ('{"prompt": "hi", "tenantId": "other"}', "unknown field"),
        ('{"prompt": "hi", "sessionId": "not-a-session"}', "sessionId"),
        ('{"prompt": "hi", "z": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON"),
    ],
    ids=[
        "non-json",
        "array",
        "missing-prompt",
        "empty-prompt",
        "blank-prompt",
        "number-prompt",
        "prompt-over-32kb",
        "unknown-field",
        "malformed-session",
        "nesting-deeper-than-the-parser",
    ],
)
def test_bad_body_is_rejected_with_400(
    onboard: Onboarding, target: operations.Target, body: str, message_part: str
) -> None:
    user = onboard.user(onboard.tenant("basic"))
    request = urllib.request.Request(  # noqa: S310 - local stack URL
        f"{target.api_url}/invocations", data=body.encode(), method="POST"
    )
    request.add_header("Authorization", user.token)
    request.add_header("Content-Type", "application/json")

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310

    error = json.loads(raised.value.read())["error"]
    assert raised.value.code == 400
    assert error["code"] == "invalid_request"
    assert message_part in error["message"]
    assert error["requestId"]


def test_form_body_is_rejected_with_415(onboard: Onboarding, target: operations.Target) -> None:
    user = onboard.user(onboard.tenant("basic"))
    # urllib, like curl -d, sends a body as a form unless a Content-Type is set.
    request = urllib.request.Request(  # noqa: S310 - local stack URL
        f"{target.api_url}/invocations", data=b'{"prompt": "hi"}', method="POST"
    )
    request.add_header("Authorization", user.token)

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310

    error = json.loads(raised.value.read())["error"]
    assert raised.value.code == 415
    assert error["code"] == "unsupported_media_type"
    assert "application/x-www-form-urlencoded" in error["message"]


def test_missing_token_is_rejected_with_401(target: operations.Target) -> None:
    status, body, _ = operations.call_api(target, "POST", "/invocations", None, {"prompt": "hi"})

    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["requestId"]


def test_malformed_token_is_rejected_with_401(target: operations.Target) -> None:
    status, _, _ = operations.call_api(
        target, "POST", "/invocations", "not.a.token", {"prompt": "hi"}
    )

    assert status == 401


def test_unregistered_tenant_is_rejected_with_403(
    target: operations.Target, onboard: Onboarding
) -> None:
    # A user whose token names a tenant that the registry does not know.
    tenant_id = onboard.tenant("basic")
    user = onboard.user(tenant_id)
    target.table("TenantsTableName").delete_item(Key={"tenant_id": tenant_id})

    status, body = operations.invoke(target, user.token, "hello")

    assert status == 403
    assert body["error"]["code"] == "forbidden"


def test_suspended_tenant_is_rejected_with_403(
    target: operations.Target, onboard: Onboarding
) -> None:
    tenant_id = onboard.tenant("basic")
    user = onboard.user(tenant_id)
    TenantRegistry(target.table("TenantsTableName")).set_status(tenant_id, "suspended")

    status, body = operations.invoke(target, user.token, "hello")

    assert status == 403
    assert body["error"]["code"] == "forbidden"


def test_unknown_route_is_rejected(target: operations.Target) -> None:
    status, body, _ = operations.call_api(target, "GET", "/nothing-here", None)

    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert body["error"]["requestId"]


def test_runtime_failure_returns_502_and_runs_agent_once(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    tenant_id = onboard.tenant("basic", DOCUMENTS)
    user = onboard.user(tenant_id)
    stack.agentcore.fail_next(500, after_agent_ran=True)

    status, body = operations.invoke(target, user.token, "Who gets the flu vaccine?")
    stack.wait_for_metering()

    runs = [r for r in stack.agentcore.records if r.runtime_session_id.startswith(f"{tenant_id}.")]
    total = operations.tenant_month(target, tenant_id, month_now())["total"]
    assert status == 502
    assert body["error"]["code"] == "upstream_failed"
    assert body["error"]["requestId"]
    assert len(runs) == 1
    assert total["invocations"] == 1
    assert total["failed_invocations"] == 1


def test_model_failure_returns_502_and_meters_invocation(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    tenant_id = onboard.tenant("basic", DOCUMENTS)
    user = onboard.user(tenant_id)
    # ModelErrorException (424) is not retried by botocore, so one fault fails the call.
    stack.bedrock.fail_next(424, count=1)

    status, body = operations.invoke(target, user.token, "Who gets the flu vaccine?")
    stack.wait_for_metering()

    total = operations.tenant_month(target, tenant_id, month_now())["total"]
    assert status == 502
    assert body["error"]["requestId"]
    assert total["failed_invocations"] == 1
    assert total["cost_usd"] == 0
