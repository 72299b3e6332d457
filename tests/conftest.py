"""Fixtures for tests that run against a real local stack over HTTP.

One stack serves the whole test session on free ports, so it never clashes with `make run`.
tests/integration and tests/security share it, which is why the fixtures live at this level.
Tests create their own tenants with unique ids and never depend on each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentpool.registry import TenantRegistry
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack, Ports


@contextmanager
def running_stack(log_dir: Path, runtime_usage_logs: bool = True) -> Iterator[LocalStack]:
    """Start a local stack on free ports and stop it on exit."""
    local = LocalStack(
        ports=Ports.free(), log_dir=log_dir, state_file=None, runtime_usage_logs=runtime_usage_logs
    )
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Runtime usage records carry the stand-in's wall-clock seconds, so they would add a
    # varying amount to totals that these tests assert exactly. The modules that test the
    # delivery path, and the demo, start stacks that deliver them.
    with running_stack(tmp_path_factory.mktemp("local-stack-logs"), False) as local:
        yield local


@pytest.fixture(scope="session")
def state_file(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared stack's state file, for the `agentpool` CLI."""
    assert stack.state is not None
    path = tmp_path_factory.mktemp("state") / "local-stack.json"
    stack.state.save(path)
    return path


@pytest.fixture(scope="session")
def target(stack: LocalStack) -> operations.Target:
    assert stack.state is not None
    return operations.Target(
        "local", stack.state.api_url, stack.state.resources, stack.aws_session(), stack.moto_url
    )


@dataclass
class TenantUser:
    tenant_id: str
    tier: str
    email: str
    password: str
    user_id: str
    token: str


class Onboarding:
    """Creates tenants and users with unique ids for one test."""

    def __init__(self, target: operations.Target, stack: LocalStack) -> None:
        self.target = target
        self.stack = stack

    def tenant(self, tier: str = "basic", documents: dict[str, str] | None = None) -> str:
        tenant_id = f"t-{uuid.uuid4().hex[:12]}"
        operations.create_tenant(self.target, tenant_id, f"Tenant {tenant_id}", tier)
        s3 = self.target.client("s3")
        for name, text in (documents or {}).items():
            s3.put_object(
                Bucket=self.target.outputs["DocumentsBucketName"],
                Key=f"tenants/{tenant_id}/documents/{name}",
                Body=text.encode(),
            )
        return tenant_id

    def user(self, tenant_id: str, admin: bool = False) -> TenantUser:
        email = f"{uuid.uuid4().hex[:10]}@{tenant_id}.example"
        password = operations.generate_password()
        user_id = operations.create_user(self.target, tenant_id, email, password, admin)
        tenant = TenantRegistry(self.target.table("TenantsTableName")).get(tenant_id)
        assert tenant is not None
        token = operations.id_token(self.target, email, password)
        return TenantUser(tenant_id, tenant.tier, email, password, user_id, token)


@pytest.fixture
def onboard(target: operations.Target, stack: LocalStack) -> Onboarding:
    return Onboarding(target, stack)


@pytest.fixture(scope="session")
def logs_dir(stack: LocalStack) -> Path:
    return stack.log_dir
