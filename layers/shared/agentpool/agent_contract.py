"""The JSON payload between the invoke function and the agent on AgentCore Runtime.

Only the invoke function's role may call InvokeAgentRuntime (IAM inbound auth), so the agent
trusts the tenant, tier and user in this payload: the invoke function took them from a
verified token and the tenant registry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentpool.tiers import Tool

# The agent passes this as Converse's `inferenceConfig.maxTokens` on every model call, so no
# call writes more output tokens. Hard-capped budgets reserve it per call (agentpool.budget).
MAX_OUTPUT_TOKENS = 4_096


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
