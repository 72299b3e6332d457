"""Onboarding settings of the user pool in template.yaml that tenant isolation relies on.

tests/unit/test_template.py already checks that custom:tenant_id and custom:tier are immutable
and that the app client cannot write them. These tests add the rest: only admins create users, and
the platform-admins group of operators who onboard users exists in the same pool.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentpool_dev.template import load_template


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    document: dict[str, Any] = load_template()
    return document["Resources"]


def test_user_pool_admin_create_only(resources: dict[str, Any]) -> None:
    config = resources["UserPool"]["Properties"]["AdminCreateUserConfig"]
    assert config["AllowAdminCreateUserOnly"] is True


def test_platform_admins_group_exists(resources: dict[str, Any]) -> None:
    groups = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Cognito::UserPoolGroup"
    ]
    names = [group["GroupName"] for group in groups]
    assert "platform-admins" in names


def test_platform_admins_in_user_pool(resources: dict[str, Any]) -> None:
    (group,) = [
        resource["Properties"]
        for resource in resources.values()
        if resource["Type"] == "AWS::Cognito::UserPoolGroup"
        and resource["Properties"]["GroupName"] == "platform-admins"
    ]
    assert group["UserPoolId"] == {"Ref": "UserPool"}
