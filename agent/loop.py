"""The agent's Converse tool loop: ask the model, run the tools it requests, repeat.

The loop never raises for a model or tool failure. It returns an AgentResponse with `error`
and the usage the model already reported, so the tokens used before the failure are billed.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from agent.mcp_client import McpError, ToolResult
from agentpool.agent_contract import (
    MAX_OUTPUT_TOKENS,
    MAX_TOOL_CALLS_PER_MODEL_CALL,
    AgentError,
    AgentRequest,
    AgentResponse,
    ToolCallRecord,
    max_input_bytes,
)
from agentpool.tools import GATEWAY_TOOLS, TIER_ARGUMENT, GatewayTool, tool_for_mcp_name

logger = logging.getLogger("agentpool.agent")

SYSTEM_PROMPT = (
    "You help the staff of a clinic or hospital. Search the tenant's documents with the tools "
    "before you answer, and say when the tools found nothing relevant."
)
IDENTITY_ARGUMENTS = ("tenant_id", "user_id", TIER_ARGUMENT)
# Replaces the end of a tool result that was shortened to fit the input bound.
TRUNCATION_MARKER = " [truncated]"


class InputLimitError(Exception):
    """A Converse request exceeds the input bound even with no history and empty tool results."""


class ToolGateway(Protocol):
    def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult: ...


def add_usage(total: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    """Add a Converse `usage` object to `total`, field by field, in Converse's field names.

    Integer fields are summed. `cacheDetails` entries are summed by `ttl`.
    """
    result = dict(total)
    for key, value in usage.items():
        if key == "cacheDetails":
            by_ttl: dict[str, int] = {}
            for detail in [*result.get(key, []), *value]:
                by_ttl[detail["ttl"]] = by_ttl.get(detail["ttl"], 0) + detail["inputTokens"]
            result[key] = [{"ttl": ttl, "inputTokens": count} for ttl, count in by_ttl.items()]
        elif isinstance(value, int) and not isinstance(value, bool):
            result[key] = result.get(key, 0) + value
    return result


def tool_config(tools: list[GatewayTool]) -> dict[str, Any]:
    """Describe `tools` to the model with the schema that omits the identity arguments."""
    return {
        "tools": [
            {
                "toolSpec": {
                    "name": tool.mcp_name,
                    "description": tool.description,
                    "inputSchema": {"json": tool.model_input_schema},
                }
            }
            for tool in tools
        ]
    }


def tool_arguments(tool: GatewayTool, model_input: Any, request: AgentRequest) -> dict[str, Any]:
    """Keep the model's arguments that the model schema declares, then add tenant, user, tier.

    Identity always comes from the request, so a model that writes `tenant_id` itself cannot
    name another tenant. The tier is the registry's, read by the invoke function, and the
    Gateway's interceptor replaces it with the registry's tier again.
    """
    declared = tool.model_input_schema.get("properties", {})
    arguments = {
        name: value
        for name, value in (model_input if isinstance(model_input, dict) else {}).items()
        if name in declared and name not in IDENTITY_ARGUMENTS
    }
    arguments["tenant_id"] = request.tenant_id
    arguments["user_id"] = request.user_id
    arguments[TIER_ARGUMENT] = request.tier
    return arguments


class ConverseLoop:
    """One invocation's loop state: messages, usage and the records of model and tool calls."""

    def __init__(
        self,
        request: AgentRequest,
        tools: list[GatewayTool],
        bedrock: Any,
        gateway: ToolGateway,
        max_model_calls: int,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.request = request
        self.tools = tools
        self.bedrock = bedrock
        self.gateway = gateway
        self.max_model_calls = max_model_calls
        # Earlier turns of the session come first, as alternating user and assistant messages.
        self.messages: list[dict[str, Any]] = [
            *(history or []),
            {"role": "user", "content": [{"text": request.prompt}]},
        ]
        # Messages before the prompt's, which `_fit_input` may drop, oldest turn first.
        self.history_messages = len(history or [])
        self.max_input_bytes = max_input_bytes(request.prompt)
        self.usage: dict[str, Any] = {}
        self.model_calls = 0
        self.tool_calls: list[ToolCallRecord] = []

    def run(self) -> AgentResponse:
        while self.model_calls < self.max_model_calls:
            try:
                message, stop_reason = self._converse()
            except InputLimitError:
                logger.warning("model input over its bound request_id=%s", self.request.request_id)
                return self.response(
                    error=AgentError(
                        code="input_limit_exceeded",
                        message="The model input exceeds the bound of one invocation "
                        f"({self.max_input_bytes} bytes) even without history.",
                    )
                )
            except (ClientError, BotoCoreError) as error:
                code = (
                    error.response["Error"]["Code"]
                    if isinstance(error, ClientError)
                    else type(error).__name__
                )
                logger.warning(
                    "model call failed request_id=%s error=%s", self.request.request_id, code
                )
                return self.response(
                    error=AgentError(
                        code="model_call_failed", message=f"Bedrock Converse failed: {code}"
                    )
                )
            if stop_reason != "tool_use":
                return self.response(output=_text_of(message))
            if self.model_calls >= self.max_model_calls:
                break
            tool_uses = [block["toolUse"] for block in message["content"] if "toolUse" in block]
            try:
                results = [
                    self._run_tool(tool_use)
                    if index < MAX_TOOL_CALLS_PER_MODEL_CALL
                    else _tool_result(
                        tool_use["toolUseId"],
                        f"Not run: at most {MAX_TOOL_CALLS_PER_MODEL_CALL} tool calls per turn.",
                        "error",
                    )
                    for index, tool_use in enumerate(tool_uses)
                ]
            except McpError as error:
                logger.warning(
                    "tool call failed request_id=%s error=%s", self.request.request_id, error
                )
                return self.response(
                    error=AgentError(
                        code="tool_call_failed", message=f"Gateway tool call failed: {error}"
                    )
                )
            self.messages.append({"role": "user", "content": results})
        return self.response(
            error=AgentError(
                code="model_call_limit",
                message=f"The model requested more tool calls after {self.max_model_calls} model "
                "calls, the maximum for one invocation.",
            )
        )

    def _converse(self) -> tuple[dict[str, Any], str]:
        kwargs: dict[str, Any] = {
            "modelId": self.request.model_id,
            "messages": self.messages,
            "system": [{"text": SYSTEM_PROMPT}],
            # Bounds the output of each call, which the hard-cap budget reservation relies on.
            "inferenceConfig": {"maxTokens": MAX_OUTPUT_TOKENS},
        }
        if self.tools:
            kwargs["toolConfig"] = tool_config(self.tools)
        self._fit_input(kwargs)
        started = time.monotonic()
        response = self.bedrock.converse(**kwargs)
        self.model_calls += 1
        # Usage is summed as soon as it is reported, so a later failure still returns it.
        self.usage = add_usage(self.usage, response["usage"])
        stop_reason = str(response["stopReason"])
        logger.info(
            "model call finished request_id=%s model_id=%s model_calls=%d stop_reason=%s "
            "latency_ms=%d",
            self.request.request_id,
            self.request.model_id,
            self.model_calls,
            stop_reason,
            (time.monotonic() - started) * 1000,
        )
        message = response["output"]["message"]
        self.messages.append(message)
        return message, stop_reason

    def _fit_input(self, kwargs: dict[str, Any]) -> None:
        """Drop the oldest history turns, then shorten tool results, until the request fits.

        The bound is on the UTF-8 bytes of the request's system prompt, messages and tool
        specifications as compact JSON, which are at least the bytes of the text that the model
        reads. Raises InputLimitError when the request does not fit without history and with
        every tool result shortened to its marker.
        """
        excess = request_bytes(kwargs) - self.max_input_bytes
        while excess > 0 and self.history_messages > 0:
            # Whole turns (a user and an assistant message), so the first message stays a user's.
            dropped = min(2, self.history_messages)
            del self.messages[:dropped]
            self.history_messages -= dropped
            excess = request_bytes(kwargs) - self.max_input_bytes
        for block in self._tool_result_texts():
            if excess <= 0:
                break
            encoded = block["text"].encode("utf-8")
            keep = max(0, len(encoded) - excess - len(TRUNCATION_MARKER.encode()))
            if keep >= len(encoded):
                continue
            block["text"] = encoded[:keep].decode("utf-8", errors="ignore") + TRUNCATION_MARKER
            excess = request_bytes(kwargs) - self.max_input_bytes
        if excess > 0:
            raise InputLimitError

    def _tool_result_texts(self) -> list[dict[str, Any]]:
        """Return the text blocks of the tool results in the messages, largest first."""
        blocks = [
            content
            for message in self.messages
            for block in message["content"]
            if "toolResult" in block
            for content in block["toolResult"]["content"]
            if "text" in content
        ]
        return sorted(blocks, key=lambda content: len(content["text"].encode()), reverse=True)

    def _run_tool(self, tool_use: dict[str, Any]) -> dict[str, Any]:
        tool = tool_for_mcp_name(tool_use["name"])
        if tool is None or tool not in self.tools:
            logger.warning(
                "model requested a tool it was not offered request_id=%s", self.request.request_id
            )
            return _tool_result(tool_use["toolUseId"], "This tool is not available.", "error")
        arguments = tool_arguments(tool, tool_use.get("input"), self.request)
        result = self.gateway.call_tool(tool.mcp_name, arguments)
        decision = "denied" if result.denied_by_policy else "allowed"
        self.tool_calls.append(ToolCallRecord(tool=tool.tool, decision=decision))
        logger.info(
            "tool call finished request_id=%s tool=%s decision=%s is_error=%s",
            self.request.request_id,
            tool.tool.value,
            decision,
            result.is_error,
        )
        return _tool_result(
            tool_use["toolUseId"], result.text, "error" if result.is_error else "success"
        )

    def response(self, output: str | None = None, error: AgentError | None = None) -> AgentResponse:
        return AgentResponse(
            output=output,
            model_id=self.request.model_id,
            usage=self.usage,
            model_calls=self.model_calls,
            tool_calls=tuple(self.tool_calls),
            error=error,
        )


def request_bytes(kwargs: dict[str, Any]) -> int:
    """Return the UTF-8 bytes of a Converse request's model input as compact JSON."""
    model_input = {
        key: kwargs[key] for key in ("system", "messages", "toolConfig") if key in kwargs
    }
    text = json.dumps(model_input, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8"))


def _tool_result(tool_use_id: str, text: str, status: str) -> dict[str, Any]:
    # Converse rejects an empty text block, so an empty tool output is sent as a placeholder.
    content = [{"text": text or "(no output)"}]
    return {"toolResult": {"toolUseId": tool_use_id, "content": content, "status": status}}


def _text_of(message: dict[str, Any]) -> str:
    return "\n".join(block["text"] for block in message.get("content", []) if "text" in block)


def tools_for(request: AgentRequest, tier_tools: tuple[Any, ...]) -> list[GatewayTool]:
    """Return the Gateway tools of the request's tier that the request also grants."""
    return [GATEWAY_TOOLS[tool] for tool in tier_tools if tool in request.tools]
