"""POST /invocations: run the caller's prompt on the tenant's tier and return the answer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentpool.http import api_handler, json_response, request_id_of, require_json_body
from agentpool.identity import identity_from_authorizer
from agentpool.invocation import build_service, parse_request
from agentpool.observability import function_logger

logger = function_logger()


class Settings(BaseSettings):
    """Environment of the function, checked at cold start."""

    model_config = SettingsConfigDict(frozen=True)

    tenants_table: str
    sessions_table: str
    limits_table: str
    totals_table: str
    event_bus_name: str
    tenant_access_role_arn: str
    agent_runtime_arn: str
    agent_runtime_qualifier: str


settings = Settings()
service = build_service(settings)


def bearer_token(event: dict[str, Any]) -> str:
    headers = {key.lower(): value for key, value in (event.get("headers") or {}).items()}
    token = str(headers.get("authorization") or "")
    return token[7:] if token.lower().startswith("bearer ") else token


@logger.inject_lambda_context(log_event=False)
@api_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    caller = identity_from_authorizer(event)
    require_json_body(event)
    request = parse_request(event.get("body"))
    request_id = request_id_of(event) or context.aws_request_id
    logger.append_keys(tenant_id=caller.tenant_id, request_id=request_id)
    result = service.invoke(caller, request, request_id, bearer_token(event))
    return json_response(200, result.to_body())
