"""Fixtures of the attack tests. The local stack, `target` and `onboard` come from
tests/conftest.py, so the security and integration tests share one session-scoped stack."""

from __future__ import annotations

import gzip
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from conftest import Onboarding, TenantUser

from agentpool_dev import operations

__all__ = ["ApiCaller", "Onboarding", "TenantUser", "TokenForger"]


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


class ApiCaller:
    """Client that sends POST /invocations with any token, headers, query string and body."""

    def __init__(self, target: operations.Target) -> None:
        self.url = f"{target.api_url.rstrip('/')}/invocations"

    def post(
        self,
        token: str | None,
        body: dict[str, Any] | str,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Reply:
        data = body if isinstance(body, str) else json.dumps(body)
        url = f"{self.url}?{urlencode(query)}" if query else self.url
        request = urllib.request.Request(  # noqa: S310 - the local stack's API on 127.0.0.1
            url, data=data.encode(), method="POST"
        )
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                return Reply(response.status, json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                parsed = json.loads(payload or b"{}")
            except ValueError:
                parsed = {"raw": payload.decode(errors="replace")}
            return Reply(error.code, parsed)


class TokenForger:
    """Signer of ID tokens with moto's Cognito key, so they pass the signature check.

    moto signs the tokens of every user pool with the one RSA key in
    moto/cognitoidp/resources/jwks-private.json.gz, so a token signed here differs from a real
    one only in the claims and headers that a test changes.
    """

    def __init__(self) -> None:
        packaged = resources.files("moto.cognitoidp") / "resources" / "jwks-private.json.gz"
        jwk = json.loads(gzip.decompress(packaged.read_bytes()))
        self.kid: str = jwk["kid"]
        self.private_key = jwt.PyJWK.from_dict(jwk).key

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims,
            self.private_key,
            algorithm="RS256",
            headers={"kid": self.kid, **(headers or {})},
        )

    def resign(self, token: str, **changes: Any) -> str:
        """Re-sign `token` with its claims changed; a None value removes the claim."""
        claims = jwt.decode(token, options={"verify_signature": False})
        for name, value in changes.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return self.sign(claims)


@pytest.fixture(scope="session")
def forger() -> TokenForger:
    return TokenForger()


@pytest.fixture(scope="session")
def api(target: operations.Target) -> ApiCaller:
    return ApiCaller(target)


def now() -> int:
    return int(time.time())
