"""Local stand-in for an Amazon Bedrock AgentCore Gateway with Lambda targets and Cedar policy.

It serves MCP over streamable HTTP at `POST /mcp` (JSON-RPC 2.0 `initialize`,
`notifications/initialized`, `tools/list` and `tools/call`). Replies are `application/json`.

- Inbound auth works like the Gateway's CUSTOM_JWT authorizer: the `Authorization: Bearer`
  token must pass `verifier.verify`, otherwise the reply is HTTP 401.
- Authorization uses the Cedar policies in `policies/tools.cedar`, evaluated with cedarpy.
  The caller's tier comes from `tenant_tier_lookup`, the tenant registry, never from a token
  claim. `tools/list` lists only the tools that the caller may call.
- A denied `tools/call` returns a JSON-RPC result with `isError: true` and the text that
  AgentCore Gateway sends for a policy denial (AgentCore developer guide, "Use an AgentCore
  Gateway with Policy", section "Policy responses").
- An allowed call runs `invoke_function(function_logical_id, event, client_context)`, where
  `event` is the tool arguments and `client_context` carries the `bedrockAgentCore*` keys
  that the Gateway passes to Lambda targets.

Every `tools/call` decision is appended to `decisions` and, when the caller's tenant is
registered and active, published as one Tool Invoked event through `publish_events`, so
calls made without the agent are metered too (see agentpool.tool_metering). Each
`tools/call` gets its own Gateway request id, from which the event id derives together with
the JSON-RPC id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import cedarpy

from agentpool.events import MeteringEvent
from agentpool.identity import TENANT_CLAIM
from agentpool.publisher import PublishError
from agentpool.tool_metering import tool_event
from agentpool.tools import GATEWAY_TOOLS, GatewayTool, tool_for_mcp_name
from agentpool_dev.jwt_verifier import TokenError
from agentpool_dev.standins.http import HttpRequest, HttpResponse, StandInServer, json_response

logger = logging.getLogger(__name__)

POLICY_PATH = Path(__file__).resolve().parents[3] / "policies" / "tools.cedar"
SUPPORTED_PROTOCOL_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")
SERVER_INFO = {"name": "agentpool-gateway-standin", "version": "0.1.0"}
# The texts of AgentCore Gateway's policy denials, with the reason in brackets.
POLICY_DENIED_TEXT = (
    "AuthorizeActionException - Tool Execution Denied: Tool call not allowed due to policy "
    "enforcement [{reason}]"
)
DENIED_BY_DEFAULT = "No policy applies to the request (denied by default)."
STAND_IN_NOTE = "This is the local AgentCore Gateway stand-in."

# JSON-RPC 2.0 error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

InvokeFunction = Callable[[str, dict[str, Any], dict[str, Any]], Any]
TenantTierLookup = Callable[[str], "str | None"]
PublishEvents = Callable[[Sequence[MeteringEvent]], None]


class TokenVerifier(Protocol):
    def verify(self, token: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GatewayDecision:
    """The policy decision on one `tools/call`."""

    tool: str
    tenant_id: str | None
    user_id: str
    decision: Literal["allowed", "denied"]
    reason: str
    at: float
    request_id: str = ""
    event_id: str | None = None


@dataclass(frozen=True)
class GatewayCaller:
    """The verified caller: `sub` and tenant from the token, tier from the tenant registry."""

    user_id: str
    tenant_id: str | None
    tier: str | None


def _rpc_result(request_id: Any, result: dict[str, Any]) -> HttpResponse:
    return json_response(200, {"jsonrpc": "2.0", "id": request_id, "result": result})


def _rpc_error(request_id: Any, code: int, message: str, status: int = 200) -> HttpResponse:
    error = {"code": code, "message": message}
    return json_response(status, {"jsonrpc": "2.0", "id": request_id, "error": error})


def _cedar_context_input(arguments: dict[str, Any]) -> dict[str, Any]:
    # Cedar has no floats or nulls, so only string, integer and boolean arguments are passed.
    return {name: value for name, value in arguments.items() if isinstance(value, str | int | bool)}


def _tool_text(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result)


class GatewayStandIn(StandInServer):
    """AgentCore Gateway stand-in.

    `verifier.verify(token)` returns the token's claims or raises TokenError.
    `invoke_function(function_logical_id, event, client_context)` runs a tool's Lambda
    function and returns its JSON result. `tenant_tier_lookup(tenant_id)` returns the tier of
    an active tenant, or None for an unknown or inactive one. `publish_events(events)` sends
    Tool Invoked events to the metering bus and raises PublishError for events it could not
    send. Without it, decisions are only recorded.
    """

    name = "gateway-standin"

    def __init__(
        self,
        verifier: TokenVerifier,
        invoke_function: InvokeFunction,
        tenant_tier_lookup: TenantTierLookup,
        port: int = 0,
        gateway_id: str = "agentpool-gateway-standin",
        policy_path: Path = POLICY_PATH,
        publish_events: PublishEvents | None = None,
    ) -> None:
        super().__init__(port)
        self.verifier = verifier
        self.invoke_function = invoke_function
        self.tenant_tier_lookup = tenant_tier_lookup
        self.gateway_id = gateway_id
        self.publish_events = publish_events
        self.policies = policy_path.read_text()
        self.decisions: list[GatewayDecision] = []
        self._lock = threading.Lock()

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.path != "/mcp":
            return json_response(404, {"message": f"no route for {request.path}"})
        if request.method != "POST":
            # This stand-in opens no server-to-client SSE stream, which the MCP spec allows.
            return HttpResponse(status=405, headers={"Allow": "POST"})
        claims = self._authenticate(request)
        if claims is None:
            return HttpResponse(
                status=401,
                body=json.dumps({"message": "Unauthorized"}).encode(),
                headers={
                    "Content-Type": "application/json",
                    "WWW-Authenticate": 'Bearer error="invalid_token"',
                },
            )
        try:
            message = request.json()
        except ValueError:
            return _rpc_error(None, PARSE_ERROR, "Parse error: the body is not valid JSON", 400)
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _rpc_error(
                None, INVALID_REQUEST, "Invalid request: expected one JSON-RPC 2.0 object", 400
            )
        if "id" not in message:
            # A notification, such as notifications/initialized, gets 202 and no body.
            return HttpResponse(status=202)
        return self._dispatch(message, self._caller(claims))

    def _authenticate(self, request: HttpRequest) -> dict[str, Any] | None:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            logger.info("gateway request rejected reason=missing bearer token")
            return None
        try:
            return self.verifier.verify(token.strip())
        except TokenError as error:
            logger.info("gateway request rejected reason=%s", error)
            return None

    def _caller(self, claims: dict[str, Any]) -> GatewayCaller:
        tenant_id = claims.get(TENANT_CLAIM)
        tenant_id = tenant_id if isinstance(tenant_id, str) else None
        tier = self.tenant_tier_lookup(tenant_id) if tenant_id is not None else None
        return GatewayCaller(user_id=str(claims.get("sub", "")), tenant_id=tenant_id, tier=tier)

    def _dispatch(self, message: dict[str, Any], caller: GatewayCaller) -> HttpResponse:
        request_id = message["id"]
        method = message.get("method")
        params = message.get("params") or {}
        if method == "initialize":
            requested = params.get("protocolVersion")
            version = (
                requested
                if requested in SUPPORTED_PROTOCOL_VERSIONS
                else SUPPORTED_PROTOCOL_VERSIONS[0]
            )
            return _rpc_result(
                request_id,
                {
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": False}},
                    "serverInfo": SERVER_INFO,
                    "instructions": STAND_IN_NOTE,
                },
            )
        if method == "ping":
            return _rpc_result(request_id, {})
        if method == "tools/list":
            return _rpc_result(request_id, {"tools": self._list_tools(caller)})
        if method == "tools/call":
            return self._call_tool(request_id, params, caller)
        return _rpc_error(request_id, METHOD_NOT_FOUND, f"Method not found: {method}")

    def authorize(
        self, caller: GatewayCaller, tool: GatewayTool, arguments: dict[str, Any]
    ) -> tuple[bool, list[str]]:
        """Evaluate the Cedar policies for `caller` calling `tool` with `arguments`.

        Return whether the call is allowed and the ids of the determining policies, which
        cedarpy numbers `policy0`, `policy1`, ... in the order of the policy file.
        """
        attributes: dict[str, Any] = {"user_id": caller.user_id}
        if caller.tenant_id is not None:
            attributes["tenant_id"] = caller.tenant_id
        if caller.tier is not None:
            attributes["tier"] = caller.tier
        entities = [
            {
                "uid": {"type": "AgentCore::OAuthUser", "id": caller.user_id},
                "attrs": attributes,
                "parents": [],
            },
            {
                "uid": {"type": "AgentCore::Gateway", "id": self.gateway_id},
                "attrs": {},
                "parents": [],
            },
        ]
        request = {
            # json.dumps quotes and escapes the id as a Cedar string literal.
            "principal": f"AgentCore::OAuthUser::{json.dumps(caller.user_id)}",
            "action": f'AgentCore::Action::"{tool.mcp_name}"',
            "resource": f'AgentCore::Gateway::"{self.gateway_id}"',
            "context": {"input": _cedar_context_input(arguments)},
        }
        result = cedarpy.is_authorized(request, self.policies, entities)
        return bool(result.allowed), list(result.diagnostics.reasons)

    def _list_tools(self, caller: GatewayCaller) -> list[dict[str, Any]]:
        # Listing has no call arguments, so it checks whether a call naming the caller's own
        # tenant would be allowed, as AgentCore Policy lists a tool that some call may use.
        own_tenant = {"tenant_id": caller.tenant_id} if caller.tenant_id else {}
        own_tenant["user_id"] = caller.user_id
        return [
            {
                "name": tool.mcp_name,
                "description": tool.description,
                "inputSchema": tool.gateway_input_schema,
            }
            for tool in GATEWAY_TOOLS.values()
            if self.authorize(caller, tool, own_tenant)[0]
        ]

    def _record(
        self,
        caller: GatewayCaller,
        tool: str,
        allowed: bool,
        reason: str,
        call_id: tuple[str, Any],
    ) -> None:
        """Record and meter one decision. `call_id` is (Gateway request id, JSON-RPC id)."""
        request_id, rpc_id = call_id
        outcome: Literal["allowed", "denied"] = "allowed" if allowed else "denied"
        event = tool_event(
            request_id=request_id,
            tool_call_id=json.dumps(rpc_id),
            mcp_name=tool,
            decision=outcome,
            tenant_id=caller.tenant_id,
            tier=caller.tier,
            user_id=caller.user_id,
            event_time=datetime.now(UTC),
        )
        decision = GatewayDecision(
            tool=tool,
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            decision=outcome,
            reason=reason,
            at=time.time(),
            request_id=request_id,
            event_id=event.event_id if event else None,
        )
        with self._lock:
            self.decisions.append(decision)
        logger.info(
            "tool call decided tool=%s tenant_id=%s decision=%s reason=%s request_id=%s",
            tool,
            caller.tenant_id,
            decision.decision,
            reason,
            request_id,
        )
        if event is None:
            logger.info("tool call not metered: no active tenant request_id=%s", request_id)
        elif self.publish_events is not None:
            try:
                self.publish_events([event])
            except PublishError as error:
                # The decision is kept. The event id is logged, so the event can be sent again.
                logger.error(
                    "tool event not published request_id=%s event_ids=%s",
                    request_id,
                    error.event_ids,
                )

    def _call_tool(
        self, request_id: Any, params: dict[str, Any], caller: GatewayCaller
    ) -> HttpResponse:
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return _rpc_error(request_id, INVALID_PARAMS, "Invalid params: name and arguments")
        # The Gateway's own id of this request. The caller cannot choose it, so a caller cannot
        # make two decisions share one event id and have the ledger drop the second.
        call_id = (str(uuid.uuid4()), request_id)
        tool = tool_for_mcp_name(name)
        if tool is None:
            self._record(caller, name, allowed=False, reason="unknown tool", call_id=call_id)
            return _rpc_error(request_id, INVALID_PARAMS, f"Unknown tool: {name}")
        allowed, policy_ids = self.authorize(caller, tool, arguments)
        if not allowed:
            # A deny with determining policies means a forbid matched. Otherwise no permit did.
            reason = (
                f"Policy evaluation denied due to {', '.join(policy_ids)}"
                if policy_ids
                else DENIED_BY_DEFAULT
            )
            self._record(caller, name, allowed=False, reason=reason, call_id=call_id)
            text = POLICY_DENIED_TEXT.format(reason=reason)
            return _rpc_result(
                request_id, {"content": [{"type": "text", "text": text}], "isError": True}
            )
        missing = [
            field for field in tool.gateway_input_schema["required"] if field not in arguments
        ]
        if missing:
            self._record(caller, name, allowed=False, reason="invalid arguments", call_id=call_id)
            return _rpc_error(
                request_id, INVALID_PARAMS, f"Invalid arguments: missing {', '.join(missing)}"
            )
        reason = f"permitted by {', '.join(policy_ids)}"
        self._record(caller, name, allowed=True, reason=reason, call_id=call_id)
        client_context = {
            "custom": {
                "bedrockAgentCoreToolName": name,
                "bedrockAgentCoreGatewayId": self.gateway_id,
                "bedrockAgentCoreTargetId": tool.target_name,
            }
        }
        try:
            result = self.invoke_function(tool.function_logical_id, dict(arguments), client_context)
        except Exception as error:
            # The MCP client gets a tool error, as from a failed Lambda target. Only the error
            # type is logged and returned, because the message may contain tenant data.
            logger.error(
                "tool function failed tool=%s function=%s error=%s",
                name,
                tool.function_logical_id,
                type(error).__name__,
            )
            text = f"Tool {name} failed: {type(error).__name__}. {STAND_IN_NOTE}"
            return _rpc_result(
                request_id, {"content": [{"type": "text", "text": text}], "isError": True}
            )
        return _rpc_result(
            request_id,
            {"content": [{"type": "text", "text": _tool_text(result)}], "isError": False},
        )
