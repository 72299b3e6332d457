"""Operator actions against a running stack: the local stack, or a deployed one via its outputs."""

from __future__ import annotations

import json
import secrets
import string
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import boto3
from boto3.dynamodb.conditions import Key

from agentpool.documents import documents_prefix
from agentpool.identity import TENANT_CLAIM, TIER_CLAIM, is_valid_tenant_id
from agentpool.registry import Tenant, TenantRegistry
from agentpool.tier_shards import TIER_SHARDS, tier_partition
from agentpool.tiers import TIERS
from agentpool_dev.local_stack import LOCAL_CREDENTIALS, STATE_FILE, StackState


class OperatorError(Exception):
    """An operator command failed; the message tells the operator what to do next."""


@dataclass(frozen=True)
class Target:
    """A stack to operate on: its API URL, resource names and an AWS session to reach it."""

    name: str
    api_url: str
    outputs: dict[str, str]
    session: boto3.session.Session
    endpoint_url: str | None

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)

    def table(self, output_name: str) -> Any:
        resource = self.session.resource("dynamodb", endpoint_url=self.endpoint_url)
        return resource.Table(self.outputs[output_name])


def local_target() -> Target:
    if not STATE_FILE.exists():
        raise OperatorError(
            "The local stack is not running. Start it with `make run` in another terminal."
        )
    state = StackState.load()
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=state.region,
    )
    return Target("local", state.api_url, state.resources, session, state.moto_url)


def deployed_target(stack_name: str, region: str | None = None) -> Target:
    session = boto3.session.Session(region_name=region)
    stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stacks[0]["Outputs"]}
    return Target(stack_name, outputs["ApiUrl"], outputs, session, None)


def create_tenant(target: Target, tenant_id: str, name: str, tier: str) -> Tenant:
    if not is_valid_tenant_id(tenant_id):
        raise OperatorError(
            f"Invalid tenant id {tenant_id!r}: use 3 to 40 lowercase letters, digits and "
            "inner hyphens."
        )
    if tier not in TIERS:
        raise OperatorError(f"Unknown tier {tier!r}; choose one of {', '.join(TIERS)}.")
    tenant = Tenant(tenant_id=tenant_id, name=name, tier=tier, status="active")
    TenantRegistry(target.table("TenantsTableName")).create(tenant)
    return tenant


def generate_password() -> str:
    """Generate a password that meets the user pool's policy: 20 characters of every class."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(16))
    return (
        core
        + secrets.choice(string.ascii_uppercase)
        + secrets.choice(string.ascii_lowercase)
        + secrets.choice(string.digits)
        + "!"
    )


def _create_cognito_user(
    target: Target,
    email: str,
    password: str,
    attributes: dict[str, str],
    group: str | None,
) -> str:
    """Create a confirmed user with a permanent password, optionally in `group`; return its sub."""
    cognito = target.client("cognito-idp")
    pool_id = target.outputs["UserPoolId"]
    created = cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=email,
        UserAttributes=[
            {"Name": "email", "Value": email},
            {"Name": "email_verified", "Value": "true"},
            *({"Name": name, "Value": value} for name, value in attributes.items()),
        ],
        MessageAction="SUPPRESS",
    )["User"]
    cognito.admin_set_user_password(
        UserPoolId=pool_id, Username=email, Password=password, Permanent=True
    )
    if group:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=email, GroupName=group)
    returned = {attribute["Name"]: attribute["Value"] for attribute in created["Attributes"]}
    return str(returned.get("sub", created["Username"]))


def create_user(
    target: Target, tenant_id: str, email: str, password: str, tenant_admin: bool = False
) -> str:
    """Create a user of `tenant_id` with a permanent password; return the user's sub."""
    tenant = TenantRegistry(target.table("TenantsTableName")).get(tenant_id)
    if tenant is None:
        raise OperatorError(f"Tenant {tenant_id} is not registered; create it first.")
    claims = {TENANT_CLAIM: tenant.tenant_id, TIER_CLAIM: tenant.tier}
    group = "tenant-admins" if tenant_admin else None
    return _create_cognito_user(target, email, password, claims, group)


def create_platform_admin(target: Target, email: str, password: str) -> str:
    """Create a platform operator with no tenant, in the group platform-admins; return its sub."""
    return _create_cognito_user(target, email, password, {}, "platform-admins")


def id_token(target: Target, email: str, password: str) -> str:
    response = target.client("cognito-idp").admin_initiate_auth(
        UserPoolId=target.outputs["UserPoolId"],
        ClientId=target.outputs["UserPoolClientId"],
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )
    token: str = response["AuthenticationResult"]["IdToken"]
    return token


def call_api(
    target: Target, method: str, path: str, token: str | None, body: Any = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Send one request to the API; return status, JSON body and headers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the stack's own API URL
        target.api_url.rstrip("/") + path, data=data, method=method
    )
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", token)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            parsed = json.loads(payload or b"{}")
        except ValueError:
            parsed = {"raw": payload.decode(errors="replace")}
        return error.code, parsed, dict(error.headers)


def invoke(
    target: Target, token: str, prompt: str, session_id: str | None = None
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"prompt": prompt}
    if session_id:
        body["sessionId"] = session_id
    status, payload, _ = call_api(target, "POST", "/invocations", token, body)
    return status, payload


COUNTERS = (
    "invocations",
    "failed_invocations",
    "model_calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "tool_calls",
    "tool_denials",
    "unpriced_events",
    "throttled_requests",
    "memory_events",
    "cost_usd",
)


def _counters(item: dict[str, Any] | None) -> dict[str, Decimal]:
    item = item or {}
    return {name: Decimal(item.get(name, 0)) for name in COUNTERS}


def tenant_month(target: Target, tenant_id: str, month: str) -> dict[str, Any]:
    """Totals of one tenant for one month, with breakdowns by model, user and tool."""
    table = target.table("TotalsTableName")
    items = table.query(
        KeyConditionExpression=Key("pk").eq(tenant_id) & Key("sk").begins_with(f"month#{month}"),
        ConsistentRead=True,
    )["Items"]
    result: dict[str, Any] = {"total": _counters(None), "model": {}, "user": {}, "tool": {}}
    for item in items:
        parts = item["sk"].split("#")
        if len(parts) == 2:
            result["total"] = _counters(item)
        elif len(parts) == 4 and parts[2] in ("model", "user", "tool"):
            result[parts[2]][parts[3]] = _counters(item)
    return result


def tier_month(target: Target, tier: str, month: str) -> dict[str, Decimal]:
    """Totals of one tier for one month: the sum of its shards."""
    table = target.table("TotalsTableName")
    total = _counters(None)
    for shard in range(TIER_SHARDS):
        item = table.get_item(
            Key={"pk": tier_partition(tier, shard), "sk": f"month#{month}"}, ConsistentRead=True
        ).get("Item")
        for name, value in _counters(item).items():
            total[name] += value
    return total


def list_tenants(target: Target) -> list[Tenant]:
    items = target.table("TenantsTableName").scan(ConsistentRead=True)["Items"]
    return sorted((Tenant.model_validate(item) for item in items), key=lambda t: t.tenant_id)


def set_tenant_status(
    target: Target, tenant_id: str, status: Literal["active", "suspended"]
) -> None:
    registry = TenantRegistry(target.table("TenantsTableName"))
    if registry.get(tenant_id) is None:
        raise OperatorError(
            f"Tenant {tenant_id} is not registered; check `agentpool tenants list`."
        )
    registry.set_status(tenant_id, status)


def set_tenant_tier(target: Target, tenant_id: str, tier: str) -> Tenant:
    """Move a tenant to `tier`: its next request and tool call use the new tier."""
    if tier not in TIERS:
        raise OperatorError(f"Unknown tier {tier!r}; choose one of {', '.join(TIERS)}.")
    registry = TenantRegistry(target.table("TenantsTableName"))
    tenant = registry.get(tenant_id)
    if tenant is None:
        raise OperatorError(
            f"Tenant {tenant_id} is not registered; check `agentpool tenants list`."
        )
    registry.set_tier(tenant_id, tier)
    return tenant


MAX_DOCUMENT_UPLOAD_BYTES = 1024 * 1024


def upload_documents(target: Target, tenant_id: str, files: list[Path]) -> list[str]:
    """Upload text files under the tenant's documents prefix; return the keys written."""
    if TenantRegistry(target.table("TenantsTableName")).get(tenant_id) is None:
        raise OperatorError(f"Tenant {tenant_id} is not registered; create it first.")
    s3 = target.client("s3")
    keys = []
    for path in files:
        if not path.is_file():
            raise OperatorError(f"{path} is not a file.")
        if path.stat().st_size > MAX_DOCUMENT_UPLOAD_BYTES:
            raise OperatorError(f"{path} is larger than 1 MiB; split it first.")
        key = documents_prefix(tenant_id) + path.name
        s3.put_object(Bucket=target.outputs["DocumentsBucketName"], Key=key, Body=path.read_bytes())
        keys.append(key)
    return keys
