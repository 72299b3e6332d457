"""Verify Cognito ID tokens as API Gateway's Cognito authorizer does.

Checks: RS256 signature against the user pool's JWKS, issuer (the user pool's own, because
moto signs every pool with one key), audience (the app client id), expiry and not-before,
and `token_use` = `id`.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import jwt

LEEWAY_SECONDS = 0


class TokenError(Exception):
    """The token is missing, malformed, forged, expired or not meant for this API."""


class CognitoJwtVerifier:
    def __init__(self, issuer: str, jwks_url: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self._jwks_url = jwks_url
        self._keys: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _key_for(self, kid: str) -> Any:
        with self._lock:
            if kid not in self._keys:
                # Fetched again on an unknown kid, so a rotated key is picked up.
                with urllib.request.urlopen(self._jwks_url, timeout=5) as response:  # noqa: S310
                    jwks = json.load(response)
                self._keys = {
                    key["kid"]: jwt.PyJWK.from_dict(key).key for key in jwks.get("keys", [])
                }
            key = self._keys.get(kid)
        if key is None:
            raise TokenError("token is signed with an unknown key")
        return key

    def verify(self, token: str) -> dict[str, Any]:
        """Return the claims of a valid ID token; raise TokenError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise TokenError("token is malformed") from error
        if header.get("alg") != "RS256":
            raise TokenError("token must be signed with RS256")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("token header has no key id")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=self._key_for(kid),
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "token_use"]},
            )
        except jwt.PyJWTError as error:
            raise TokenError(f"token is invalid: {type(error).__name__}") from error
        if claims.get("token_use") != "id":
            raise TokenError("only ID tokens are accepted")
        return claims
