"""AgentCore Gateway stand-in: MCP over HTTP, JWT inbound auth and Cedar tool policy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from agentpool.tokens import TokenError
from agentpool_dev.standins.gateway import GatewayStandIn

DOCUMENT_SEARCH = "document-search___search_documents"
WEB_SEARCH = "web-search___search_web"

TOKENS = {
    "token-basic": {"sub": "user-b", "custom:tenant_id": "clinic-basic", "custom:tier": "basic"},
    "token-premium": {
        "sub": "user-p",
        "custom:tenant_id": "hospital-premium",
        "custom:tier": "premium",
    },
    "token-unknown": {"sub": "user-u", "custom:tenant_id": "clinic-gone"},
    "token-no-tenant": {"sub": "user-n"},
}


class FakeVerifier:
    def verify(self, token: str) -> dict[str, Any]:
        if token not in TOKENS:
            raise TokenError("token is invalid")
        return TOKENS[token]


class FakeFunctions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.fail = False

    def __call__(self, logical_id: str, event: dict[str, Any], context: dict[str, Any]) -> Any:
        self.calls.append((logical_id, event, context))
        if self.fail:
            raise RuntimeError("secret tenant detail")
        return {"documents": [{"title": "Triage policy", "text": "See a nurse first."}]}


@pytest.fixture
def functions() -> FakeFunctions:
    return FakeFunctions()


@pytest.fixture
def gateway(functions: FakeFunctions) -> Iterator[GatewayStandIn]:
    server = GatewayStandIn(FakeVerifier(), functions)
    server.start()
    yield server
    server.stop()


def rpc(
    gateway: GatewayStandIn,
    method: str,
    params: dict[str, Any] | None = None,
    token: str | None = "token-basic",  # noqa: S107 - a fake token of FakeVerifier
    request_id: int | None = 1,
) -> tuple[int, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310
        f"{gateway.url}/mcp", data=json.dumps(message).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body else None


def call(
    gateway: GatewayStandIn, tool: str, token: str, tenant_id: str, user_id: str = "user-b"
) -> dict[str, Any]:
    # The agent sends its registry tier; without an interceptor, the policy reads it as sent.
    tier = TOKENS[token].get("custom:tier", "basic")
    arguments = {"query": "triage", "tenant_id": tenant_id, "user_id": user_id, "tier": tier}
    status, body = rpc(gateway, "tools/call", {"name": tool, "arguments": arguments}, token)
    assert status == 200
    return body


def listed_names(gateway: GatewayStandIn, token: str) -> list[str]:
    _, body = rpc(gateway, "tools/list", token=token)
    return [tool["name"] for tool in body["result"]["tools"]]


def test_initialize_returns_capabilities(gateway: GatewayStandIn) -> None:
    status, body = rpc(gateway, "initialize", {"protocolVersion": "2025-03-26"})
    assert status == 200
    assert body["result"]["protocolVersion"] == "2025-03-26"
    assert "tools" in body["result"]["capabilities"]


def test_initialized_notification_accepted(gateway: GatewayStandIn) -> None:
    status, body = rpc(gateway, "notifications/initialized", request_id=None)
    assert status == 202
    assert body is None


def test_missing_token_rejected(gateway: GatewayStandIn) -> None:
    status, _ = rpc(gateway, "tools/list", token=None)
    assert status == 401


def test_invalid_token_rejected(gateway: GatewayStandIn) -> None:
    status, _ = rpc(gateway, "tools/list", token="forged")
    assert status == 401


def test_list_shows_tools_some_tier_may_call(gateway: GatewayStandIn) -> None:
    # The tier is an argument of each call, so listing cannot know it: each call is decided.
    assert listed_names(gateway, "token-basic") == [DOCUMENT_SEARCH, WEB_SEARCH]


def test_list_token_without_tenant_shows_nothing(gateway: GatewayStandIn) -> None:
    assert listed_names(gateway, "token-no-tenant") == []


def test_list_includes_identity_in_schema(gateway: GatewayStandIn) -> None:
    _, body = rpc(gateway, "tools/list", token="token-basic")
    schema = body["result"]["tools"][0]["inputSchema"]
    assert "tenant_id" in schema["required"]
    assert "user_id" in schema["required"]


def test_call_allowed_runs_function(gateway: GatewayStandIn, functions: FakeFunctions) -> None:
    body = call(gateway, DOCUMENT_SEARCH, "token-basic", "clinic-basic")
    assert body["result"]["isError"] is False
    assert json.loads(body["result"]["content"][0]["text"])["documents"][0]["title"] == (
        "Triage policy"
    )
    logical_id, event, context = functions.calls[0]
    assert logical_id == "DocumentSearchFunction"
    assert event == {
        "query": "triage",
        "tenant_id": "clinic-basic",
        "user_id": "user-b",
        "tier": "basic",
    }
    assert context["custom"]["bedrockAgentCoreToolName"] == DOCUMENT_SEARCH
    assert context["custom"]["bedrockAgentCoreGatewayId"] == gateway.gateway_id
    assert context["custom"]["bedrockAgentCoreTargetId"] == "document-search"


def test_call_basic_web_search_denied(gateway: GatewayStandIn, functions: FakeFunctions) -> None:
    body = call(gateway, WEB_SEARCH, "token-basic", "clinic-basic")
    assert body["result"]["isError"] is True
    text = body["result"]["content"][0]["text"]
    assert text.startswith("AuthorizeActionException - Tool Execution Denied")
    assert "denied by default" in text
    assert functions.calls == []


def test_call_premium_web_search_allowed(gateway: GatewayStandIn) -> None:
    body = call(gateway, WEB_SEARCH, "token-premium", "hospital-premium", "user-p")
    assert body["result"]["isError"] is False


def test_call_other_tenant_denied(gateway: GatewayStandIn, functions: FakeFunctions) -> None:
    body = call(gateway, DOCUMENT_SEARCH, "token-premium", "clinic-basic", "user-p")
    assert body["result"]["isError"] is True
    assert "Policy evaluation denied due to" in body["result"]["content"][0]["text"]
    assert functions.calls == []


def test_call_without_tenant_denied(gateway: GatewayStandIn) -> None:
    status, body = rpc(
        gateway,
        "tools/call",
        {"name": DOCUMENT_SEARCH, "arguments": {"query": "q", "user_id": "user-b"}},
    )
    assert status == 200
    assert body["result"]["isError"] is True


def test_call_without_tier_denied(gateway: GatewayStandIn, functions: FakeFunctions) -> None:
    # The interceptor sends no tier for a suspended or unknown tenant.
    arguments = {"query": "triage", "tenant_id": "clinic-basic", "user_id": "user-b"}
    _, body = rpc(gateway, "tools/call", {"name": DOCUMENT_SEARCH, "arguments": arguments})
    assert body["result"]["isError"] is True
    assert functions.calls == []


def test_call_unknown_tool_is_error(gateway: GatewayStandIn) -> None:
    status, body = rpc(gateway, "tools/call", {"name": "x___y", "arguments": {}})
    assert status == 200
    assert body["error"]["code"] == -32602


def test_call_missing_argument_is_error(gateway: GatewayStandIn) -> None:
    arguments = {"tenant_id": "clinic-basic", "user_id": "user-b", "tier": "basic"}
    _, body = rpc(gateway, "tools/call", {"name": DOCUMENT_SEARCH, "arguments": arguments})
    assert body["error"]["code"] == -32602
    assert "query" in body["error"]["message"]


def test_call_function_failure_hides_message(
    gateway: GatewayStandIn, functions: FakeFunctions
) -> None:
    functions.fail = True
    body = call(gateway, DOCUMENT_SEARCH, "token-basic", "clinic-basic")
    assert body["result"]["isError"] is True
    assert "RuntimeError" in body["result"]["content"][0]["text"]
    assert "secret" not in body["result"]["content"][0]["text"]


def test_decisions_recorded(gateway: GatewayStandIn) -> None:
    call(gateway, DOCUMENT_SEARCH, "token-basic", "clinic-basic")
    call(gateway, WEB_SEARCH, "token-basic", "clinic-basic")
    recorded = [(d.tool, d.tenant_id, d.decision) for d in gateway.decisions]
    assert recorded == [
        (DOCUMENT_SEARCH, "clinic-basic", "allowed"),
        (WEB_SEARCH, "clinic-basic", "denied"),
    ]


class Interceptor(FakeFunctions):
    """Tool functions plus a REQUEST interceptor that denies web search and passes the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, Any]] = []

    def __call__(self, logical_id: str, event: dict[str, Any], context: Any) -> Any:
        if logical_id != "InterceptorFunction":
            return super().__call__(logical_id, event, context)
        self.inputs.append(event)
        body = event["mcp"]["gatewayRequest"]["body"]
        if body.get("params", {}).get("name") == WEB_SEARCH:
            denial = {"jsonrpc": "2.0", "id": body["id"], "result": {"isError": True}}
            return {
                "interceptorOutputVersion": "1.0",
                "mcp": {"transformedGatewayResponse": {"statusCode": 200, "body": denial}},
            }
        return {
            "interceptorOutputVersion": "1.0",
            "mcp": {"transformedGatewayRequest": {"body": body}},
        }


@pytest.fixture
def intercepted() -> Iterator[tuple[GatewayStandIn, Interceptor]]:
    functions = Interceptor()
    server = GatewayStandIn(FakeVerifier(), functions, interceptor_function="InterceptorFunction")
    server.start()
    yield server, functions
    server.stop()


def test_interceptor_response_is_sent_at_once(
    intercepted: tuple[GatewayStandIn, Interceptor],
) -> None:
    server, functions = intercepted
    # The token is premium, so the policy alone would allow the call.
    body = call(server, WEB_SEARCH, "token-premium", "hospital-premium", "user-p")

    assert body["result"] == {"isError": True}
    assert [logical_id for logical_id, _, _ in functions.calls] == []
    assert [(d.tool, d.decision) for d in server.decisions] == [(WEB_SEARCH, "denied")]


def test_interceptor_gets_headers_and_request(
    intercepted: tuple[GatewayStandIn, Interceptor],
) -> None:
    server, functions = intercepted

    body = call(server, DOCUMENT_SEARCH, "token-basic", "clinic-basic")

    assert body["result"]["isError"] is False
    [event] = functions.inputs
    request = event["mcp"]["gatewayRequest"]
    assert request["headers"]["authorization"] == "Bearer token-basic"
    assert request["body"]["params"]["name"] == DOCUMENT_SEARCH
    assert [logical_id for logical_id, _, _ in functions.calls] == ["DocumentSearchFunction"]


def test_unknown_method_not_found(gateway: GatewayStandIn) -> None:
    _, body = rpc(gateway, "resources/subscribe")
    assert body["error"]["code"] == -32601


def test_invalid_json_is_parse_error(gateway: GatewayStandIn) -> None:
    request = urllib.request.Request(  # noqa: S310
        f"{gateway.url}/mcp",
        data=b"{not json",
        headers={"Authorization": "Bearer token-basic"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"]["code"] == -32700
