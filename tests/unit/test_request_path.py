"""Unit tests for identity, request parsing, sessions, the Token Vending Machine and errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentpool.errors import (
    ForbiddenError,
    InvalidRequestError,
    ThrottledError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from agentpool.http import api_handler, require_json_body
from agentpool.identity import identity_from_authorizer
from agentpool.invocation import MAX_PROMPT_BYTES, parse_request
from agentpool.registry import Tenant, TenantRegistry, UnknownTierError
from agentpool.sessions import runtime_session_id, tenant_of_runtime_session
from agentpool.tvm import REFRESH_MARGIN, TenantScope, TokenVendingMachine


def event_with_claims(**claims: str) -> dict[str, Any]:
    return {"requestContext": {"requestId": "req-1", "authorizer": {"claims": claims}}}


def test_identity_reads_verified_claims() -> None:
    event = event_with_claims(sub="u-1", **{"custom:tenant_id": "clinic-a", "custom:tier": "basic"})

    caller = identity_from_authorizer(event)

    assert caller.tenant_id == "clinic-a"
    assert caller.user_id == "u-1"
    assert caller.claimed_tier == "basic"


def test_identity_without_claims_is_unauthorized() -> None:
    with pytest.raises(UnauthorizedError):
        identity_from_authorizer({"requestContext": {}})


def test_identity_rejects_access_token_claims() -> None:
    event = event_with_claims(sub="u-1", token_use="access", **{"custom:tenant_id": "clinic-a"})

    with pytest.raises(UnauthorizedError):
        identity_from_authorizer(event)


@pytest.mark.parametrize("tenant_id", ["", "a", "UPPER", "a.b", "a#b", "a/b", "-ab", "x" * 41])
def test_identity_rejects_invalid_tenant_id(tenant_id: str) -> None:
    event = event_with_claims(sub="u-1", **{"custom:tenant_id": tenant_id})

    with pytest.raises(ForbiddenError):
        identity_from_authorizer(event)


def test_identity_ignores_headers_and_body() -> None:
    event = event_with_claims(sub="u-1", **{"custom:tenant_id": "clinic-a"})
    event["headers"] = {"X-Tenant-Id": "clinic-b", "X-Tier": "premium"}
    event["body"] = json.dumps({"tenantId": "clinic-b", "tier": "premium"})

    caller = identity_from_authorizer(event)

    assert caller.tenant_id == "clinic-a"
    assert caller.claimed_tier is None


def test_parse_request_accepts_prompt_and_session() -> None:
    session = "0b8f8f5e-3c1a-4a52-9f55-1d2b3c4d5e6f"

    request = parse_request(json.dumps({"prompt": "hi", "sessionId": session}))

    assert request.prompt == "hi"
    assert request.session_id == session


def test_parse_request_allows_prompt_of_exactly_32kb() -> None:
    assert parse_request(json.dumps({"prompt": "x" * MAX_PROMPT_BYTES})).prompt


def test_parse_request_counts_prompt_bytes_not_characters() -> None:
    prompt = "é" * (MAX_PROMPT_BYTES // 2 + 1)  # each é is two UTF-8 bytes

    with pytest.raises(InvalidRequestError):
        parse_request(json.dumps({"prompt": prompt}))


@pytest.mark.parametrize("body", [None, "", "{", "null", '"text"', '{"prompt": null}'])
def test_parse_request_rejects_bad_body(body: str | None) -> None:
    with pytest.raises(InvalidRequestError):
        parse_request(body)


def test_runtime_session_id_round_trips_tenant() -> None:
    session_id = "0b8f8f5e-3c1a-4a52-9f55-1d2b3c4d5e6f"

    runtime_id = runtime_session_id("abc", session_id)

    assert 33 <= len(runtime_id) <= 256
    assert tenant_of_runtime_session(runtime_id) == "abc"


def test_runtime_session_ids_of_tenants_never_collide() -> None:
    # Tenant ids contain no ".", so the first "." always ends the tenant part.
    first = runtime_session_id("a-b", "c")
    second = runtime_session_id("a", "b-c")

    assert first != second


class FakeSts:
    def __init__(self, lifetime: timedelta = timedelta(minutes=15)) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lifetime = lifetime
        self.now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

    def assume_role(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {
            "Credentials": {
                "AccessKeyId": f"AKIA{len(self.calls)}",
                "SecretAccessKey": "secret",
                "SessionToken": "token",
                "Expiration": self.now + self.lifetime,
            }
        }


def test_tvm_tags_session_with_tenant_tier_and_user() -> None:
    sts = FakeSts()
    machine = TokenVendingMachine("arn:aws:iam::123456789012:role/t", sts, lambda: sts.now)

    machine.session_for(TenantScope("clinic-a", "basic", "user-1"))

    call = sts.calls[0]
    tags = {tag["Key"]: tag["Value"] for tag in call["Tags"]}
    assert tags == {"TenantId": "clinic-a", "Tier": "basic", "UserId": "user-1"}
    assert set(call["TransitiveTagKeys"]) == {"TenantId", "Tier", "UserId"}
    assert call["DurationSeconds"] == 900


def test_tvm_caches_per_tenant_and_user() -> None:
    sts = FakeSts()
    machine = TokenVendingMachine("arn:aws:iam::123456789012:role/t", sts, lambda: sts.now)

    machine.session_for(TenantScope("clinic-a", "basic", "user-1"))
    machine.session_for(TenantScope("clinic-a", "basic", "user-1"))
    machine.session_for(TenantScope("clinic-a", "basic", "user-2"))

    users = [{tag["Key"]: tag["Value"] for tag in call["Tags"]}["UserId"] for call in sts.calls]
    assert users == ["user-1", "user-2"]


def test_tvm_refreshes_before_expiry() -> None:
    sts = FakeSts()
    clock = [sts.now]
    machine = TokenVendingMachine("arn:aws:iam::123456789012:role/t", sts, lambda: clock[0])
    scope = TenantScope("clinic-a", "basic", "user-1")
    machine.session_for(scope)

    clock[0] = sts.now + sts.lifetime - REFRESH_MARGIN + timedelta(seconds=1)
    machine.session_for(scope)

    assert len(sts.calls) == 2


def test_api_handler_maps_domain_error_to_status() -> None:
    @api_handler
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise ThrottledError("Too many requests.", retry_after_seconds=3)

    response = handler({"requestContext": {"requestId": "req-9"}}, None)

    body = json.loads(response["body"])
    assert response["statusCode"] == 429
    assert response["headers"]["Retry-After"] == "3"
    assert body["error"] == {
        "code": "throttled",
        "message": "Too many requests.",
        "requestId": "req-9",
    }


def test_api_handler_hides_unexpected_error_details() -> None:
    @api_handler
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("secret detail")

    response = handler({"requestContext": {"requestId": "req-9"}}, None)

    assert response["statusCode"] == 500
    assert "secret detail" not in response["body"]


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "Application/JSON"],
)
def test_json_content_type_accepted(content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    require_json_body({"headers": headers})


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_other_content_type_is_415(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match=content_type) as caught:
        require_json_body({"headers": {"content-type": content_type}})

    assert caught.value.status == 415


def test_registry_rejects_unknown_tier() -> None:
    class NoWrites:
        def put_item(self, **_: Any) -> None:
            raise AssertionError("an unknown tier must not be written")

        def update_item(self, **_: Any) -> None:
            raise AssertionError("an unknown tier must not be written")

    registry = TenantRegistry(NoWrites())
    tenant = Tenant(tenant_id="clinic-a", name="Clinic A", tier="gold", status="active")

    with pytest.raises(UnknownTierError, match="gold"):
        registry.create(tenant)
    with pytest.raises(UnknownTierError, match="gold"):
        registry.set_tier("clinic-a", "gold")
