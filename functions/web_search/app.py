"""Gateway tool `web-search___search_web`: public web search through AgentCore (premium)."""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentpool.observability import function_logger
from agentpool.tiers import Tool
from agentpool.tools import SearchToolInput, input_error

logger = function_logger()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True)

    web_search_id: str


settings = Settings()
agentcore = boto3.client("bedrock-agentcore")


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    problem = input_error(Tool.WEB_SEARCH, event)
    if problem is not None:
        logger.info("invalid tool input", extra={"problem": problem})
        return {"error": problem}
    search = SearchToolInput.model_validate(event)
    try:
        response = agentcore.invoke_web_search(
            webSearchId=settings.web_search_id,
            searchQuery=search.query,
            maxResults=search.max_results,
        )
    except (ClientError, BotoCoreError) as error:
        logger.warning("web search failed", extra={"error_type": type(error).__name__})
        return {"error": "web search failed; try again later"}
    results = response.get("results", [])
    logger.info("web searched", extra={"tenant_id": search.tenant_id, "hits": len(results)})
    return {"results": results}
