"""Cedar tool policy: which Gateway tools a caller may call, as AgentCore Policy decides it.

The policy text is `tools.cedar` beside this module. It deploys as AgentCore Policy on the
Gateway, where template.yaml copies each statement. Here cedarpy evaluates it, for the Gateway
interceptor in AWS and for the local Gateway stand-in. The request has AgentCore Policy's
form: the principal is an `AgentCore::OAuthUser` whose tags are the token's claims, and
`context.input` contains the tool call's arguments.

The tier is not read from the token, because a user's `custom:tier` attribute is immutable
and the tenant registry is the source of truth. The Gateway's REQUEST interceptor writes the
tenant's registry tier into the call's arguments (`with_registry_tier`), replacing whatever
the caller sent, and evaluates the policy on the result itself before the call goes on. An
upgrade, a downgrade or a suspension therefore applies to the next tool call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy

from agentpool.identity import TENANT_CLAIM
from agentpool.tools import GATEWAY_TOOLS, TIER_ARGUMENT

POLICY_PATH = Path(__file__).with_name("tools.cedar")
# The policies name no particular Gateway (`resource is AgentCore::Gateway`), because the
# interceptor cannot be given the Gateway's ARN: the Gateway refers to the interceptor, and
# CloudFormation allows no cycle. Any id gives the same decisions.
GATEWAY_ID = "agentpool-gateway"
# The text of AgentCore Gateway's policy denials, with the reason in brackets (AgentCore
# developer guide, "Use an AgentCore Gateway with Policy", section "Policy responses").
POLICY_DENIED_TEXT = (
    "AuthorizeActionException - Tool Execution Denied: Tool call not allowed due to policy "
    "enforcement [{reason}]"
)


def denial_text(reason: str) -> str:
    return POLICY_DENIED_TEXT.format(reason=reason)


@dataclass(frozen=True)
class ToolDecision:
    """Whether a call is allowed, and the ids of the policies that decided it.

    cedarpy numbers the policies `policy0`, `policy1`, ... in the order of the policy file.
    A deny without policy ids means that no permit matched (denied by default).
    """

    allowed: bool
    policy_ids: tuple[str, ...]

    @property
    def reason(self) -> str:
        if self.allowed:
            return f"permitted by {', '.join(self.policy_ids)}"
        if self.policy_ids:
            return f"Policy evaluation denied due to {', '.join(self.policy_ids)}"
        return "No policy applies to the request (denied by default)."


def _cedar_values(values: Mapping[str, Any]) -> dict[str, Any]:
    # Cedar has no floats or nulls, and lists of claims are not needed by any policy, so only
    # string, integer and boolean values are passed.
    return {name: value for name, value in values.items() if isinstance(value, str | int | bool)}


def with_registry_tier(arguments: Mapping[str, Any], registry_tier: str | None) -> dict[str, Any]:
    """Return `arguments` with `tier` set to the tenant registry's tier of the caller's tenant.

    A `tier` that the caller sent is dropped. `registry_tier` is None for a suspended or
    unknown tenant, whose call then has no tier and matches no permit.
    """
    bounded = {name: value for name, value in arguments.items() if name != TIER_ARGUMENT}
    if registry_tier is not None:
        bounded[TIER_ARGUMENT] = registry_tier
    return bounded


class ToolPolicy:
    """The Cedar tool policy of one Gateway."""

    def __init__(self, gateway_id: str = GATEWAY_ID, policy_text: str | None = None) -> None:
        self.gateway_id = gateway_id
        self.text = policy_text if policy_text is not None else POLICY_PATH.read_text()

    def authorize(
        self, claims: Mapping[str, Any], mcp_name: str, arguments: Mapping[str, Any]
    ) -> ToolDecision:
        """Decide a `tools/call` of `mcp_name` with `arguments` by the caller with `claims`."""
        subject = str(claims.get("sub", ""))
        entities = [
            {
                "uid": {"type": "AgentCore::OAuthUser", "id": subject},
                "attrs": {},
                "parents": [],
                "tags": _cedar_values(claims),
            },
            {
                "uid": {"type": "AgentCore::Gateway", "id": self.gateway_id},
                "attrs": {},
                "parents": [],
            },
        ]
        request = {
            # json.dumps quotes and escapes each id as a Cedar string literal.
            "principal": f"AgentCore::OAuthUser::{json.dumps(subject)}",
            "action": f"AgentCore::Action::{json.dumps(mcp_name)}",
            "resource": f"AgentCore::Gateway::{json.dumps(self.gateway_id)}",
            "context": {"input": _cedar_values(arguments)},
        }
        result = cedarpy.is_authorized(request, self.text, entities)
        return ToolDecision(bool(result.allowed), tuple(result.diagnostics.reasons))

    def listed_tools(
        self, claims: Mapping[str, Any], tiers: Iterable[str | None]
    ) -> list[dict[str, Any]]:
        """Return the MCP `tools/list` entries of the tools that the caller may call.

        Listing has no call arguments, so a tool is listed when a call naming the caller's own
        tenant and user would be allowed on one of `tiers`.
        """
        own: dict[str, Any] = {"user_id": str(claims.get("sub", ""))}
        if isinstance(claims.get(TENANT_CLAIM), str):
            own["tenant_id"] = claims[TENANT_CLAIM]
        return [
            {
                "name": tool.mcp_name,
                "description": tool.description,
                "inputSchema": tool.gateway_input_schema,
            }
            for tool in GATEWAY_TOOLS.values()
            if any(
                self.authorize(claims, tool.mcp_name, with_registry_tier(own, tier)).allowed
                for tier in tiers
            )
        ]
