"""Cedar tool policy: which Gateway tools a caller may call, as AgentCore Policy decides it.

The policy text is `tools.cedar` beside this module. It deploys as AgentCore Policy on the
Gateway (template.yaml copies each statement) and is evaluated here with cedarpy, by the
Gateway interceptor in AWS and by the local Gateway stand-in, on a request built the way
AgentCore Policy builds it: the principal is an `AgentCore::OAuthUser` whose tags are the
token's claims, and `context.input` holds the tool call's arguments.

The token's `custom:tier` claim was set when the user was created, so it can be stale. The
tenant registry is the source of truth, so the interceptor evaluates the policy with
`registry_bounded_claims`: the tier tag becomes the lower of the token's tier and the
registry's, and is removed for a suspended or unknown tenant. A downgrade or a suspension
applies to the next tool call; an upgrade applies once the user's token carries the new tier,
because AgentCore Policy reads the token's tier too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy

from agentpool.identity import TIER_CLAIM
from agentpool.tiers import TIERS

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


def lower_tier(first: str | None, second: str | None) -> str | None:
    """Return the tier of the two whose tools the other also has, or None if there is none."""
    if first not in TIERS or second not in TIERS:
        return None
    first_tools = set(TIERS[first].tools)
    second_tools = set(TIERS[second].tools)
    if first_tools <= second_tools:
        return first
    if second_tools <= first_tools:
        return second
    return None


def registry_bounded_claims(claims: Mapping[str, Any], registry_tier: str | None) -> dict[str, Any]:
    """Return `claims` with the tier claim bounded by the tenant registry's tier.

    `registry_tier` is None for a suspended or unknown tenant, which then has no tier tag and
    matches no permit.
    """
    bounded = {name: value for name, value in claims.items() if name != TIER_CLAIM}
    tier = lower_tier(claims.get(TIER_CLAIM), registry_tier)
    if tier is not None:
        bounded[TIER_CLAIM] = tier
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
