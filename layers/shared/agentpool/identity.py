"""Caller identity taken from the claims of a verified Cognito ID token.

API Gateway's Cognito authorizer verifies the token and passes its claims in
`requestContext.authorizer.claims`. Nothing else in a request (headers, query, path or body)
may name a tenant, tier or user.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from agentpool.errors import ForbiddenError, UnauthorizedError

# Tenant ids are lowercase letters, digits and inner hyphens, 3 to 40 characters. They never
# contain "#", ".", "/" or "_", so those characters can separate fields in composite keys.
TENANT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")

TENANT_CLAIM = "custom:tenant_id"
TIER_CLAIM = "custom:tier"


class CallerIdentity(BaseModel):
    """Tenant and user of a request, as the verified token states them."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    user_id: str
    claimed_tier: str | None


def is_valid_tenant_id(tenant_id: str) -> bool:
    return bool(TENANT_ID_PATTERN.fullmatch(tenant_id))


def identity_from_authorizer(event: dict[str, Any]) -> CallerIdentity:
    """Read the caller from the Cognito authorizer's claims in an API Gateway proxy event.

    Raises UnauthorizedError when the claims are missing (no authorizer ran), and
    ForbiddenError when the token carries no valid tenant id.
    """
    context = event.get("requestContext") or {}
    claims = (context.get("authorizer") or {}).get("claims")
    if not isinstance(claims, dict) or not claims.get("sub"):
        raise UnauthorizedError("The request carries no verified identity.")
    if claims.get("token_use", "id") != "id":
        raise UnauthorizedError("Only Cognito ID tokens are accepted.")
    tenant_id = claims.get(TENANT_CLAIM)
    if not isinstance(tenant_id, str) or not is_valid_tenant_id(tenant_id):
        raise ForbiddenError("The token carries no valid tenant id.")
    tier = claims.get(TIER_CLAIM)
    return CallerIdentity(
        tenant_id=tenant_id,
        user_id=str(claims["sub"]),
        claimed_tier=tier if isinstance(tier, str) else None,
    )


def groups_from_authorizer(event: dict[str, Any]) -> frozenset[str]:
    """Return the caller's Cognito groups from the authorizer's `cognito:groups` claim.

    API Gateway passes every claim as a string, and the local API writes a list as JSON.
    NOTE: AWS does not document how the REST API's Cognito authorizer writes a list claim,
    so JSON, "[a b]" and "a,b" are all read.
    """
    claims = ((event.get("requestContext") or {}).get("authorizer") or {}).get("claims") or {}
    raw = claims.get("cognito:groups") if isinstance(claims, dict) else None
    if isinstance(raw, list):
        return frozenset(str(group) for group in raw)
    if not isinstance(raw, str) or not raw.strip():
        return frozenset()
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text[1:-1].replace(",", " ").split()
        return frozenset(str(group) for group in parsed)
    return frozenset(group.strip() for group in text.split(",") if group.strip())
