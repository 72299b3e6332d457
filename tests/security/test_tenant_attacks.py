"""Attacks with valid tokens that try to reach another tenant, another user or a higher tier.

Every request goes over HTTP to the local stack. The tenant registry, not the token or the
request, decides the tier, and the verified claims alone decide the tenant and user.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import jwt
import pytest

from agentpool.registry import TenantRegistry
from agentpool.tiers import TIERS
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .conftest import ApiCaller, Onboarding

pytestmark = pytest.mark.integration

PROMPT = {"prompt": "What is on Tuesdays?"}


def month_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def test_missing_tenant_claim_rejected(api: ApiCaller, target: operations.Target) -> None:
    # A user created in the right pool without custom:tenant_id, for example by a misconfigured
    # onboarding script.
    cognito = target.client("cognito-idp")
    pool_id = target.outputs["UserPoolId"]
    email = f"{uuid.uuid4().hex[:10]}@no-tenant.example"
    password = operations.generate_password()
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=email,
        UserAttributes=[{"Name": "email", "Value": email}],
        MessageAction="SUPPRESS",
    )
    cognito.admin_set_user_password(
        UserPoolId=pool_id, Username=email, Password=password, Permanent=True
    )
    token = operations.id_token(target, email, password)

    reply = api.post(token, PROMPT)

    assert reply.status == 403
    assert reply.body["error"]["code"] == "forbidden"


def test_self_raised_tier_claim_ignored(
    api: ApiCaller, target: operations.Target, onboard: Onboarding
) -> None:
    # moto lets a user change an immutable custom attribute with their own access token (real
    # Cognito rejects it), which gives a genuine ID token with the tier claim premium.
    user = onboard.user(onboard.tenant("basic"))
    cognito = target.client("cognito-idp")
    access_token = cognito.admin_initiate_auth(
        UserPoolId=target.outputs["UserPoolId"],
        ClientId=target.outputs["UserPoolClientId"],
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": user.email, "PASSWORD": user.password},
    )["AuthenticationResult"]["AccessToken"]
    cognito.update_user_attributes(
        AccessToken=access_token, UserAttributes=[{"Name": "custom:tier", "Value": "premium"}]
    )
    raised_token = operations.id_token(target, user.email, user.password)
    claims = jwt.decode(raised_token, options={"verify_signature": False})
    assert claims["custom:tier"] == "premium", "precondition: the token claims premium"

    reply = api.post(raised_token, PROMPT)

    assert reply.status == 200
    assert reply.body["tier"] == "basic"
    assert reply.body["model"] == TIERS["basic"].model_id


@pytest.mark.parametrize("field", ["tenantId", "tenant_id", "tier", "userId", "model"])
def test_identity_field_in_body_rejected(api: ApiCaller, onboard: Onboarding, field: str) -> None:
    user = onboard.user(onboard.tenant("basic"))
    victim = onboard.tenant("premium")
    value = {"tenantId": victim, "tenant_id": victim, "tier": "premium"}.get(field, "premium")

    reply = api.post(user.token, {**PROMPT, field: value})

    assert reply.status == 400
    assert reply.body["error"]["code"] == "invalid_request"


def test_identity_headers_and_query_ignored(
    api: ApiCaller, target: operations.Target, stack: LocalStack, onboard: Onboarding
) -> None:
    tenant_id = onboard.tenant("basic")
    user = onboard.user(tenant_id)
    victim = onboard.tenant("premium")
    headers = {
        "X-Tenant-Id": victim,
        "X-Tier": "premium",
        "X-User-Id": "someone-else",
        "X-Amzn-Oidc-Identity": "someone-else",
    }
    query = {"tenant_id": victim, "tenantId": victim, "tier": "premium"}

    reply = api.post(user.token, PROMPT, headers=headers, query=query)
    stack.wait_for_metering()

    own = operations.tenant_month(target, tenant_id, month_now())
    other = operations.tenant_month(target, victim, month_now())
    assert reply.status == 200
    assert reply.body["tier"] == "basic"
    assert reply.body["model"] == TIERS["basic"].model_id
    assert own["total"]["invocations"] == 1
    assert set(own["user"]) == {user.user_id}
    assert other["total"]["invocations"] == 0
    assert other["user"] == {}


def test_other_tenant_session_rejected(api: ApiCaller, onboard: Onboarding) -> None:
    victim = onboard.user(onboard.tenant("basic"))
    attacker = onboard.user(onboard.tenant("basic"))
    first = api.post(victim.token, PROMPT)

    reply = api.post(attacker.token, {**PROMPT, "sessionId": first.body["sessionId"]})

    assert first.status == 200
    assert reply.status == 403
    assert reply.body["error"]["code"] == "forbidden"


def test_same_tenant_other_user_session_rejected(api: ApiCaller, onboard: Onboarding) -> None:
    tenant_id = onboard.tenant("basic")
    victim = onboard.user(tenant_id)
    colleague = onboard.user(tenant_id)
    first = api.post(victim.token, PROMPT)

    reply = api.post(colleague.token, {**PROMPT, "sessionId": first.body["sessionId"]})

    assert first.status == 200
    assert reply.status == 403
    assert reply.body["error"]["code"] == "forbidden"


def test_unknown_session_rejected_like_foreign(api: ApiCaller, onboard: Onboarding) -> None:
    # The same 403 for "missing" and "someone else's", so session ids cannot be probed.
    user = onboard.user(onboard.tenant("basic"))

    reply = api.post(user.token, {**PROMPT, "sessionId": str(uuid.uuid4())})

    assert reply.status == 403
    assert reply.body["error"]["code"] == "forbidden"


def test_suspended_tenant_session_rejected(
    api: ApiCaller, target: operations.Target, onboard: Onboarding
) -> None:
    # A tenant suspended while its user still has a valid token and an open session.
    tenant_id = onboard.tenant("basic")
    user = onboard.user(tenant_id)
    first = api.post(user.token, PROMPT)
    TenantRegistry(target.table("TenantsTableName")).set_status(tenant_id, "suspended")

    new_session = api.post(user.token, PROMPT)
    old_session = api.post(user.token, {**PROMPT, "sessionId": first.body["sessionId"]})

    assert first.status == 200
    assert new_session.status == 403
    assert old_session.status == 403
