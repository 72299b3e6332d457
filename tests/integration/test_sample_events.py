"""The sample events in events/ run on the local stack's functions as they are.

The same files serve `sam local invoke -e events/<file>`, so a sample that drifts from what
the handler accepts fails here first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentpool.registry import TenantRegistry
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .conftest import Onboarding

pytestmark = pytest.mark.integration

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return event


def ensure_tenant(target: operations.Target, tenant_id: str, tier: str) -> None:
    registry = TenantRegistry(target.table("TenantsTableName"))
    if registry.get(tenant_id) is None:
        operations.create_tenant(target, tenant_id, tenant_id, tier)


def test_document_search_sample_finds_document(
    stack: LocalStack, target: operations.Target
) -> None:
    event = load_event("document-search.json")
    ensure_tenant(target, event["tenant_id"], "basic")
    target.client("s3").put_object(
        Bucket=target.outputs["DocumentsBucketName"],
        Key=f"tenants/{event['tenant_id']}/documents/flu.md",
        Body=b"Flu vaccine hours: Tuesday 9:00 to 12:00.",
    )

    result = stack.runner.invoke("DocumentSearchFunction", event)

    assert [hit["document"] for hit in result["results"]] == ["flu.md"]


def test_web_search_sample_returns_stand_in_results(stack: LocalStack) -> None:
    result = stack.runner.invoke("WebSearchFunction", load_event("web-search.json"))

    assert result["results"]
    assert "stand-in" in json.dumps(result["results"]).lower()


def test_invoke_sample_runs_with_a_real_token(
    stack: LocalStack, target: operations.Target, onboard: Onboarding
) -> None:
    event = load_event("invoke-post-invocations.json")
    claims = event["requestContext"]["authorizer"]["claims"]
    ensure_tenant(target, claims["custom:tenant_id"], claims["custom:tier"])
    user = onboard.user(claims["custom:tenant_id"])
    # The sample's claims are kept; only the placeholder token is replaced, because the agent
    # forwards it to the Gateway, which verifies it.
    event["headers"]["Authorization"] = user.token
    claims["sub"] = user.user_id

    response = stack.runner.invoke("InvokeFunction", event)

    body = json.loads(response["body"])
    assert response["statusCode"] == 200
    assert body["tier"] == "basic"
    assert body["requestId"] == event["requestContext"]["requestId"]
