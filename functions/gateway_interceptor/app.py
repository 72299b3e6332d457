"""Gateway REQUEST interceptor: bound each tool call by the tenant registry and meter it.

AgentCore Gateway calls this function before each request reaches a tool target. For a
`tools/call` it:
1. verifies the caller's ID token again (signature, issuer, audience, expiry, `token_use`),
   because the tenant and user come only from verified claims;
2. sets the call's `tier` argument to the tenant's tier in the tenant registry, replacing what
   the caller sent (agentpool.tool_policy), so an upgrade, a downgrade or a suspension applies
   to the next call;
3. evaluates agentpool's Cedar tool policy on that call, checks the arguments against the
   tool's input model, and applies the tenant's tool call limits (agentpool.admission
   `tool_limits`). A call that the tool would reject, or one over the limits, is denied here
   and costs nothing;
4. publishes one Tool Invoked event for the decision, allowed or denied;
5. returns the call with the registry's tier when allowed, or a policy denial as the Gateway's
   response.

It replies to `tools/list` itself with the tools that the tenant's registry tier may call, so
a suspended tenant lists none.

AgentCore Policy evaluates the same Cedar text. If it runs after this function, it reads the
registry's tier that this function wrote. If it runs before, it reads the caller's own `tier`,
and this function then decides again on the registry's. Either way a call runs only if the
policy allows it on the registry's tier. Other MCP methods pass through unchanged.

The Gateway passes request headers (`passRequestHeaders`) so that the token can be read. The
token, the tool arguments and the results are never logged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentpool.admission import TOOL_KEY_PREFIX, AdmissionControl, tool_limits
from agentpool.events import ToolInvoked
from agentpool.identity import TENANT_CLAIM
from agentpool.observability import function_logger
from agentpool.publisher import MeteringPublisher, PublishError
from agentpool.registry import TenantRegistry
from agentpool.tiers import TIERS
from agentpool.tokens import CognitoJwtVerifier, TokenError
from agentpool.tool_metering import tool_event
from agentpool.tool_policy import ToolPolicy, denial_text, with_registry_tier
from agentpool.tools import input_error, tool_for_mcp_name

logger = function_logger()

OUTPUT_VERSION = "1.0"
# JSON-RPC error code of a request whose token this function does not accept.
UNAUTHORIZED = -32001
# JSON-RPC 2.0's error code of invalid method parameters.
INVALID_PARAMS = -32602


class Settings(BaseSettings):
    """Environment of the function, checked at cold start."""

    model_config = SettingsConfigDict(frozen=True)

    tenants_table: str
    limits_table: str
    event_bus_name: str
    token_issuer: str
    token_jwks_url: str
    token_audience: str


settings = Settings()
dynamodb = boto3.resource("dynamodb")
registry = TenantRegistry(dynamodb.Table(settings.tenants_table))
tool_admission = AdmissionControl(dynamodb.Table(settings.limits_table), key_prefix=TOOL_KEY_PREFIX)
publisher = MeteringPublisher(settings.event_bus_name)
verifier = CognitoJwtVerifier(
    settings.token_issuer, settings.token_jwks_url, settings.token_audience
)
policy = ToolPolicy()


def _pass_through(body: Any) -> dict[str, Any]:
    return {
        "interceptorOutputVersion": OUTPUT_VERSION,
        "mcp": {"transformedGatewayRequest": {"body": body}},
    }


def _respond(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "interceptorOutputVersion": OUTPUT_VERSION,
        "mcp": {"transformedGatewayResponse": {"statusCode": status, "body": body}},
    }


def _bearer_token(headers: dict[str, Any]) -> str:
    value = next((str(v) for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _registry_tier(tenant_id: Any) -> str | None:
    if not isinstance(tenant_id, str):
        return None
    tenant = registry.get(tenant_id)
    return tenant.tier if tenant is not None and tenant.status == "active" else None


def _meter(metering: ToolInvoked | None) -> None:
    """Publish the decision's Tool Invoked event, or log why there is none."""
    if metering is None:
        logger.info("tool call not metered: no active tenant")
        return
    try:
        publisher.publish([metering])
    except PublishError as error:
        # The decision is kept. The event id is logged so that a backfill can send it.
        logger.error("tool event not published", extra={"event_ids": error.event_ids})


def _decide_call(
    body: dict[str, Any], claims: dict[str, Any], tier: str | None, request_id: str
) -> dict[str, Any]:
    """Decide one `tools/call` on the registry's tier, meter it, and return the output."""
    rpc_id = body.get("id")
    params = body.get("params")
    params = params if isinstance(params, dict) else {}
    name = params.get("name")
    mcp_name = name if isinstance(name, str) else ""
    arguments = params.get("arguments")
    arguments = with_registry_tier(arguments if isinstance(arguments, dict) else {}, tier)

    decision = policy.authorize(claims, mcp_name, arguments)
    gateway_tool = tool_for_mcp_name(mcp_name)
    # A call that the policy allows but whose arguments the tool would reject runs nothing,
    # so it is denied here and costs nothing.
    problem = (
        input_error(gateway_tool.tool, arguments) if decision.allowed and gateway_tool else None
    )
    if decision.allowed and problem is None and tier is not None:
        admission = tool_admission.admit(str(claims[TENANT_CLAIM]), tool_limits(TIERS[tier]))
        if not admission.admitted:
            problem = (
                f"The tenant's tool call {admission.limit} limit is reached; retry in "
                f"{admission.retry_after_seconds} s."
            )
    allowed = decision.allowed and problem is None
    outcome: Literal["allowed", "denied"] = "allowed" if allowed else "denied"
    tenant_id = claims.get(TENANT_CLAIM)
    metering = tool_event(
        request_id=request_id,
        tool_call_id=json.dumps(rpc_id),
        mcp_name=mcp_name,
        decision=outcome,
        tenant_id=tenant_id if isinstance(tenant_id, str) else None,
        tier=tier,
        user_id=str(claims.get("sub", "")),
        event_time=datetime.now(UTC),
    )
    logger.info(
        "tool call decided",
        extra={
            "tenant_id": metering.tenant_id if metering else None,
            "tool": metering.tool if metering else None,
            "decision": outcome,
            "reason": problem or decision.reason,
        },
    )
    _meter(metering)

    if allowed:
        return _pass_through({**body, "params": {**params, "arguments": arguments}})
    if problem is not None:
        error = {"code": INVALID_PARAMS, "message": problem}
        return _respond(200, {"jsonrpc": "2.0", "id": rpc_id, "error": error})
    content = [{"type": "text", "text": denial_text(decision.reason)}]
    result = {"content": content, "isError": True}
    return _respond(200, {"jsonrpc": "2.0", "id": rpc_id, "result": result})


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event.get("mcp", {}).get("gatewayRequest", {})
    body = request.get("body")
    method = body.get("method") if isinstance(body, dict) else None
    if method not in ("tools/call", "tools/list"):
        return _pass_through(body)

    try:
        claims = verifier.verify(_bearer_token(request.get("headers") or {}))
    except TokenError as error:
        logger.info("tool request rejected", extra={"method": method, "reason": str(error)})
        error_body = {"code": UNAUTHORIZED, "message": "Unauthorized"}
        return _respond(401, {"jsonrpc": "2.0", "id": body.get("id"), "error": error_body})
    tier = _registry_tier(claims.get(TENANT_CLAIM))

    if method == "tools/list":
        tools = policy.listed_tools(claims, [tier])
        return _respond(200, {"jsonrpc": "2.0", "id": body.get("id"), "result": {"tools": tools}})
    return _decide_call(body, claims, tier, context.aws_request_id)
