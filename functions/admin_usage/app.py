"""GET /admin/tenants/{tenantId}/usage: any tenant's usage for a month, for platform admins.

The caller is not a member of the tenant it reads, so tenant-scoped credentials cannot serve
this route. The function's own role may only query the totals table, and only callers in the
Cognito group platform-admins reach the read. Keeping this route in its own function keeps
that role away from the tenant route, whose reads stay scoped by the Token Vending Machine.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentpool.billing.usage import PLATFORM_ADMINS_GROUP, parse_month, tenant_usage
from agentpool.errors import ForbiddenError, InvalidRequestError, UnauthorizedError
from agentpool.http import api_handler, json_response, request_id_of
from agentpool.identity import groups_from_authorizer, is_valid_tenant_id
from agentpool.observability import function_logger

logger = function_logger()


class Settings(BaseSettings):
    """Environment of the function, checked at cold start."""

    model_config = SettingsConfigDict(frozen=True)

    totals_table: str


settings = Settings()
totals = boto3.resource("dynamodb").Table(settings.totals_table)


@logger.inject_lambda_context(log_event=False)
@api_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    claims = ((event.get("requestContext") or {}).get("authorizer") or {}).get("claims")
    if not isinstance(claims, dict) or not claims.get("sub"):
        raise UnauthorizedError("The request carries no verified identity.")
    if PLATFORM_ADMINS_GROUP not in groups_from_authorizer(event):
        raise ForbiddenError("Only platform admins may read another tenant's usage.")
    tenant_id = str((event.get("pathParameters") or {}).get("tenantId") or "")
    if not is_valid_tenant_id(tenant_id):
        raise InvalidRequestError(
            "Invalid tenant id in the path: use 3 to 40 lowercase letters, digits and hyphens."
        )
    month = parse_month(event.get("queryStringParameters"))
    logger.append_keys(tenant_id=tenant_id, request_id=request_id_of(event))
    logger.info("platform admin read tenant usage", extra={"admin_user_id": claims["sub"]})
    usage = tenant_usage(totals, tenant_id, month)
    return json_response(200, usage.model_dump(mode="json", by_alias=True))
