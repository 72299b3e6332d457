"""A small MCP client for AgentCore Gateway: JSON-RPC 2.0 over streamable HTTP with urllib.

The Gateway may reply to a request with `application/json` or with a `text/event-stream`
that carries the JSON-RPC response as an SSE `data:` event. Both are accepted.
"""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = "2025-06-18"
CLIENT_INFO = {"name": "agentpool-agent", "version": "0.1.0"}
# AgentCore Gateway starts the text of a policy denial with this exception name.
POLICY_DENIAL_PREFIX = "AuthorizeActionException"


class McpError(Exception):
    """The Gateway could not be reached, rejected the request, or replied with a JSON-RPC error."""


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool

    @property
    def denied_by_policy(self) -> bool:
        return self.is_error and self.text.startswith(POLICY_DENIAL_PREFIX)


def _parse_event_stream(body: str, request_id: int) -> dict[str, Any]:
    """Return the JSON-RPC response with `request_id` from an SSE body."""
    for event in body.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(
            line[len("data:") :].lstrip() for line in event.split("\n") if line.startswith("data:")
        )
        if not data:
            continue
        message = json.loads(data)
        if isinstance(message, dict) and message.get("id") == request_id:
            return message
    raise McpError(f"the event stream carried no response to request {request_id}")


class McpClient:
    """MCP client for one Gateway URL and one bearer token (the caller's ID token)."""

    def __init__(self, url: str, bearer_token: str, timeout_seconds: float = 30.0) -> None:
        self.url = url
        self._bearer_token = bearer_token
        self._timeout_seconds = timeout_seconds
        self._ids = itertools.count(1)
        self._session_id: str | None = None
        self._protocol_version: str | None = None

    def initialize(self) -> None:
        """Run the MCP handshake: `initialize`, then the `notifications/initialized` notice."""
        result = self._request(
            "initialize",
            {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
        )
        self._protocol_version = str(result.get("protocolVersion", PROTOCOL_VERSION))
        self._post({"jsonrpc": "2.0", "method": "notifications/initialized"}, request_id=None)

    def list_tools(self) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            result = self._request("tools/list", {"cursor": cursor} if cursor else {})
            tools.extend(result.get("tools", []))
            cursor = result.get("nextCursor")
            if not cursor:
                return tools

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        result = self._request("tools/call", {"name": name, "arguments": arguments})
        texts = [
            block.get("text", "")
            for block in result.get("content", [])
            if block.get("type") == "text"
        ]
        return ToolResult(text="\n".join(texts), is_error=bool(result.get("isError", False)))

    def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        response = self._post(message, request_id)
        if response is None:
            raise McpError(f"the Gateway sent no body for {method}")
        if "error" in response:
            error = response["error"]
            raise McpError(f"{method} failed with JSON-RPC error {error.get('code')}")
        result = response.get("result")
        if not isinstance(result, dict):
            raise McpError(f"{method} returned no result object")
        return result

    def _post(self, message: dict[str, Any], request_id: int | None) -> dict[str, Any] | None:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {self._bearer_token}",
        }
        if self._session_id:
            headers["Mcp-Session-Id"] = self._session_id
        if self._protocol_version:
            headers["MCP-Protocol-Version"] = self._protocol_version
        request = urllib.request.Request(  # noqa: S310 - the URL comes from GATEWAY_URL.
            self.url, data=json.dumps(message).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, timeout=self._timeout_seconds
            ) as response:
                self._session_id = response.headers.get("Mcp-Session-Id") or self._session_id
                content_type = response.headers.get("Content-Type", "")
                body = response.read().decode()
        except urllib.error.HTTPError as error:
            raise McpError(f"the Gateway returned HTTP {error.code}") from error
        except (urllib.error.URLError, TimeoutError) as error:
            raise McpError(f"the Gateway is unreachable: {type(error).__name__}") from error
        if request_id is None or not body:
            return None
        try:
            if content_type.startswith("text/event-stream"):
                return _parse_event_stream(body, request_id)
            parsed = json.loads(body)
        except ValueError as error:
            raise McpError("the Gateway sent a body that is not valid JSON") from error
        if not isinstance(parsed, dict):
            raise McpError("the Gateway sent a JSON-RPC batch, which this client does not use")
        return parsed
