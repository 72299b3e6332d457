"""The tenant registry: each tenant's id, name, tier and status. The source of truth for tiers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from agentpool.errors import AgentpoolError
from agentpool.identity import TENANT_ID_PATTERN
from agentpool.tiers import TIERS


class Tenant(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    name: str = Field(min_length=1, max_length=200)
    tier: str
    status: Literal["active", "suspended"]
    # Overrides the tier's monthly budget when set. With `hard_cap`, a request is admitted
    # only while its worst-case cost fits in what is left of the budget.
    monthly_budget_usd: Decimal | None = Field(default=None, gt=0)
    hard_cap: bool = False
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


class TenantExistsError(AgentpoolError):
    status = 409
    code = "tenant_exists"


class UnknownTierError(AgentpoolError):
    status = 400
    code = "unknown_tier"


def _check_tier(tier: str) -> None:
    if tier not in TIERS:
        raise UnknownTierError(f"Unknown tier {tier!r}; choose one of {', '.join(TIERS)}.")


class TenantRegistry:
    def __init__(self, table: Any) -> None:
        """`table` is a boto3 DynamoDB Table resource for the tenants table."""
        self._table = table

    def get(self, tenant_id: str) -> Tenant | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id}, ConsistentRead=True).get("Item")
        return Tenant.model_validate(item) if item else None

    def create(self, tenant: Tenant) -> None:
        """Register `tenant`; raise UnknownTierError or TenantExistsError."""
        _check_tier(tenant.tier)
        try:
            self._table.put_item(
                Item=tenant.model_dump(), ConditionExpression="attribute_not_exists(tenant_id)"
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise TenantExistsError(f"tenant {tenant.tenant_id} already exists") from error
            raise

    def set_status(self, tenant_id: str, status: Literal["active", "suspended"]) -> None:
        self._table.update_item(
            Key={"tenant_id": tenant_id},
            UpdateExpression="SET #s = :s",
            ConditionExpression="attribute_exists(tenant_id)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": status},
        )

    def set_tier(self, tenant_id: str, tier: str) -> None:
        """Move a registered tenant to `tier`, from its next request and tool call on."""
        _check_tier(tier)
        self._table.update_item(
            Key={"tenant_id": tenant_id},
            UpdateExpression="SET tier = :t",
            ConditionExpression="attribute_exists(tenant_id)",
            ExpressionAttributeValues={":t": tier},
        )
