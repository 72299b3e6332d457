"""The agentpool agent, hosted on Amazon Bedrock AgentCore Runtime.

The entrypoint validates an `AgentRequest`, runs the Converse tool loop with the tools of the
request's tier through AgentCore Gateway, and returns an `AgentResponse`. It never raises:
the SDK would turn an exception into HTTP 500 and the usage already reported would be lost.

Environment:
- `GATEWAY_URL` (required): the Gateway's MCP endpoint, for example `https://.../mcp`.
- `AGENT_MAX_MODEL_CALLS` (default 4): model calls allowed in one invocation.
- `GATEWAY_TIMEOUT_SECONDS` (default 30): timeout of one Gateway request.
- `PORT` or `AGENT_PORT` (default 8080): the port for `python -m agent.app`. AgentCore
  Runtime requires 8080.
- `AWS_REGION` and, on the local stack, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, read by boto3.

Logs contain ids, counts, latency and error types only, never prompts, answers, tool
arguments or results, or tokens.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import boto3
from bedrock_agentcore.runtime import BedrockAgentCoreApp
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.loop import ConverseLoop, tools_for
from agent.mcp_client import McpClient, McpError
from agentpool.agent_contract import AgentError, AgentRequest, AgentResponse
from agentpool.tiers import TIERS

logger = logging.getLogger("agentpool.agent")

app = BedrockAgentCoreApp()


class AgentSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    gateway_url: str = Field(min_length=1)
    max_model_calls: int = Field(default=4, ge=1, le=20)
    gateway_timeout_seconds: float = Field(default=30.0, gt=0)


class SettingsError(Exception):
    """A required environment variable is missing or invalid."""


def load_settings() -> AgentSettings:
    """Read the settings from the environment, naming the variable that is missing or invalid."""
    gateway_url = os.environ.get("GATEWAY_URL", "")
    if not gateway_url:
        raise SettingsError("GATEWAY_URL is not set: set it to the Gateway's MCP endpoint URL")
    try:
        return AgentSettings(
            gateway_url=gateway_url,
            max_model_calls=int(os.environ.get("AGENT_MAX_MODEL_CALLS", "4")),
            gateway_timeout_seconds=float(os.environ.get("GATEWAY_TIMEOUT_SECONDS", "30")),
        )
    except (ValueError, ValidationError) as error:
        raise SettingsError(
            "AGENT_MAX_MODEL_CALLS must be an integer from 1 to 20 and GATEWAY_TIMEOUT_SECONDS "
            "a positive number"
        ) from error


_clients: dict[tuple[str | None, str | None], Any] = {}
_clients_lock = threading.Lock()


def bedrock_client() -> Any:
    """Return a bedrock-runtime client, one per region and endpoint.

    boto3 reads `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` when it creates a client, so the cache key
    includes it. Clients come from their own Session because creating clients from boto3's
    default session is not thread-safe.
    """
    # AgentCore Runtime and Lambda set AWS_REGION, which botocore does not read by itself.
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    key = (region, os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME"))
    with _clients_lock:
        if key not in _clients:
            _clients[key] = boto3.session.Session().client(
                "bedrock-runtime",
                region_name=region,
                config=Config(connect_timeout=5, read_timeout=120, retries={"mode": "standard"}),
            )
        return _clients[key]


def _failed(model_id: str, code: str, message: str) -> dict[str, Any]:
    response = AgentResponse(model_id=model_id, error=AgentError(code=code, message=message))
    return response.model_dump(mode="json")


def handle(payload: Any, runtime_session_id: str | None) -> dict[str, Any]:
    """Run one invocation and return the AgentResponse as JSON-ready data."""
    model_id = str(payload.get("model_id", "unknown")) if isinstance(payload, dict) else "unknown"
    try:
        request = AgentRequest.model_validate(payload)
    except ValidationError as error:
        # The field names only: pydantic's messages would echo the prompt and the token.
        fields = sorted({".".join(str(part) for part in item["loc"]) for item in error.errors()})
        logger.warning("invalid request fields=%s", ",".join(fields))
        return _failed(model_id, "invalid_request", f"invalid fields: {', '.join(fields)}")

    tier = TIERS.get(request.tier)
    if tier is None or tier.model_id != request.model_id:
        logger.warning(
            "request does not match a tier request_id=%s tier=%s model_id=%s",
            request.request_id,
            request.tier,
            request.model_id,
        )
        return _failed(model_id, "invalid_request", "tier and model_id do not match a tier")
    try:
        settings = load_settings()
    except SettingsError as error:
        logger.error("agent settings invalid error=%s", error)
        return _failed(model_id, "configuration_error", str(error))

    logger.info(
        "invocation started request_id=%s tenant_id=%s tier=%s session_id=%s runtime_session_id=%s",
        request.request_id,
        request.tenant_id,
        request.tier,
        request.session_id,
        runtime_session_id,
    )
    tools = tools_for(request, tier.tools)
    gateway = McpClient(
        settings.gateway_url, request.gateway_token, settings.gateway_timeout_seconds
    )
    if tools:
        try:
            gateway.initialize()
            listed = {tool["name"] for tool in gateway.list_tools()}
        except McpError as error:
            logger.warning(
                "gateway handshake failed request_id=%s error=%s", request.request_id, error
            )
            return _failed(model_id, "tool_call_failed", f"Gateway handshake failed: {error}")
        # Unlisted tier tools stay offered: the Gateway decides each call, and the denial
        # is recorded in tool_calls. A mismatch means the tier and the policy disagree.
        for tool in tools:
            if tool.mcp_name not in listed:
                logger.warning(
                    "gateway does not list a tier tool request_id=%s tool=%s",
                    request.request_id,
                    tool.tool.value,
                )
    loop = ConverseLoop(request, tools, bedrock_client(), gateway, settings.max_model_calls)
    try:
        response = loop.run()
    except Exception as error:
        # Any other failure still returns the usage reported so far. Only the error type is
        # logged, because exception messages may quote the conversation.
        logger.error(
            "invocation failed request_id=%s error=%s", request.request_id, type(error).__name__
        )
        response = loop.response(
            error=AgentError(code="internal_error", message=f"agent failed: {type(error).__name__}")
        )
    logger.info(
        "invocation finished request_id=%s model_calls=%d tool_calls=%d error=%s",
        request.request_id,
        response.model_calls,
        len(response.tool_calls),
        response.error.code if response.error else None,
    )
    return response.model_dump(mode="json")


@app.entrypoint
def invoke(payload: Any, context: Any) -> dict[str, Any]:
    try:
        return handle(payload, getattr(context, "session_id", None))
    except Exception as error:
        # handle() returns model and tool failures itself, with their usage. This catches the
        # rest (a client that cannot be built, a bug) so the SDK never returns HTTP 500.
        logger.error("invocation failed error=%s", type(error).__name__)
        model_id = payload.get("model_id") if isinstance(payload, dict) else None
        return _failed(str(model_id or "unknown"), "internal_error", type(error).__name__)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    load_settings()  # Fail at start, naming the variable, rather than on the first request.
    port = int(os.environ.get("PORT") or os.environ.get("AGENT_PORT") or "8080")
    app.run(port=port)


if __name__ == "__main__":
    main()
