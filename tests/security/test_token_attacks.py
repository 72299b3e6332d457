"""Attacks on the ID token check of POST /invocations, over HTTP on the local stack.

The local API verifies tokens as API Gateway's Cognito authorizer does. Tokens signed with moto's
key (see TokenForger) pass the signature check, so each test changes one claim or header and
shows that this change alone gets the request rejected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.request
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentpool_dev import operations

from .conftest import ApiCaller, Onboarding, TenantUser, TokenForger, now

pytestmark = pytest.mark.integration

PROMPT = {"prompt": "What is on Tuesdays?"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_parts(token: str, header: dict[str, Any]) -> tuple[str, str]:
    """The base64url header and payload of `token` with its header replaced."""
    payload = token.split(".")[1]
    return b64url(json.dumps(header).encode()), payload


@pytest.fixture
def user(onboard: Onboarding) -> TenantUser:
    return onboard.user(onboard.tenant("basic"))


def test_resigned_token_accepted(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    # Control: re-signing with moto's key changes nothing, so the rejections below come from
    # the one change that each test makes.
    reply = api.post(forger.resign(user.token), PROMPT)

    assert reply.status == 200


def test_forged_signature_rejected(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    attacker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(user.token, options={"verify_signature": False})
    token = jwt.encode(claims, attacker_key, algorithm="RS256", headers={"kid": forger.kid})

    reply = api.post(token, PROMPT)

    assert reply.status == 401


def test_alg_none_rejected(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    header, payload = unsigned_parts(user.token, {"alg": "none", "typ": "JWT", "kid": forger.kid})

    reply = api.post(f"{header}.{payload}.", PROMPT)

    assert reply.status == 401


def test_hs256_with_public_key_rejected(
    api: ApiCaller, target: operations.Target, forger: TokenForger, user: TenantUser
) -> None:
    # Algorithm confusion: HMAC keyed with the pool's public key, which anyone can fetch.
    jwks_url = f"{target.endpoint_url}/{target.outputs['UserPoolId']}/.well-known/jwks.json"
    with urllib.request.urlopen(jwks_url, timeout=10) as response:  # noqa: S310 - 127.0.0.1
        jwk = json.load(response)["keys"][0]
    public_pem = jwt.PyJWK.from_dict(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header, payload = unsigned_parts(user.token, {"alg": "HS256", "typ": "JWT", "kid": forger.kid})
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()

    reply = api.post(f"{header}.{payload}.{b64url(signature)}", PROMPT)

    assert reply.status == 401


def test_expired_token_rejected(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    issued = now() - 7200
    token = forger.resign(user.token, iat=issued, auth_time=issued, exp=now() - 60)

    reply = api.post(token, PROMPT)

    assert reply.status == 401


def test_future_nbf_rejected(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    token = forger.resign(user.token, nbf=now() + 3600, exp=now() + 7200)

    reply = api.post(token, PROMPT)

    assert reply.status == 401


def test_future_iat_rejected(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    issued = now() + 3600
    token = forger.resign(user.token, iat=issued, auth_time=issued, exp=issued + 3600)

    reply = api.post(token, PROMPT)

    assert reply.status == 401


def test_wrong_audience_rejected(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    token = forger.resign(user.token, aud="another-app-client")

    reply = api.post(token, PROMPT)

    assert reply.status == 401


def test_missing_audience_rejected(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    token = forger.resign(user.token, aud=None)

    reply = api.post(token, PROMPT)

    assert reply.status == 401


def test_wrong_issuer_rejected(api: ApiCaller, forger: TokenForger, user: TenantUser) -> None:
    token = forger.resign(
        user.token, iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_attacker"
    )

    reply = api.post(token, PROMPT)

    assert reply.status == 401


def test_other_user_pool_token_rejected(
    api: ApiCaller, target: operations.Target, user: TenantUser
) -> None:
    # A real token from a second user pool whose user claims the victim's tenant. moto signs
    # both pools with one key, so only the issuer and audience checks tell the pools apart.
    cognito = target.client("cognito-idp")
    pool_id = cognito.create_user_pool(
        PoolName=f"attacker-{uuid.uuid4().hex[:8]}",
        UsernameAttributes=["email"],
        Schema=[
            {"Name": "tenant_id", "AttributeDataType": "String", "Mutable": True},
            {"Name": "tier", "AttributeDataType": "String", "Mutable": True},
        ],
    )["UserPool"]["Id"]
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="attacker",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    email = f"{uuid.uuid4().hex[:10]}@attacker.example"
    password = operations.generate_password()
    cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=email,
        UserAttributes=[
            {"Name": "email", "Value": email},
            {"Name": "custom:tenant_id", "Value": user.tenant_id},
            {"Name": "custom:tier", "Value": "premium"},
        ],
        MessageAction="SUPPRESS",
    )
    cognito.admin_set_user_password(
        UserPoolId=pool_id, Username=email, Password=password, Permanent=True
    )
    token = cognito.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )["AuthenticationResult"]["IdToken"]

    reply = api.post(token, PROMPT)

    assert reply.status == 401


def test_access_token_rejected(api: ApiCaller, target: operations.Target, user: TenantUser) -> None:
    access_token = target.client("cognito-idp").admin_initiate_auth(
        UserPoolId=target.outputs["UserPoolId"],
        ClientId=target.outputs["UserPoolClientId"],
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": user.email, "PASSWORD": user.password},
    )["AuthenticationResult"]["AccessToken"]

    reply = api.post(access_token, PROMPT)

    assert reply.status == 401


def test_id_token_relabelled_access_rejected(
    api: ApiCaller, forger: TokenForger, user: TenantUser
) -> None:
    reply = api.post(forger.resign(user.token, token_use="access"), PROMPT)

    assert reply.status == 401
