"""The JSON payload between the invoke function and the agent on AgentCore Runtime.

Only the invoke function's role may call InvokeAgentRuntime (IAM inbound auth), so the agent
trusts the tenant, tier and user in this payload: the invoke function took them from a
verified token and the tenant registry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentpool.tiers import Tool

# The bounds of one invocation that the agent enforces and a hard-capped budget reserves
# (agentpool.budget.WorstCase), so the reservation is an upper bound of the request's cost.
#
# The agent passes this as Converse's `inferenceConfig.maxTokens` on every model call, so no
# call writes more output tokens.
MAX_OUTPUT_TOKENS = 4_096
# Model calls in one invocation. The agent's AGENT_MAX_MODEL_CALLS may set fewer, never more.
MAX_MODEL_CALLS = 4
# Tool calls that the agent runs after one model call. For further tool uses of the same call
# it returns an error result instead of calling the Gateway.
MAX_TOOL_CALLS_PER_MODEL_CALL = 4
# AgentCore Memory events that one invocation creates: one per completed turn.
MAX_MEMORY_EVENTS = 1
# UTF-8 bytes, beyond the prompt's own bytes, of one Converse request (system prompt, tool
# specifications, history, tool uses and tool results, as JSON). The agent drops the oldest
# history turns and shortens tool results until a request fits.
CONTEXT_BYTES = 8_000


def max_input_bytes(prompt: str) -> int:
    """Return the UTF-8 bytes that one Converse request of an invocation of `prompt` may have.

    No tokenizer that the agent's models use emits more than one token per byte, so this is
    also a bound on the input tokens of one model call.
    """
    return len(prompt.encode("utf-8")) + CONTEXT_BYTES


def max_tool_calls() -> int:
    """Return the tool calls one invocation may make: none after its last model call."""
    return (MAX_MODEL_CALLS - 1) * MAX_TOOL_CALLS_PER_MODEL_CALL


class AgentRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1)
    request_id: str
    tenant_id: str
    tier: str
    user_id: str
    session_id: str
    model_id: str
    tools: tuple[Tool, ...]
    # The caller's ID token, sent to the Gateway, whose JWT authorizer and Cedar policies
    # check it again. It is a secret: never log it.
    gateway_token: str = Field(repr=False)


class ToolCallRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: Tool
    decision: Literal["allowed", "denied"]


class AgentError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str


class AgentResponse(BaseModel):
    """The agent's answer, or its error, with the usage the model reported either way.

    `usage` is the sum of the Converse `usage` objects of every model call, in Converse's
    field names, so that tokens used before a failure are still billed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    output: str | None = None
    model_id: str
    usage: dict[str, Any] = Field(default_factory=dict)
    model_calls: int = 0
    tool_calls: tuple[ToolCallRecord, ...] = ()
    # AgentCore Memory events that this invocation created (CreateEvent calls that succeeded).
    memory_events: int = Field(default=0, ge=0)
    error: AgentError | None = None
