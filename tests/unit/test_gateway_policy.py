"""Cedar tool policy against the tier config, and metering of every Gateway decision."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from agentpool.events import MeteringEvent, ToolInvoked
from agentpool.publisher import PublishError
from agentpool.tiers import TIERS, Tool
from agentpool.tool_metering import UNKNOWN_TOOL, tool_event_id
from agentpool.tools import GATEWAY_TOOLS
from agentpool_dev.jwt_verifier import TokenError
from agentpool_dev.standins.gateway import GatewayCaller, GatewayStandIn

DOCUMENT_SEARCH = GATEWAY_TOOLS[Tool.DOCUMENT_SEARCH].mcp_name
WEB_SEARCH = GATEWAY_TOOLS[Tool.WEB_SEARCH].mcp_name
TOKENS = {
    "token-basic": {"sub": "user-b", "custom:tenant_id": "clinic-basic"},
    "token-premium": {"sub": "user-p", "custom:tenant_id": "hospital-premium"},
    "token-gone": {"sub": "user-g", "custom:tenant_id": "clinic-gone"},
}
TENANT_TIERS = {"clinic-basic": "basic", "hospital-premium": "premium"}


class FakeVerifier:
    def verify(self, token: str) -> dict[str, Any]:
        if token not in TOKENS:
            raise TokenError("token is invalid")
        return TOKENS[token]


class RecordingBus:
    def __init__(self) -> None:
        self.events: list[MeteringEvent] = []
        self.fail = False

    def __call__(self, events: Sequence[MeteringEvent]) -> None:
        if self.fail:
            raise PublishError([event.event_id for event in events])
        self.events.extend(events)


@pytest.fixture
def bus() -> RecordingBus:
    return RecordingBus()


@pytest.fixture
def gateway(bus: RecordingBus) -> Iterator[GatewayStandIn]:
    server = GatewayStandIn(
        FakeVerifier(), lambda *_args: {"results": []}, TENANT_TIERS.get, publish_events=bus
    )
    server.start()
    yield server
    server.stop()


def call_tool(
    gateway: GatewayStandIn, token: str, name: str, arguments: dict[str, Any], rpc_id: int = 7
) -> dict[str, Any]:
    message = {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    request = urllib.request.Request(  # noqa: S310 - the stand-in on 127.0.0.1
        f"{gateway.url}/mcp",
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body: dict[str, Any] = json.loads(response.read())
    return body


def own_arguments(token: str, **extra: Any) -> dict[str, Any]:
    claims = TOKENS[token]
    return {
        "query": "triage",
        "tenant_id": claims["custom:tenant_id"],
        "user_id": claims["sub"],
        **extra,
    }


def is_denied(body: dict[str, Any]) -> bool:
    return bool(body["result"]["isError"]) and body["result"]["content"][0]["text"].startswith(
        "AuthorizeActionException"
    )


@pytest.mark.parametrize("tier_name", sorted(TIERS))
@pytest.mark.parametrize("tool", list(Tool))
def test_cedar_policy_matches_tier_tools(
    gateway: GatewayStandIn, tier_name: str, tool: Tool
) -> None:
    caller = GatewayCaller(user_id="u-1", tenant_id="clinic-a", tier=tier_name)
    arguments = {"query": "q", "tenant_id": "clinic-a", "user_id": "u-1"}

    allowed, _ = gateway.authorize(caller, GATEWAY_TOOLS[tool], arguments)

    assert allowed is (tool in TIERS[tier_name].tools)


@pytest.mark.parametrize("tier", [None, "enterprise", ""])
def test_cedar_denies_unknown_tier_by_default(gateway: GatewayStandIn, tier: str | None) -> None:
    caller = GatewayCaller(user_id="u-1", tenant_id="clinic-a", tier=tier)
    arguments = {"query": "q", "tenant_id": "clinic-a", "user_id": "u-1"}

    decisions = [gateway.authorize(caller, tool, arguments)[0] for tool in GATEWAY_TOOLS.values()]

    assert decisions == [False] * len(GATEWAY_TOOLS)


def test_cedar_denies_other_user_of_same_tenant(gateway: GatewayStandIn) -> None:
    body = call_tool(
        gateway, "token-basic", DOCUMENT_SEARCH, own_arguments("token-basic", user_id="user-x")
    )

    assert is_denied(body)


@pytest.mark.parametrize("name", ["../clinic-other/documents/a.md", "a/b.md", "x..md"])
def test_cedar_denies_document_path(gateway: GatewayStandIn, name: str) -> None:
    body = call_tool(
        gateway, "token-basic", DOCUMENT_SEARCH, own_arguments("token-basic", document=name)
    )

    assert is_denied(body)


def test_cedar_allows_plain_document_name(gateway: GatewayStandIn) -> None:
    body = call_tool(
        gateway, "token-basic", DOCUMENT_SEARCH, own_arguments("token-basic", document="a.md")
    )

    assert body["result"]["isError"] is False


def test_allowed_call_publishes_one_event(gateway: GatewayStandIn, bus: RecordingBus) -> None:
    call_tool(gateway, "token-basic", DOCUMENT_SEARCH, own_arguments("token-basic"))

    assert len(bus.events) == 1
    event = bus.events[0]
    assert isinstance(event, ToolInvoked)
    assert (event.tenant_id, event.tier, event.user_id) == ("clinic-basic", "basic", "user-b")
    assert (event.tool, event.decision) == ("document_search", "allowed")


def test_denied_call_publishes_denied_event(gateway: GatewayStandIn, bus: RecordingBus) -> None:
    body = call_tool(gateway, "token-basic", WEB_SEARCH, own_arguments("token-basic"))

    assert is_denied(body)
    assert [(e.tool, e.decision) for e in bus.events if isinstance(e, ToolInvoked)] == [
        ("web_search", "denied")
    ]


def test_unknown_tool_metered_as_unknown(gateway: GatewayStandIn, bus: RecordingBus) -> None:
    call_tool(gateway, "token-basic", "evil___tool", own_arguments("token-basic"))

    assert [(e.tool, e.decision) for e in bus.events if isinstance(e, ToolInvoked)] == [
        (UNKNOWN_TOOL, "denied")
    ]


def test_inactive_tenant_decision_not_metered(gateway: GatewayStandIn, bus: RecordingBus) -> None:
    call_tool(gateway, "token-gone", DOCUMENT_SEARCH, own_arguments("token-gone"))

    assert bus.events == []
    assert gateway.decisions[-1].decision == "denied"


def test_event_id_derives_from_request_and_call(gateway: GatewayStandIn, bus: RecordingBus) -> None:
    call_tool(gateway, "token-basic", DOCUMENT_SEARCH, own_arguments("token-basic"), rpc_id=42)

    decision = gateway.decisions[-1]
    assert bus.events[0].event_id == tool_event_id(decision.request_id, "42")
    assert bus.events[0].request_id == decision.request_id


def test_repeated_rpc_id_gets_new_event_id(gateway: GatewayStandIn, bus: RecordingBus) -> None:
    # A caller that reuses a JSON-RPC id still gets every call metered.
    for _ in range(3):
        call_tool(gateway, "token-basic", DOCUMENT_SEARCH, own_arguments("token-basic"), rpc_id=1)

    assert len({event.event_id for event in bus.events}) == 3


def test_publish_failure_keeps_decision(gateway: GatewayStandIn, bus: RecordingBus) -> None:
    bus.fail = True

    body = call_tool(gateway, "token-basic", DOCUMENT_SEARCH, own_arguments("token-basic"))

    assert body["result"]["isError"] is False
