"""GET /usage: the caller's tenant usage for a month, read with tenant-scoped credentials.

Tenant admins get the tenant's totals with a breakdown per user, model, tool and runtime.
Other users get only their own usage. The totals are read through the Token Vending Machine,
so IAM limits this function to the caller's own tenant partition even if the code is wrong.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentpool.billing.usage import TENANT_ADMINS_GROUP, parse_month, tenant_usage, user_usage
from agentpool.errors import ForbiddenError
from agentpool.http import api_handler, json_response, request_id_of
from agentpool.identity import groups_from_authorizer, identity_from_authorizer
from agentpool.observability import function_logger
from agentpool.registry import TenantRegistry
from agentpool.tvm import TenantScope, TokenVendingMachine

logger = function_logger()


class Settings(BaseSettings):
    """Environment of the function, checked at cold start."""

    model_config = SettingsConfigDict(frozen=True)

    tenants_table: str
    totals_table: str
    tenant_access_role_arn: str


settings = Settings()
registry = TenantRegistry(boto3.resource("dynamodb").Table(settings.tenants_table))
vending_machine = TokenVendingMachine(settings.tenant_access_role_arn)


@logger.inject_lambda_context(log_event=False)
@api_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    caller = identity_from_authorizer(event)
    month = parse_month(event.get("queryStringParameters"))
    logger.append_keys(tenant_id=caller.tenant_id, request_id=request_id_of(event))
    tenant = registry.get(caller.tenant_id)
    if tenant is None:
        raise ForbiddenError("The tenant is not registered.")
    scope = TenantScope(tenant.tenant_id, tenant.tier, caller.user_id)
    table = vending_machine.session_for(scope).resource("dynamodb").Table(settings.totals_table)
    if TENANT_ADMINS_GROUP in groups_from_authorizer(event):
        usage = tenant_usage(table, tenant.tenant_id, month)
    else:
        usage = user_usage(table, tenant.tenant_id, caller.user_id, month)
    return json_response(200, usage.model_dump(mode="json", by_alias=True))
