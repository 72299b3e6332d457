"""Local stand-in for an Amazon Bedrock AgentCore Gateway with Lambda targets, Cedar policy and
a REQUEST interceptor.

It serves MCP over streamable HTTP at `POST /mcp` (JSON-RPC 2.0 `initialize`,
`notifications/initialized`, `tools/list` and `tools/call`). Replies are `application/json`.
Each request goes through the same steps as in the Gateway:

1. Inbound auth, like the Gateway's CUSTOM_JWT authorizer: the `Authorization: Bearer` token
   must pass `verifier.verify`, otherwise the reply is HTTP 401.
2. The REQUEST interceptor, when one is named: its Lambda function gets the interceptor input
   (with request headers) and returns either the request to go on with or the response to send
   at once. agentpool's interceptor (functions/gateway_interceptor) bounds the tier by the
   tenant registry and meters every `tools/call` decision.
3. AgentCore Policy: the Cedar policies of agentpool/tools.cedar, evaluated with cedarpy on
   the token's claims as principal tags and the call's arguments (agentpool.tool_policy).
   `tools/list` lists the tools that the caller may call on some tier. A denied `tools/call`
   returns a JSON-RPC result with `isError: true` and the text that AgentCore Gateway sends
   for a policy denial.
4. An allowed call runs `invoke_function(function_logical_id, event, client_context)`, where
   `event` is the tool arguments and `client_context` carries the `bedrockAgentCore*` keys
   that the Gateway passes to Lambda targets.

AWS does not document whether the interceptor runs before or after the policy check. The
stand-in runs it first, so that every decision reaches the interceptor. agentpool's
interceptor evaluates the policy itself on the registry's tier, so the order changes no
outcome.
Every `tools/call` outcome is appended to `decisions`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agentpool.identity import TENANT_CLAIM
from agentpool.tiers import TIERS
from agentpool.tokens import TokenError
from agentpool.tool_policy import ToolPolicy, denial_text
from agentpool.tools import tool_for_mcp_name
from agentpool_dev.standins.http import HttpRequest, HttpResponse, StandInServer, json_response

logger = logging.getLogger(__name__)

SUPPORTED_PROTOCOL_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")
SERVER_INFO = {"name": "agentpool-gateway-standin", "version": "0.1.0"}
STAND_IN_NOTE = "This is the local AgentCore Gateway stand-in."

# JSON-RPC 2.0 error codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602

InvokeFunction = Callable[[str, dict[str, Any], "dict[str, Any] | None"], Any]


class TokenVerifier(Protocol):
    def verify(self, token: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GatewayDecision:
    """The outcome of one `tools/call`: who called which tool, and whether it ran."""

    tool: str
    tenant_id: str | None
    user_id: str
    decision: Literal["allowed", "denied"]
    reason: str
    at: float


def _rpc_result(request_id: Any, result: dict[str, Any]) -> HttpResponse:
    return json_response(200, {"jsonrpc": "2.0", "id": request_id, "result": result})


def _rpc_error(request_id: Any, code: int, message: str, status: int = 200) -> HttpResponse:
    error = {"code": code, "message": message}
    return json_response(status, {"jsonrpc": "2.0", "id": request_id, "error": error})


def _tool_text(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result)


def _denial(request_id: Any, reason: str) -> HttpResponse:
    content = [{"type": "text", "text": denial_text(reason)}]
    return _rpc_result(request_id, {"content": content, "isError": True})


class GatewayStandIn(StandInServer):
    """AgentCore Gateway stand-in.

    `verifier.verify(token)` returns the token's claims or raises TokenError.
    `invoke_function(function_logical_id, event, client_context)` runs a Lambda function (a
    tool target or the interceptor) and returns its JSON result. `interceptor_function` is the
    logical id of the REQUEST interceptor's function, or None for a Gateway without one.
    """

    name = "gateway-standin"

    def __init__(
        self,
        verifier: TokenVerifier,
        invoke_function: InvokeFunction,
        port: int = 0,
        gateway_id: str = "agentpool-gateway-standin",
        interceptor_function: str | None = None,
        policy: ToolPolicy | None = None,
    ) -> None:
        super().__init__(port)
        self.verifier = verifier
        self.invoke_function = invoke_function
        self.gateway_id = gateway_id
        self.interceptor_function = interceptor_function
        self.policy = policy or ToolPolicy(gateway_id)
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
        if self.interceptor_function is not None:
            intercepted = self._intercept(request, message, claims)
            if isinstance(intercepted, HttpResponse):
                return intercepted
            message = intercepted
        return self._dispatch(message, claims)

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

    def _intercept(
        self, request: HttpRequest, message: dict[str, Any], claims: dict[str, Any]
    ) -> dict[str, Any] | HttpResponse:
        """Run the REQUEST interceptor; return the request to go on with, or its response."""
        assert self.interceptor_function is not None  # noqa: S101
        event = {
            "interceptorInputVersion": "1.0",
            "mcp": {
                "rawGatewayRequest": {"body": request.body.decode("utf-8", "replace")},
                "gatewayRequest": {
                    "path": request.path,
                    "httpMethod": request.method,
                    "headers": dict(request.headers),
                    "body": message,
                },
            },
        }
        try:
            output = self.invoke_function(self.interceptor_function, event, None)
            mcp = output["mcp"]
        except Exception as error:
            # The Gateway fails a request whose interceptor fails, and so does the stand-in.
            logger.error("gateway interceptor failed error=%s", type(error).__name__)
            return _rpc_error(
                message.get("id"), -32603, f"Interceptor failed. {STAND_IN_NOTE}", 500
            )
        response = mcp.get("transformedGatewayResponse")
        if response is not None:
            if message.get("method") == "tools/call":
                self._record(message, claims, allowed=False, reason="denied by the interceptor")
            return json_response(int(response.get("statusCode", 200)), response.get("body"))
        transformed: dict[str, Any] = mcp["transformedGatewayRequest"]["body"]
        return transformed

    def _dispatch(self, message: dict[str, Any], claims: dict[str, Any]) -> HttpResponse:
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
            return _rpc_result(request_id, {"tools": self._list_tools(claims)})
        if method == "tools/call":
            return self._call_tool(message, claims)
        return _rpc_error(request_id, METHOD_NOT_FOUND, f"Method not found: {method}")

    def _list_tools(self, claims: dict[str, Any]) -> list[dict[str, Any]]:
        # The tier is an argument of each call, which the interceptor sets, so without one the
        # stand-in lists the tools that some tier may call.
        return self.policy.listed_tools(claims, TIERS)

    def _record(
        self, message: dict[str, Any], claims: dict[str, Any], *, allowed: bool, reason: str
    ) -> None:
        params = message.get("params") or {}
        name = params.get("name") if isinstance(params, dict) else None
        tenant_id = claims.get(TENANT_CLAIM)
        decision = GatewayDecision(
            tool=name if isinstance(name, str) else "",
            tenant_id=tenant_id if isinstance(tenant_id, str) else None,
            user_id=str(claims.get("sub", "")),
            decision="allowed" if allowed else "denied",
            reason=reason,
            at=time.time(),
        )
        with self._lock:
            self.decisions.append(decision)
        logger.info(
            "tool call decided tool=%s tenant_id=%s decision=%s reason=%s",
            decision.tool,
            decision.tenant_id,
            decision.decision,
            reason,
        )

    def _call_tool(self, message: dict[str, Any], claims: dict[str, Any]) -> HttpResponse:
        request_id = message["id"]
        params = message.get("params") or {}
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            return _rpc_error(request_id, INVALID_PARAMS, "Invalid params: name and arguments")
        tool = tool_for_mcp_name(name)
        if tool is None:
            self._record(message, claims, allowed=False, reason="unknown tool")
            return _rpc_error(request_id, INVALID_PARAMS, f"Unknown tool: {name}")
        decision = self.policy.authorize(claims, name, arguments)
        if not decision.allowed:
            self._record(message, claims, allowed=False, reason=decision.reason)
            return _denial(request_id, decision.reason)
        missing = [
            field for field in tool.gateway_input_schema["required"] if field not in arguments
        ]
        if missing:
            self._record(message, claims, allowed=False, reason="invalid arguments")
            return _rpc_error(
                request_id, INVALID_PARAMS, f"Invalid arguments: missing {', '.join(missing)}"
            )
        self._record(message, claims, allowed=True, reason=decision.reason)
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
