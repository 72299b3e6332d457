"""The `agentpool` CLI against a running local stack, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from pathlib import Path

import pytest

from agentpool_dev.local_stack import LocalStack, PortInUseError, Ports, check_ports_free

from .cli_runner import agentpool

pytestmark = pytest.mark.integration


def test_cli_onboards_and_invokes(state_file: Path, stack: LocalStack) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    email = f"user@{tenant}.example"
    password = "Cli-test-password-1!"

    created = agentpool(
        state_file, "tenants", "create", "--id", tenant, "--name", "CLI", "--tier", "basic"
    )
    user = agentpool(
        state_file, "users", "create", "--tenant", tenant, "--email", email, "--password", password
    )
    token = agentpool(state_file, "token", "--email", email, "--password", password)
    invoked = agentpool(
        state_file, "invoke", "What is new?", "--email", email, "--password", password
    )
    stack.wait_for_metering()
    usage = agentpool(state_file, "usage", "--tenant", tenant, "--json")

    assert created.returncode == 0, created.stderr
    assert user.returncode == 0, user.stderr
    assert token.stdout.startswith("eyJ")
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout)["tier"] == "basic"
    assert usage.returncode == 0, usage.stderr
    assert json.loads(usage.stdout)["total"]["invocations"] == "1"


def test_cli_rejects_invalid_tenant_id(state_file: Path) -> None:
    result = agentpool(
        state_file, "tenants", "create", "--id", "Bad_Id", "--name", "x", "--tier", "basic"
    )

    assert result.returncode == 1
    assert "Invalid tenant id" in result.stderr


def test_cli_rejects_duplicate_tenant(state_file: Path) -> None:
    tenant = f"dup-{uuid.uuid4().hex[:8]}"
    agentpool(state_file, "tenants", "create", "--id", tenant, "--name", "x", "--tier", "basic")

    again = agentpool(
        state_file, "tenants", "create", "--id", tenant, "--name", "x", "--tier", "basic"
    )

    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_cli_local_env_prints_exports(state_file: Path, stack: LocalStack) -> None:
    assert stack.state is not None

    result = agentpool(state_file, "local", "env")

    assert result.returncode == 0
    assert f"export AGENTPOOL_API_URL={stack.state.api_url}" in result.stdout
    assert "export AGENTPOOL_TOTALS_TABLE_NAME=" in result.stdout


def test_cli_without_running_stack_explains(tmp_path: Path) -> None:
    result = agentpool(tmp_path / "missing.json", "usage", "--tenant", "abc")

    assert result.returncode == 1
    assert "make run" in result.stderr


def test_cli_usage_rejects_bad_month(state_file: Path) -> None:
    result = agentpool(state_file, "usage", "--tenant", "abc", "--month", "2026-13")

    assert result.returncode == 2
    assert "YYYY-MM" in result.stderr


def test_cli_reports_aws_errors_in_one_line(state_file: Path) -> None:
    tenant = f"err-{uuid.uuid4().hex[:8]}"
    agentpool(state_file, "tenants", "create", "--id", tenant, "--name", "x", "--tier", "basic")
    email = f"user@{tenant}.example"
    agentpool(state_file, "users", "create", "--tenant", tenant, "--email", email)

    again = agentpool(state_file, "users", "create", "--tenant", tenant, "--email", email)

    assert again.returncode == 1
    assert "UsernameExistsException" in again.stderr
    assert "Traceback" not in again.stderr


def test_local_stack_names_busy_port(stack: LocalStack) -> None:
    busy = Ports.free()
    taken = Ports(**{**asdict(busy), "api": stack.ports.api})

    with pytest.raises(PortInUseError, match="AGENTPOOL_API_PORT"):
        check_ports_free(taken)


def test_cli_suspends_and_activates_tenant(state_file: Path) -> None:
    tenant = f"sus-{uuid.uuid4().hex[:8]}"
    email = f"user@{tenant}.example"
    password = "Cli-test-password-1!"
    agentpool(state_file, "tenants", "create", "--id", tenant, "--name", "x", "--tier", "basic")
    agentpool(
        state_file, "users", "create", "--tenant", tenant, "--email", email, "--password", password
    )

    suspended = agentpool(state_file, "tenants", "suspend", "--id", tenant)
    rejected = agentpool(state_file, "invoke", "hello", "--email", email, "--password", password)
    activated = agentpool(state_file, "tenants", "activate", "--id", tenant)
    accepted = agentpool(state_file, "invoke", "hello", "--email", email, "--password", password)

    assert suspended.returncode == 0, suspended.stderr
    assert json.loads(rejected.stdout)["error"]["code"] == "forbidden"
    assert activated.returncode == 0, activated.stderr
    assert json.loads(accepted.stdout)["tier"] == "basic"


def test_cli_sets_tier_for_next_request(state_file: Path) -> None:
    tenant = f"tier-{uuid.uuid4().hex[:8]}"
    email = f"user@{tenant}.example"
    password = "Cli-test-password-1!"
    agentpool(state_file, "tenants", "create", "--id", tenant, "--name", "x", "--tier", "basic")
    agentpool(
        state_file, "users", "create", "--tenant", tenant, "--email", email, "--password", password
    )

    upgraded = agentpool(state_file, "tenants", "set-tier", "--id", tenant, "--tier", "premium")
    answer = agentpool(state_file, "invoke", "hello", "--email", email, "--password", password)
    unknown = agentpool(state_file, "tenants", "set-tier", "--id", tenant, "--tier", "gold")
    missing = agentpool(state_file, "tenants", "set-tier", "--id", "no-such", "--tier", "basic")

    assert upgraded.returncode == 0, upgraded.stderr
    assert "from basic to premium" in upgraded.stdout
    assert json.loads(answer.stdout)["tier"] == "premium"
    assert unknown.returncode == 2
    assert "invalid choice: 'gold'" in unknown.stderr
    assert missing.returncode == 1
    assert "not registered" in missing.stderr


def test_cli_uploads_documents_for_search(state_file: Path, tmp_path: Path) -> None:
    tenant = f"doc-{uuid.uuid4().hex[:8]}"
    email = f"user@{tenant}.example"
    password = "Cli-test-password-1!"
    agentpool(state_file, "tenants", "create", "--id", tenant, "--name", "x", "--tier", "basic")
    agentpool(
        state_file, "users", "create", "--tenant", tenant, "--email", email, "--password", password
    )
    document = tmp_path / "parking.md"
    document.write_text("Visitor parking is free on level two after 18:00.", encoding="utf-8")

    uploaded = agentpool(state_file, "documents", "upload", "--tenant", tenant, str(document))
    answer = agentpool(
        state_file, "invoke", "Where is visitor parking?", "--email", email, "--password", password
    )

    assert uploaded.returncode == 0, uploaded.stderr
    assert f"tenants/{tenant}/documents/parking.md" in uploaded.stdout
    assert "level two" in json.loads(answer.stdout)["output"]


def test_cli_creates_platform_admin(state_file: Path) -> None:
    email = f"ops-{uuid.uuid4().hex[:8]}@platform.example"

    created = agentpool(state_file, "admins", "create", "--email", email)

    assert created.returncode == 0, created.stderr
    assert "Password (shown once)" in created.stdout
