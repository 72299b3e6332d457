"""Tool Invoked events for the Gateway's tool call decisions: one event per `tools/call` decision.

Tool calls are metered where they are decided, at the Gateway, because a caller with a valid
ID token can call the Gateway's MCP endpoint without the agent. The invoke function does not
publish tool events, so no call is counted twice.

The Gateway's REQUEST interceptor (functions/gateway_interceptor) decides each `tools/call`
and publishes its event, in AWS and, through the local Gateway stand-in, on the local stack.

The event id derives from the interceptor's Lambda request id and the MCP tool call id (the
JSON-RPC id). The caller cannot choose the request id, so two calls never share an event id
that would make the ledger drop the second. Publishing the same decision again sends the same
id, which the ledger counts once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from agentpool.events import EVENT_ID_NAMESPACE, ToolInvoked
from agentpool.identity import is_valid_tenant_id
from agentpool.tools import tool_for_mcp_name

# The `tool` value of a call to a name that the Gateway does not serve. The name itself comes
# from the caller, so it never becomes a totals key.
UNKNOWN_TOOL = "unknown"


def tool_event_id(request_id: str, tool_call_id: str) -> str:
    """Return the event id of the decision on tool call `tool_call_id` of Gateway request."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{request_id}/tool-call/{tool_call_id}"))


def tool_event(
    *,
    request_id: str,
    tool_call_id: str,
    mcp_name: str,
    decision: Literal["allowed", "denied"],
    tenant_id: str | None,
    tier: str | None,
    user_id: str,
    event_time: datetime,
) -> ToolInvoked | None:
    """Build the Tool Invoked event of one decision, or None when no tenant can be billed.

    A caller whose token names no valid tenant, or whose tenant is unknown or inactive (so
    `tier` is None), has no tenant to bill. The Gateway logs such decisions instead.
    """
    if tenant_id is None or not is_valid_tenant_id(tenant_id) or tier is None or not user_id:
        return None
    gateway_tool = tool_for_mcp_name(mcp_name)
    return ToolInvoked(
        event_id=tool_event_id(request_id, tool_call_id),
        event_time=event_time,
        tenant_id=tenant_id,
        tier=tier,
        user_id=user_id[:128],
        request_id=request_id,
        tool=gateway_tool.tool.value if gateway_tool else UNKNOWN_TOOL,
        decision=decision,
    )
