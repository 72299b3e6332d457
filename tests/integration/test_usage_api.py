"""GET /usage and GET /admin/tenants/{tenantId}/usage over HTTP with real tokens per role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from agentpool_dev import operations
from agentpool_dev.export_openapi import load_spec
from agentpool_dev.local_stack import LocalStack

from .conftest import Onboarding, TenantUser

pytestmark = pytest.mark.integration

MONTH = datetime.now(UTC).strftime("%Y-%m")
EMPTY_MONTH = "2001-01"
SPEC = load_spec()


def usage_schema() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/UsageResponse", "components": SPEC["components"]}


def get(target: operations.Target, path: str, token: str) -> tuple[int, dict[str, Any]]:
    status, body, _ = operations.call_api(target, "GET", path, token)
    return status, body


class Roles:
    """One tenant with an admin and a plain user who both used the agent, another tenant's
    admin, and a platform admin."""

    def __init__(self, onboard: Onboarding, target: operations.Target, stack: LocalStack):
        tenant = onboard.tenant("basic")
        self.tenant_id = tenant
        self.admin: TenantUser = onboard.user(tenant, admin=True)
        self.user: TenantUser = onboard.user(tenant)
        self.other_admin: TenantUser = onboard.user(onboard.tenant("basic"), admin=True)
        email = f"ops-{uuid.uuid4().hex[:10]}@platform.example"
        password = operations.generate_password()
        operations.create_platform_admin(target, email, password)
        self.platform_token = operations.id_token(target, email, password)
        for caller in (self.admin, self.user):
            status, body = operations.invoke(target, caller.token, "Hello from usage test")
            assert status == 200, body
        stack.wait_for_metering()


@pytest.fixture(scope="module")
def roles(target: operations.Target, stack: LocalStack) -> Roles:
    return Roles(Onboarding(target, stack), target, stack)


def test_tenant_admin_sees_every_user(roles: Roles, target: operations.Target) -> None:
    status, body = get(target, f"/usage?month={MONTH}", roles.admin.token)
    assert status == 200
    jsonschema.validate(body, usage_schema())
    assert body["scope"] == "tenant"
    assert body["tenantId"] == roles.tenant_id
    assert body["total"]["invocations"] == 2
    assert sorted(user["name"] for user in body["users"]) == sorted(
        [roles.admin.user_id, roles.user.user_id]
    )
    assert len(body["models"]) == 1


def test_plain_user_sees_only_own_usage(roles: Roles, target: operations.Target) -> None:
    status, body = get(target, f"/usage?month={MONTH}", roles.user.token)
    assert status == 200
    jsonschema.validate(body, usage_schema())
    assert body["scope"] == "user"
    assert [user["name"] for user in body["users"]] == [roles.user.user_id]
    assert body["total"]["invocations"] == 1
    assert body["models"] == []


def test_user_totals_add_up_to_tenant(roles: Roles, target: operations.Target) -> None:
    _, tenant = get(target, f"/usage?month={MONTH}", roles.admin.token)
    per_user = sum(float(user["costUsd"]) for user in tenant["users"])
    assert per_user == pytest.approx(float(tenant["total"]["costUsd"]))
    assert float(tenant["total"]["costUsd"]) > 0


def test_month_without_data_returns_zeros(roles: Roles, target: operations.Target) -> None:
    status, body = get(target, f"/usage?month={EMPTY_MONTH}", roles.admin.token)
    assert status == 200
    assert body["total"]["costUsd"] == "0"
    assert body["total"]["invocations"] == 0
    assert body["users"] == []


@pytest.mark.parametrize("month", ["2026-13", "2026-3", "march", ""])
def test_invalid_month_is_400(roles: Roles, target: operations.Target, month: str) -> None:
    status, body = get(target, f"/usage?month={month}", roles.user.token)
    assert status == 400
    assert body["error"]["code"] == "invalid_request"


def test_missing_month_is_400(roles: Roles, target: operations.Target) -> None:
    status, _ = get(target, "/usage", roles.admin.token)
    assert status == 400


def test_other_tenant_admin_sees_own_tenant(roles: Roles, target: operations.Target) -> None:
    status, body = get(target, f"/usage?month={MONTH}", roles.other_admin.token)
    assert status == 200
    assert body["tenantId"] == roles.other_admin.tenant_id
    assert body["total"]["invocations"] == 0


def test_platform_admin_reads_any_tenant(roles: Roles, target: operations.Target) -> None:
    path = f"/admin/tenants/{roles.tenant_id}/usage?month={MONTH}"
    status, body = get(target, path, roles.platform_token)
    assert status == 200
    jsonschema.validate(body, usage_schema())
    assert body["tenantId"] == roles.tenant_id
    assert body["scope"] == "tenant"
    assert body["total"]["invocations"] == 2


@pytest.mark.parametrize("caller", ["admin", "user", "other_admin"])
def test_admin_route_rejects_tenant_users(
    roles: Roles, target: operations.Target, caller: str
) -> None:
    token = getattr(roles, caller).token
    status, body = get(target, f"/admin/tenants/{roles.tenant_id}/usage?month={MONTH}", token)
    assert status == 403
    assert body["error"]["code"] == "forbidden"


def test_admin_route_rejects_invalid_month(roles: Roles, target: operations.Target) -> None:
    path = f"/admin/tenants/{roles.tenant_id}/usage?month=2026-00"
    status, _ = get(target, path, roles.platform_token)
    assert status == 400


def test_admin_route_unknown_tenant_zeros(roles: Roles, target: operations.Target) -> None:
    status, body = get(
        target, f"/admin/tenants/no-such-tenant/usage?month={MONTH}", roles.platform_token
    )
    assert status == 200
    assert body["total"]["invocations"] == 0


def test_usage_without_token_is_401(target: operations.Target) -> None:
    status, _ = get(target, f"/usage?month={MONTH}", "")
    assert status == 401


def test_platform_admin_has_no_tenant_usage(roles: Roles, target: operations.Target) -> None:
    # A platform admin belongs to no tenant, so the tenant route has nothing to show.
    status, _ = get(target, f"/usage?month={MONTH}", roles.platform_token)
    assert status == 403
