"""The Cedar tool policy against the tier config, and the Gateway interceptor that bounds it by
the tenant registry and meters every decision."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cedarpy
import pytest

from agentpool.admission import Admission, LimitName
from agentpool.events import MeteringEvent, ToolInvoked
from agentpool.publisher import PublishError
from agentpool.registry import Tenant
from agentpool.tiers import TIERS, TierConfig, Tool
from agentpool.tokens import TokenError
from agentpool.tool_metering import UNKNOWN_TOOL, tool_event_id
from agentpool.tool_policy import POLICY_PATH, ToolPolicy, with_registry_tier
from agentpool.tools import GATEWAY_TOOLS

APP_PATH = Path(__file__).resolve().parents[2] / "functions" / "gateway_interceptor" / "app.py"
DOCUMENT_SEARCH = GATEWAY_TOOLS[Tool.DOCUMENT_SEARCH].mcp_name
WEB_SEARCH = GATEWAY_TOOLS[Tool.WEB_SEARCH].mcp_name
POLICY = ToolPolicy()


def claims(tenant_id: str = "clinic-a", tier: str = "basic", sub: str = "u-1") -> dict[str, Any]:
    # `custom:tier` is what the user was created with; the policy never reads it.
    return {"sub": sub, "custom:tenant_id": tenant_id, "custom:tier": tier, "token_use": "id"}


def own_arguments(tier: str | None = "basic", **changes: Any) -> dict[str, Any]:
    arguments = {"query": "triage", "tenant_id": "clinic-a", "user_id": "u-1", **changes}
    if tier is not None:
        arguments["tier"] = tier
    return arguments


# ------------------------------------------------------------------------- the Cedar policy


@pytest.mark.parametrize("tier_name", sorted(TIERS))
@pytest.mark.parametrize("tool", list(Tool))
def test_cedar_policy_matches_tier_tools(tier_name: str, tool: Tool) -> None:
    decision = POLICY.authorize(
        claims(), GATEWAY_TOOLS[tool].mcp_name, own_arguments(tier=tier_name)
    )

    assert decision.allowed is (tool in TIERS[tier_name].tools)


@pytest.mark.parametrize("tier", [None, "enterprise", "", "Premium"])
def test_cedar_denies_unknown_tier_by_default(tier: str | None) -> None:
    decisions = [
        POLICY.authorize(claims(tier="premium"), tool.mcp_name, own_arguments(tier=tier)).allowed
        for tool in GATEWAY_TOOLS.values()
    ]

    assert decisions == [False] * len(GATEWAY_TOOLS)


@pytest.mark.parametrize(
    "arguments",
    [
        own_arguments("premium", tenant_id="clinic-b"),
        own_arguments("premium", user_id="u-2"),
        {"query": "triage", "user_id": "u-1", "tier": "premium"},
        {"query": "triage", "tenant_id": "clinic-a", "tier": "premium"},
        own_arguments("premium", document="../clinic-b/documents/a.md"),
        own_arguments("premium", document="a/b.md"),
        own_arguments("premium", document="x..md"),
    ],
    ids=["other-tenant", "other-user", "no-tenant", "no-user", "parent", "folder", "dots"],
)
def test_cedar_denies_premium_caller_out_of_bounds(arguments: dict[str, Any]) -> None:
    decision = POLICY.authorize(claims(tier="premium"), DOCUMENT_SEARCH, arguments)

    assert decision.allowed is False
    assert decision.policy_ids  # a forbid decided it, not the default


def test_cedar_allows_plain_document_name() -> None:
    decision = POLICY.authorize(claims(), DOCUMENT_SEARCH, own_arguments(document="a.md"))

    assert decision.allowed is True


def test_cedar_denies_unknown_tool_by_default() -> None:
    decision = POLICY.authorize(claims(), "evil___tool", own_arguments("premium"))

    assert (decision.allowed, decision.policy_ids) == (False, ())


def test_cedar_denies_token_without_tenant() -> None:
    token_claims = claims()
    del token_claims["custom:tenant_id"]

    assert POLICY.authorize(token_claims, DOCUMENT_SEARCH, own_arguments()).allowed is False


# The request shape that AgentCore Policy evaluates: claims as tags of an OAuthUser, one action
# per Gateway tool with the tool's arguments as context.input.
AGENTCORE_SCHEMA = {
    "AgentCore": {
        "entityTypes": {
            "OAuthUser": {
                "shape": {"type": "Record", "attributes": {}},
                "tags": {"type": "String"},
            },
            "Gateway": {"shape": {"type": "Record", "attributes": {}}},
        },
        "actions": {
            tool.mcp_name: {
                "appliesTo": {
                    "principalTypes": ["OAuthUser"],
                    "resourceTypes": ["Gateway"],
                    "context": {
                        "type": "Record",
                        "attributes": {
                            "input": {
                                "type": "Record",
                                "attributes": {
                                    name: {
                                        "type": "Long" if spec["type"] == "integer" else "String",
                                        "required": name in tool.gateway_input_schema["required"],
                                    }
                                    for name, spec in tool.gateway_input_schema[
                                        "properties"
                                    ].items()
                                },
                            }
                        },
                    },
                }
            }
            for tool in GATEWAY_TOOLS.values()
        },
    }
}


def test_policy_validates_against_agentcore_request_shape() -> None:
    result = cedarpy.validate_policies(POLICY_PATH.read_text(), json.dumps(AGENTCORE_SCHEMA))

    assert result.validation_passed, [str(error) for error in result.errors]


# ------------------------------------------------------------- the registry decides the tier


@pytest.mark.parametrize(
    ("sent", "registry_tier", "expected"),
    [
        ("premium", "basic", "basic"),  # a caller's own tier is replaced
        (None, "premium", "premium"),
        ("basic", "premium", "premium"),  # an upgrade applies at once
        ("premium", None, None),  # a suspended or unknown tenant has no tier
    ],
)
def test_registry_tier_replaces_sent_tier(
    sent: str | None, registry_tier: str | None, expected: str | None
) -> None:
    arguments = with_registry_tier(own_arguments(tier=sent), registry_tier)

    assert arguments.get("tier") == expected
    assert arguments["tenant_id"] == "clinic-a"
    assert arguments["query"] == "triage"


# ------------------------------------------------------------------- the Gateway interceptor


@dataclass
class FakeContext:
    function_name: str = "gateway-interceptor"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:interceptor"
    aws_request_id: str = "6f1c2b9e-3d4a-4e57-8b3c-6a1f9e2d7c45"


TOKENS = {
    "token-basic": claims("clinic-a", "basic", "u-1"),
    "token-stale-premium": claims("clinic-a", "premium", "u-1"),
    "token-upgraded": claims("clinic-up", "basic", "u-3"),
    "token-premium": claims("hospital-b", "premium", "u-9"),
    "token-suspended": claims("clinic-gone", "basic", "u-5"),
}
REGISTRY = {
    "clinic-a": Tenant(tenant_id="clinic-a", name="Clinic A", tier="basic", status="active"),
    "hospital-b": Tenant(
        tenant_id="hospital-b", name="Hospital B", tier="premium", status="active"
    ),
    "clinic-gone": Tenant(tenant_id="clinic-gone", name="Gone", tier="basic", status="suspended"),
    "clinic-up": Tenant(tenant_id="clinic-up", name="Clinic Up", tier="premium", status="active"),
}


class FakeVerifier:
    def verify(self, token: str) -> dict[str, Any]:
        if token not in TOKENS:
            raise TokenError("token is invalid: InvalidSignatureError")
        return TOKENS[token]


class FakeRegistry:
    def get(self, tenant_id: str) -> Tenant | None:
        return REGISTRY.get(tenant_id)


class FakeAdmission:
    """Admits every call until `limit` is set, and records the limits it was asked for."""

    def __init__(self) -> None:
        self.limit: LimitName | None = None
        self.asked: list[tuple[str, int, int, int]] = []

    def admit(self, tenant_id: str, tier: TierConfig) -> Admission:
        self.asked.append((tenant_id, tier.requests_per_second, tier.burst, tier.requests_per_day))
        if self.limit is None:
            return Admission(admitted=True)
        return Admission(False, self.limit, 3)


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[MeteringEvent] = []
        self.fail = False

    def publish(self, events: Sequence[MeteringEvent]) -> None:
        if self.fail:
            raise PublishError([event.event_id for event in events])
        self.events.extend(events)


@pytest.fixture
def interceptor(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TENANTS_TABLE": "tenants",
        "LIMITS_TABLE": "limits",
        "EVENT_BUS_NAME": "metering",
        "TOKEN_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool",
        "TOKEN_JWKS_URL": "http://127.0.0.1:9/jwks.json",
        "TOKEN_AUDIENCE": "client",
        "POWERTOOLS_SERVICE_NAME": f"interceptor-{uuid.uuid4().hex[:8]}",
    }.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(f"interceptor_{uuid.uuid4().hex}", APP_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "verifier", FakeVerifier())
    monkeypatch.setattr(module, "registry", FakeRegistry())
    monkeypatch.setattr(module, "publisher", RecordingPublisher())
    monkeypatch.setattr(module, "tool_admission", FakeAdmission())
    return module


def gateway_input(method: str, token: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": 7, "method": method}
    if params is not None:
        body["params"] = params
    return {
        "interceptorInputVersion": "1.0",
        "mcp": {
            "rawGatewayRequest": {"body": json.dumps(body)},
            "gatewayRequest": {
                "path": "/mcp",
                "httpMethod": "POST",
                "headers": {"Authorization": f"Bearer {token}", "Mcp-Session-Id": "s-1"},
                "body": body,
            },
        },
    }


def tool_call(tool: str, token: str, **arguments: Any) -> dict[str, Any]:
    subject = TOKENS.get(token, {})
    args = {
        "query": "chest pain triage",
        "tenant_id": subject.get("custom:tenant_id", "clinic-a"),
        "user_id": subject.get("sub", "u-1"),
        **arguments,
    }
    return gateway_input("tools/call", token, {"name": tool, "arguments": args})


def events(module: ModuleType) -> list[tuple[str, str, str, str]]:
    return [
        (event.tenant_id, event.tier, event.tool, event.decision)
        for event in module.publisher.events
        if isinstance(event, ToolInvoked)
    ]


def test_other_methods_pass_through(interceptor: ModuleType) -> None:
    event = gateway_input("initialize", "token-basic")

    output = interceptor.lambda_handler(event, FakeContext())

    assert output == {
        "interceptorOutputVersion": "1.0",
        "mcp": {"transformedGatewayRequest": {"body": event["mcp"]["gatewayRequest"]["body"]}},
    }
    assert interceptor.publisher.events == []


@pytest.mark.parametrize(
    ("token", "listed"),
    [
        ("token-basic", [DOCUMENT_SEARCH]),
        ("token-premium", [DOCUMENT_SEARCH, WEB_SEARCH]),
        ("token-upgraded", [DOCUMENT_SEARCH, WEB_SEARCH]),
        ("token-stale-premium", [DOCUMENT_SEARCH]),
        ("token-suspended", []),
    ],
)
def test_tools_list_follows_registry_tier(
    interceptor: ModuleType, token: str, listed: list[str]
) -> None:
    output = interceptor.lambda_handler(gateway_input("tools/list", token), FakeContext())

    response = output["mcp"]["transformedGatewayResponse"]
    assert response["statusCode"] == 200
    assert [tool["name"] for tool in response["body"]["result"]["tools"]] == listed
    assert interceptor.publisher.events == []


def test_allowed_call_goes_on_and_is_metered(interceptor: ModuleType) -> None:
    event = tool_call(DOCUMENT_SEARCH, "token-basic")

    output = interceptor.lambda_handler(event, FakeContext())

    forwarded = output["mcp"]["transformedGatewayRequest"]["body"]
    sent = event["mcp"]["gatewayRequest"]["body"]
    assert forwarded["params"]["arguments"] == {**sent["params"]["arguments"], "tier": "basic"}
    assert forwarded["params"]["name"] == DOCUMENT_SEARCH
    assert forwarded["id"] == sent["id"]
    assert events(interceptor) == [("clinic-a", "basic", "document_search", "allowed")]
    [metered] = interceptor.publisher.events
    assert metered.event_id == tool_event_id(FakeContext.aws_request_id, "7")
    assert metered.user_id == "u-1"


def test_premium_tenant_may_search_the_web(interceptor: ModuleType) -> None:
    output = interceptor.lambda_handler(tool_call(WEB_SEARCH, "token-premium"), FakeContext())

    assert "transformedGatewayRequest" in output["mcp"]
    assert events(interceptor) == [("hospital-b", "premium", "web_search", "allowed")]


def test_downgraded_tenant_denied_web_search(interceptor: ModuleType) -> None:
    # The user was created on premium; the registry has the tenant on basic now.
    output = interceptor.lambda_handler(tool_call(WEB_SEARCH, "token-stale-premium"), FakeContext())

    response = output["mcp"]["transformedGatewayResponse"]
    assert response["statusCode"] == 200
    assert response["body"]["result"]["isError"] is True
    assert response["body"]["result"]["content"][0]["text"].startswith("AuthorizeActionException")
    assert events(interceptor) == [("clinic-a", "basic", "web_search", "denied")]


def test_sent_premium_tier_replaced_by_registry(interceptor: ModuleType) -> None:
    event = tool_call(WEB_SEARCH, "token-basic", tier="premium")

    output = interceptor.lambda_handler(event, FakeContext())

    assert "transformedGatewayResponse" in output["mcp"]
    assert events(interceptor) == [("clinic-a", "basic", "web_search", "denied")]


def test_upgraded_tenant_gets_web_search_at_once(interceptor: ModuleType) -> None:
    # The user was created on basic, so the token's tier claim is still basic.
    output = interceptor.lambda_handler(tool_call(WEB_SEARCH, "token-upgraded"), FakeContext())

    forwarded = output["mcp"]["transformedGatewayRequest"]["body"]
    assert forwarded["params"]["arguments"]["tier"] == "premium"
    assert events(interceptor) == [("clinic-up", "premium", "web_search", "allowed")]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"query": ""}, "query"),
        ({"max_results": 10_000}, "max_results"),
        ({"max_results": -1}, "max_results"),
        ({"query": "q" * 200_000}, "query"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_arguments_denied_unbilled(
    interceptor: ModuleType, changes: dict[str, Any], field: str
) -> None:
    event = tool_call(WEB_SEARCH, "token-premium", **changes)

    output = interceptor.lambda_handler(event, FakeContext())

    error = output["mcp"]["transformedGatewayResponse"]["body"]["error"]
    assert error["code"] == -32602
    assert error["message"].startswith(f"Invalid {field}:")
    assert events(interceptor) == [("hospital-b", "premium", "web_search", "denied")]


def test_missing_query_denied_unbilled(interceptor: ModuleType) -> None:
    event = tool_call(WEB_SEARCH, "token-premium")
    del event["mcp"]["gatewayRequest"]["body"]["params"]["arguments"]["query"]

    output = interceptor.lambda_handler(event, FakeContext())

    error = output["mcp"]["transformedGatewayResponse"]["body"]["error"]
    assert error["message"] == "Invalid query: Field required."
    assert events(interceptor) == [("hospital-b", "premium", "web_search", "denied")]


def test_tool_calls_use_tool_limits(interceptor: ModuleType) -> None:
    interceptor.lambda_handler(tool_call(DOCUMENT_SEARCH, "token-basic"), FakeContext())

    # Basic allows 2 requests a second, burst 5 and 50 a day; one request may make 12 calls.
    assert interceptor.tool_admission.asked == [("clinic-a", 24, 60, 600)]


@pytest.mark.parametrize("limit", ["rate", "daily_quota"])
def test_call_over_tool_limit_denied_unbilled(interceptor: ModuleType, limit: LimitName) -> None:
    interceptor.tool_admission.limit = limit

    output = interceptor.lambda_handler(tool_call(WEB_SEARCH, "token-premium"), FakeContext())

    error = output["mcp"]["transformedGatewayResponse"]["body"]["error"]
    assert error["code"] == -32602
    assert error["message"] == f"The tenant's tool call {limit} limit is reached; retry in 3 s."
    assert events(interceptor) == [("hospital-b", "premium", "web_search", "denied")]


def test_denied_call_takes_no_tool_token(interceptor: ModuleType) -> None:
    interceptor.lambda_handler(tool_call(WEB_SEARCH, "token-basic"), FakeContext())

    assert interceptor.tool_admission.asked == []


def test_basic_tenant_denied_web_search(interceptor: ModuleType) -> None:
    output = interceptor.lambda_handler(tool_call(WEB_SEARCH, "token-basic"), FakeContext())

    assert "transformedGatewayResponse" in output["mcp"]
    assert events(interceptor) == [("clinic-a", "basic", "web_search", "denied")]


def test_other_tenant_in_input_denied(interceptor: ModuleType) -> None:
    event = tool_call(DOCUMENT_SEARCH, "token-basic", tenant_id="hospital-b")

    output = interceptor.lambda_handler(event, FakeContext())

    assert "transformedGatewayResponse" in output["mcp"]
    assert events(interceptor) == [("clinic-a", "basic", "document_search", "denied")]


def test_suspended_tenant_denied_and_not_billed(interceptor: ModuleType) -> None:
    output = interceptor.lambda_handler(
        tool_call(DOCUMENT_SEARCH, "token-suspended"), FakeContext()
    )

    assert "transformedGatewayResponse" in output["mcp"]
    assert interceptor.publisher.events == []


def test_unknown_tool_denied_and_metered_as_unknown(interceptor: ModuleType) -> None:
    output = interceptor.lambda_handler(tool_call("evil___tool", "token-basic"), FakeContext())

    assert "transformedGatewayResponse" in output["mcp"]
    assert events(interceptor) == [("clinic-a", "basic", UNKNOWN_TOOL, "denied")]


@pytest.mark.parametrize("token", ["forged", ""])
def test_unverified_token_rejected_without_event(interceptor: ModuleType, token: str) -> None:
    output = interceptor.lambda_handler(tool_call(DOCUMENT_SEARCH, token), FakeContext())

    response = output["mcp"]["transformedGatewayResponse"]
    assert response["statusCode"] == 401
    assert response["body"]["error"]["message"] == "Unauthorized"
    assert interceptor.publisher.events == []


def test_publish_failure_keeps_decision(interceptor: ModuleType) -> None:
    interceptor.publisher.fail = True

    output = interceptor.lambda_handler(tool_call(DOCUMENT_SEARCH, "token-basic"), FakeContext())

    assert "transformedGatewayRequest" in output["mcp"]


def test_logs_hold_no_token_or_arguments(
    interceptor: ModuleType, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    interceptor.lambda_handler(tool_call(WEB_SEARCH, "token-basic"), FakeContext())
    interceptor.lambda_handler(tool_call(DOCUMENT_SEARCH, "forged"), FakeContext())

    logs = capsys.readouterr().out + caplog.text
    assert "tool call decided" in logs
    for secret in ("token-basic", "forged", "chest pain"):
        assert secret not in logs
