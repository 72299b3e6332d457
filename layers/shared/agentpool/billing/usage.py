"""Usage of one tenant for one month, read from the totals table, as the usage API returns it.

A tenant admin sees the tenant's totals with a breakdown per user, model, tool and runtime.
Any other user sees only their own usage. A month without data returns zeros. The caller
passes the table, so the tenant route can use tenant-scoped credentials and the platform
admin route the function's own role.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.conditions import Key
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from agentpool.errors import InvalidRequestError

MONTH_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
TENANT_ADMINS_GROUP = "tenant-admins"
PLATFORM_ADMINS_GROUP = "platform-admins"
COUNTER_NAMES = (
    "invocations",
    "failed_invocations",
    "input_tokens",
    "output_tokens",
    "tool_calls",
    "tool_denials",
    "unpriced_events",
)


class _ApiModel(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class UsageCounters(_ApiModel):
    """Counters and exact cost of one scope: a tenant, a user, a model, a tool or the runtime."""

    cost_usd: str
    invocations: int
    failed_invocations: int
    input_tokens: int
    output_tokens: int
    tool_calls: int
    tool_denials: int
    unpriced_events: int


class NamedUsage(UsageCounters):
    """Usage of one user (a Cognito sub), model, tool or runtime."""

    name: str


class UsageResponse(_ApiModel):
    """Response of GET /usage and GET /admin/tenants/{tenantId}/usage."""

    tenant_id: str
    month: str
    scope: Literal["tenant", "user"]
    currency: Literal["USD"] = "USD"
    total: UsageCounters
    users: list[NamedUsage]
    models: list[NamedUsage]
    tools: list[NamedUsage]
    runtimes: list[NamedUsage]


class ErrorDetail(_ApiModel):
    code: str
    message: str
    request_id: str | None = None


class ErrorResponse(_ApiModel):
    """Body of every error response of the API."""

    error: ErrorDetail


def parse_month(query: dict[str, Any] | None) -> str:
    """Return the `month` query parameter; raise InvalidRequestError unless it is YYYY-MM."""
    month = (query or {}).get("month")
    if not isinstance(month, str) or not MONTH_RE.fullmatch(month):
        raise InvalidRequestError("Invalid or missing month: use ?month=YYYY-MM, e.g. 2026-03.")
    return month


def counters(item: dict[str, Any] | None) -> dict[str, Any]:
    item = item or {}
    values: dict[str, Any] = {name: int(item.get(name, 0)) for name in COUNTER_NAMES}
    values["cost_usd"] = f"{Decimal(item.get('cost_usd', 0)).normalize():f}"
    return values


def tenant_usage(table: Any, tenant_id: str, month: str) -> UsageResponse:
    """Read the tenant's month item and its breakdowns in one strongly consistent query."""
    prefix = f"month#{month}"
    arguments: dict[str, Any] = {
        "KeyConditionExpression": Key("pk").eq(tenant_id) & Key("sk").begins_with(prefix),
        "ConsistentRead": True,
    }
    total: dict[str, Any] | None = None
    breakdown: dict[str, list[NamedUsage]] = {"user": [], "model": [], "tool": [], "runtime": []}
    while True:
        page = table.query(**arguments)
        for item in page["Items"]:
            parts = str(item["sk"]).split("#")
            if len(parts) == 2:
                total = item
            elif len(parts) == 4 and parts[2] in breakdown:
                breakdown[parts[2]].append(NamedUsage(name=parts[3], **counters(item)))
        if "LastEvaluatedKey" not in page:
            break
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return UsageResponse(
        tenant_id=tenant_id,
        month=month,
        scope="tenant",
        total=UsageCounters(**counters(total)),
        users=sorted(breakdown["user"], key=lambda line: line.name),
        models=sorted(breakdown["model"], key=lambda line: line.name),
        tools=sorted(breakdown["tool"], key=lambda line: line.name),
        runtimes=sorted(breakdown["runtime"], key=lambda line: line.name),
    )


def user_usage(table: Any, tenant_id: str, user_id: str, month: str) -> UsageResponse:
    """Read one user's month item; the response names no other user."""
    item = table.get_item(
        Key={"pk": tenant_id, "sk": f"month#{month}#user#{user_id}"}, ConsistentRead=True
    ).get("Item")
    own = counters(item)
    return UsageResponse(
        tenant_id=tenant_id,
        month=month,
        scope="user",
        total=UsageCounters(**own),
        users=[NamedUsage(name=user_id, **own)],
        models=[],
        tools=[],
        runtimes=[],
    )
