"""Attacks on tier limits, Gateway tools, documents and memory, against the local stack.

Each attack gets 401, 403 or 429, a policy denial, or the caller's own data only.
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agentpool.admission import MILLI, RATE_KEY, TOOL_KEY_PREFIX, AdmissionControl, quota_key
from agentpool.memory import ConversationMemory, actor_id
from agentpool.registry import TenantRegistry
from agentpool.tiers import TIERS, Tool
from agentpool.tools import GATEWAY_TOOLS
from agentpool.tvm import TenantScope, TokenVendingMachine
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack
from agentpool_dev.provision import REGION

from .conftest import Onboarding

pytestmark = pytest.mark.integration

DOCUMENT_SEARCH = GATEWAY_TOOLS[Tool.DOCUMENT_SEARCH].mcp_name
WEB_SEARCH = GATEWAY_TOOLS[Tool.WEB_SEARCH].mcp_name
DOCUMENTS = {"flu.md": "Flu vaccine: adults over 65 get the high-dose vaccine on Tuesdays."}
BASIC = TIERS["basic"]


def mcp_call(
    stack: LocalStack, token: str, name: str, arguments: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Send one `tools/call` straight to the Gateway's MCP endpoint, as an attacker would."""
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    request = urllib.request.Request(  # noqa: S310 - the Gateway stand-in on 127.0.0.1
        f"{stack.gateway.url}/mcp",
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def policy_denied(body: dict[str, Any]) -> bool:
    result = body.get("result") or {}
    text = (result.get("content") or [{}])[0].get("text", "")
    return bool(result.get("isError")) and text.startswith("AuthorizeActionException")


def tool_decisions(stack: LocalStack, tenant_id: str) -> list[tuple[str, str]]:
    return [(d.tool, d.decision) for d in stack.gateway.decisions if d.tenant_id == tenant_id]


def totals_item(target: operations.Target, tenant_id: str) -> dict[str, Any]:
    month = datetime.now(UTC).strftime("%Y-%m")
    item = target.table("TotalsTableName").get_item(
        Key={"pk": tenant_id, "sk": f"month#{month}"}, ConsistentRead=True
    )
    return item.get("Item") or {}


def pin_bucket(stack: LocalStack, tenant_id: str, tokens: int, key: str = RATE_KEY) -> None:
    """Set the tenant's bucket to `tokens` and stamp it ten minutes ahead, so that no token
    refills while the test runs: admission refills nothing for a stored time ahead of its clock."""
    ahead_ms = int((datetime.now(UTC) + timedelta(minutes=10)).timestamp() * MILLI)
    limits_table(stack).put_item(
        Item={
            "tenant_id": tenant_id,
            "limit_key": key,
            "tokens": tokens * MILLI,
            "updated_ms": ahead_ms,
            "version": 1,
        }
    )


def limits_table(stack: LocalStack) -> Any:
    dynamodb = stack.aws_session().resource("dynamodb", endpoint_url=stack.moto_url)
    return dynamodb.Table(stack.name("LimitsTable"))


def post_invocation(
    target: operations.Target, token: str, session_id: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {"prompt": "When is the flu clinic?"}
    if session_id:
        body["sessionId"] = session_id
    return operations.call_api(target, "POST", "/invocations", token, body)


# ---------------------------------------------------------------------------- Gateway tools


def test_basic_agent_never_calls_premium_tool(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("basic", DOCUMENTS))
    searches_before = len(stack.agentcore.web_search_queries)

    status, _ = operations.invoke(target, user.token, "Search the web for flu news.")

    assert status == 200
    assert ("web-search___search_web", "allowed") not in tool_decisions(stack, user.tenant_id)
    assert len(stack.agentcore.web_search_queries) == searches_before


def test_basic_token_direct_premium_tool_denied(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("basic"))
    arguments = {"query": "flu", "tenant_id": user.tenant_id, "user_id": user.user_id}
    searches_before = len(stack.agentcore.web_search_queries)

    status, body = mcp_call(stack, user.token, WEB_SEARCH, arguments)
    stack.wait_for_metering()

    assert status == 200
    assert policy_denied(body)
    assert len(stack.agentcore.web_search_queries) == searches_before
    # The direct call never went through the agent, and it is still metered as a denial.
    assert totals_item(target, user.tenant_id).get("tool_denials") == Decimal(1)


def test_downgraded_tenant_denied_web_search(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("premium"))
    # The tenant moves to basic after its user was created with `custom:tier` premium. The
    # caller also names premium itself, which the Gateway's interceptor replaces.
    TenantRegistry(target.table("TenantsTableName")).set_tier(user.tenant_id, "basic")
    arguments = {
        "query": "flu",
        "tenant_id": user.tenant_id,
        "user_id": user.user_id,
        "tier": "premium",
    }
    searches_before = len(stack.agentcore.web_search_queries)

    status, body = mcp_call(stack, user.token, WEB_SEARCH, arguments)
    stack.wait_for_metering()

    assert status == 200
    assert policy_denied(body)
    assert len(stack.agentcore.web_search_queries) == searches_before
    assert tool_decisions(stack, user.tenant_id) == [(WEB_SEARCH, "denied")]
    assert totals_item(target, user.tenant_id).get("tool_denials") == Decimal(1)


def test_upgraded_tenant_gets_web_search_at_once(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("basic"))
    # The user's token keeps `custom:tier` basic; the registry now records premium.
    TenantRegistry(target.table("TenantsTableName")).set_tier(user.tenant_id, "premium")
    arguments = {"query": "flu", "tenant_id": user.tenant_id, "user_id": user.user_id}
    searches_before = len(stack.agentcore.web_search_queries)

    status, body = mcp_call(stack, user.token, WEB_SEARCH, arguments)
    stack.wait_for_metering()

    assert status == 200
    assert body["result"]["isError"] is False
    assert len(stack.agentcore.web_search_queries) == searches_before + 1
    assert tool_decisions(stack, user.tenant_id) == [(WEB_SEARCH, "allowed")]
    assert totals_item(target, user.tenant_id).get("tool_calls") == Decimal(1)


def test_direct_calls_over_tool_limit_denied(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("premium"))
    pin_bucket(stack, user.tenant_id, 1, key=f"{TOOL_KEY_PREFIX}{RATE_KEY}")
    arguments = {"query": "flu", "tenant_id": user.tenant_id, "user_id": user.user_id}
    searches_before = len(stack.agentcore.web_search_queries)

    first = mcp_call(stack, user.token, WEB_SEARCH, arguments)
    second = mcp_call(stack, user.token, WEB_SEARCH, arguments)
    stack.wait_for_metering()

    assert first[1]["result"]["isError"] is False
    assert second[1]["error"]["message"].startswith("The tenant's tool call rate limit is reached")
    assert len(stack.agentcore.web_search_queries) == searches_before + 1
    totals = totals_item(target, user.tenant_id)
    assert (totals.get("tool_calls"), totals.get("tool_denials")) == (Decimal(1), Decimal(1))


def test_direct_allowed_call_is_metered(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("basic", DOCUMENTS))
    arguments = {"query": "flu", "tenant_id": user.tenant_id, "user_id": user.user_id}

    status, body = mcp_call(stack, user.token, DOCUMENT_SEARCH, arguments)
    stack.wait_for_metering()

    assert status == 200
    assert body["result"]["isError"] is False
    assert totals_item(target, user.tenant_id).get("tool_calls") == Decimal(1)


def test_forged_gateway_token_rejected(stack: LocalStack) -> None:
    status, _ = mcp_call(stack, "not-a-token", DOCUMENT_SEARCH, {"query": "flu"})

    assert status == 401


def test_tool_input_naming_other_tenant_denied(onboard: Onboarding, stack: LocalStack) -> None:
    victim = onboard.tenant("basic", {"secret.md": "Victim flu protocol."})
    attacker = onboard.user(onboard.tenant("basic"))
    arguments = {"query": "flu protocol", "tenant_id": victim, "user_id": attacker.user_id}

    status, body = mcp_call(stack, attacker.token, DOCUMENT_SEARCH, arguments)

    assert status == 200
    assert policy_denied(body)
    assert "Victim" not in json.dumps(body)


def test_tool_input_naming_other_user_denied(onboard: Onboarding, stack: LocalStack) -> None:
    tenant_id = onboard.tenant("basic", DOCUMENTS)
    attacker, victim = onboard.user(tenant_id), onboard.user(tenant_id)
    arguments = {"query": "flu", "tenant_id": tenant_id, "user_id": victim.user_id}

    _, body = mcp_call(stack, attacker.token, DOCUMENT_SEARCH, arguments)

    assert policy_denied(body)


# -------------------------------------------------------------------------------- documents


@pytest.mark.parametrize("template", ["../{victim}/documents/secret.md", "tenants/{victim}/x"])
def test_document_path_denied_at_gateway(
    onboard: Onboarding, stack: LocalStack, template: str
) -> None:
    victim = onboard.tenant("basic", {"secret.md": "Victim secret."})
    attacker = onboard.user(onboard.tenant("basic"))
    arguments = {
        "query": "secret",
        "tenant_id": attacker.tenant_id,
        "user_id": attacker.user_id,
        "document": template.format(victim=victim),
    }

    _, body = mcp_call(stack, attacker.token, DOCUMENT_SEARCH, arguments)

    assert policy_denied(body)
    assert "Victim" not in json.dumps(body)


@pytest.mark.parametrize("name", ["../secret.md", "..", "a/b.md", "%2e%2e/secret.md"])
def test_document_path_rejected_by_function(
    onboard: Onboarding, stack: LocalStack, name: str
) -> None:
    # The function is called directly, as if the Gateway policy had let the call through.
    attacker = onboard.user(onboard.tenant("basic"))
    event = {
        "query": "secret",
        "tenant_id": attacker.tenant_id,
        "user_id": attacker.user_id,
        "document": name,
    }

    result = stack.runner.invoke("DocumentSearchFunction", event, {})

    assert "error" in result
    assert "text" not in result


def test_other_tenants_document_name_not_found(onboard: Onboarding, stack: LocalStack) -> None:
    onboard.tenant("basic", {"victim-only.md": "Victim secret."})
    attacker = onboard.user(onboard.tenant("basic", DOCUMENTS))
    arguments = {
        "query": "secret",
        "tenant_id": attacker.tenant_id,
        "user_id": attacker.user_id,
        "document": "victim-only.md",
    }

    _, body = mcp_call(stack, attacker.token, DOCUMENT_SEARCH, arguments)

    assert "document not found" in body["result"]["content"][0]["text"]


def test_own_document_returned_by_name(onboard: Onboarding, stack: LocalStack) -> None:
    user = onboard.user(onboard.tenant("basic", DOCUMENTS))
    arguments = {
        "query": "flu",
        "tenant_id": user.tenant_id,
        "user_id": user.user_id,
        "document": "flu.md",
    }

    _, body = mcp_call(stack, user.token, DOCUMENT_SEARCH, arguments)

    assert "high-dose" in body["result"]["content"][0]["text"]


# ----------------------------------------------------------------------------------- memory


def tenant_memory(stack: LocalStack, tenant_id: str, user_id: str) -> ConversationMemory:
    """A memory client on credentials vended for (tenant, user), as the agent makes one."""
    vending_machine = TokenVendingMachine(
        stack.resources.lookup("TenantAccessRole", "Arn") if stack.resources else "",
        sts_client=stack.client("sts"),
        region_name=REGION,
    )
    session = vending_machine.session_for(TenantScope(tenant_id, "basic", user_id))
    client = session.client("bedrock-agentcore", endpoint_url=stack.agentcore.url)
    memory_id = stack.resources.lookup("Memory", "MemoryId") if stack.resources else ""
    return ConversationMemory(client, memory_id)


def test_memory_actor_ids_do_not_collide(stack: LocalStack) -> None:
    # Real users get Cognito subs as ids, so the colliding ids are built on the domain API.
    suffix = uuid.uuid4().hex[:6]
    first_tenant, first_user = f"m{suffix}-ab", "cd"
    second_tenant, second_user = f"m{suffix}", "ab-cd"
    session_id = str(uuid.uuid4())
    tenant_memory(stack, first_tenant, first_user).append_turn(
        first_tenant, first_user, session_id, "private question", "private answer"
    )

    second = tenant_memory(stack, second_tenant, second_user)

    assert actor_id(first_tenant, first_user) != actor_id(second_tenant, second_user)
    assert second.history(second_tenant, second_user, session_id) == []


def test_agent_history_kept_per_user(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    tenant_id = onboard.tenant("basic", DOCUMENTS)
    owner, other = onboard.user(tenant_id), onboard.user(tenant_id)
    _, first = operations.invoke(target, owner.token, "Remember: my patient is in room 12.")

    status, _ = operations.invoke(target, other.token, "Which room?", first["sessionId"])
    owner_history = tenant_memory(stack, tenant_id, owner.user_id).history(
        tenant_id, owner.user_id, first["sessionId"]
    )
    other_history = tenant_memory(stack, tenant_id, other.user_id).history(
        tenant_id, other.user_id, first["sessionId"]
    )

    assert status == 403
    assert owner_history[0]["content"][0]["text"] == "Remember: my patient is in room 12."
    assert other_history == []


# ------------------------------------------------------------------------ quotas and limits


def test_daily_quota_admits_exactly_quota_then_429(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("basic", DOCUMENTS))
    # Sending 48 real requests first would take minutes, so the counter starts where they
    # would have left it. The next two requests are the 49th and 50th of the day.
    limits_table(stack).put_item(
        Item={
            "tenant_id": user.tenant_id,
            "limit_key": quota_key(datetime.now(UTC)),
            "request_count": BASIC.requests_per_day - 2,
        }
    )

    statuses = [post_invocation(target, user.token)[0] for _ in range(2)]
    status, body, headers = post_invocation(target, user.token)
    stack.wait_for_metering()

    assert statuses == [200, 200]
    assert status == 429
    assert body["error"]["code"] == "throttled"
    assert 1 <= int(headers["Retry-After"]) <= 86400
    assert totals_item(target, user.tenant_id).get("throttled_requests") == Decimal(1)


def test_daily_quota_resets_next_utc_day(onboard: Onboarding, stack: LocalStack) -> None:
    tenant_id = onboard.tenant("basic")
    today = datetime.now(UTC)
    limits_table(stack).put_item(
        Item={
            "tenant_id": tenant_id,
            "limit_key": quota_key(today),
            "request_count": BASIC.requests_per_day,
        }
    )
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)

    before = AdmissionControl(limits_table(stack), lambda: midnight - timedelta(seconds=1))
    after = AdmissionControl(limits_table(stack), lambda: midnight)

    assert before.admit(tenant_id, BASIC).limit == "daily_quota"
    assert after.admit(tenant_id, BASIC).admitted is True


def burst_of_requests(target: operations.Target, token: str, threads: int) -> list[int]:
    """Send `threads` requests at once. Each names a session that does not exist, so an
    admitted request ends with 403 before any agent work and a rejected one with 429."""
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    lock = threading.Lock()
    missing_session = str(uuid.uuid4())

    def send() -> None:
        barrier.wait()
        status, _, _ = post_invocation(target, token, missing_session)
        with lock:
            statuses.append(status)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statuses


def test_parallel_callers_admitted_exactly_burst(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("basic"))
    pin_bucket(stack, user.tenant_id, BASIC.burst)

    statuses = burst_of_requests(target, user.token, threads=10)

    # An admitted request ends with 403 (its session does not exist), a rejected one with 429.
    assert sorted(statuses) == [403] * BASIC.burst + [429] * (10 - BASIC.burst)


def test_parallel_callers_admitted_exactly_daily_quota(
    onboard: Onboarding, target: operations.Target, stack: LocalStack
) -> None:
    user = onboard.user(onboard.tenant("basic"))
    limits_table(stack).put_item(
        Item={
            "tenant_id": user.tenant_id,
            "limit_key": quota_key(datetime.now(UTC)),
            "request_count": BASIC.requests_per_day - 3,
        }
    )

    statuses = burst_of_requests(target, user.token, threads=8)

    # The bucket contains the burst (5), so at least 3 callers reach the quota and exactly the
    # 3 requests left of the day are admitted, however many tokens refill meanwhile.
    assert sorted(statuses) == [403] * 3 + [429] * 5


def test_rate_limit_rejection_has_retry_after(
    onboard: Onboarding, target: operations.Target
) -> None:
    user = onboard.user(onboard.tenant("basic"))
    missing_session = str(uuid.uuid4())
    responses: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(10)

    def send() -> None:
        barrier.wait()
        response = post_invocation(target, user.token, missing_session)
        with lock:
            responses.append(response)

    workers = [threading.Thread(target=send) for _ in range(10)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    # The rejection is taken from the burst itself: a later request could find the bucket
    # refilled on a slow machine.
    rejected = [(body, headers) for status, body, headers in responses if status == 429]
    assert rejected
    body, headers = rejected[0]
    assert body["error"]["code"] == "throttled"
    assert int(headers["Retry-After"]) >= 1


def test_tenants_of_one_tier_do_not_share_limits(
    onboard: Onboarding, target: operations.Target
) -> None:
    first = onboard.user(onboard.tenant("basic"))
    second = onboard.user(onboard.tenant("basic"))
    first_statuses = burst_of_requests(target, first.token, threads=10)

    second_statuses = burst_of_requests(target, second.token, threads=BASIC.burst)

    assert 429 in first_statuses
    assert second_statuses == [403] * BASIC.burst
