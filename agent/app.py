"""The agentpool agent, hosted on Amazon Bedrock AgentCore Runtime.

The entrypoint validates an `AgentRequest`, runs the Converse tool loop with the tools of the
request's tier through AgentCore Gateway, and returns an `AgentResponse`. It never raises:
the SDK would turn an exception into HTTP 500 and the usage already reported would be lost.

Environment:
- `GATEWAY_URL` (required): the Gateway's MCP endpoint, for example `https://.../mcp`.
- `AGENT_MAX_MODEL_CALLS` (default and maximum 4, `agent_contract.MAX_MODEL_CALLS`): model
  calls allowed in one invocation.
- `GATEWAY_TIMEOUT_SECONDS` (default 30): timeout of one Gateway request.
- `MEMORY_ID` and `TENANT_ACCESS_ROLE_ARN` (both or neither): the AgentCore Memory that keeps
  each session's conversation history, and the role that the agent assumes through the Token
  Vending Machine with the request's tenant, tier and user as session tags, so that it reads
  and writes memory only as that user. Without them the agent keeps no history.
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
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.loop import ConverseLoop, tools_for
from agent.mcp_client import McpClient, McpError
from agentpool.agent_contract import MAX_MODEL_CALLS, AgentError, AgentRequest, AgentResponse
from agentpool.memory import ConversationMemory
from agentpool.tiers import TIERS
from agentpool.tvm import TenantScope, TokenVendingMachine

logger = logging.getLogger("agentpool.agent")

app = BedrockAgentCoreApp()


class AgentSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    gateway_url: str = Field(min_length=1)
    max_model_calls: int = Field(default=MAX_MODEL_CALLS, ge=1, le=MAX_MODEL_CALLS)
    gateway_timeout_seconds: float = Field(default=30.0, gt=0)
    memory_id: str | None = None
    tenant_access_role_arn: str | None = None


class SettingsError(Exception):
    """A required environment variable is missing or invalid."""


def load_settings() -> AgentSettings:
    """Read the settings from the environment, naming the variable that is missing or invalid."""
    gateway_url = os.environ.get("GATEWAY_URL", "")
    if not gateway_url:
        raise SettingsError("GATEWAY_URL is not set: set it to the Gateway's MCP endpoint URL")
    memory_id = os.environ.get("MEMORY_ID") or None
    role_arn = os.environ.get("TENANT_ACCESS_ROLE_ARN") or None
    if (memory_id is None) != (role_arn is None):
        raise SettingsError(
            "MEMORY_ID and TENANT_ACCESS_ROLE_ARN must be set together: set both to keep "
            "conversation history, or neither"
        )
    try:
        return AgentSettings(
            memory_id=memory_id,
            tenant_access_role_arn=role_arn,
            gateway_url=gateway_url,
            max_model_calls=int(os.environ.get("AGENT_MAX_MODEL_CALLS", str(MAX_MODEL_CALLS))),
            gateway_timeout_seconds=float(os.environ.get("GATEWAY_TIMEOUT_SECONDS", "30")),
        )
    except (ValueError, ValidationError) as error:
        raise SettingsError(
            f"AGENT_MAX_MODEL_CALLS must be an integer from 1 to {MAX_MODEL_CALLS} and "
            "GATEWAY_TIMEOUT_SECONDS "
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


_vending_machines: dict[str, TokenVendingMachine] = {}


def conversation_memory(
    settings: AgentSettings, request: AgentRequest
) -> ConversationMemory | None:
    """Return the memory client of the request's user, on tenant-scoped credentials, if any.

    The agent trusts tenant, tier and user in the payload because only the invoke function
    may call the runtime (agentpool.agent_contract).
    """
    if settings.memory_id is None or settings.tenant_access_role_arn is None:
        return None
    with _clients_lock:
        vending_machine = _vending_machines.get(settings.tenant_access_role_arn)
        if vending_machine is None:
            vending_machine = TokenVendingMachine(settings.tenant_access_role_arn)
            _vending_machines[settings.tenant_access_role_arn] = vending_machine
    scope = TenantScope(request.tenant_id, request.tier, request.user_id)
    try:
        client = vending_machine.session_for(scope).client("bedrock-agentcore")
    except (ClientError, BotoCoreError) as error:
        # The request is still answered, without history.
        logger.warning(
            "tenant credentials for memory failed request_id=%s error=%s",
            request.request_id,
            type(error).__name__,
        )
        return None
    return ConversationMemory(client, settings.memory_id)


def load_history(memory: ConversationMemory | None, request: AgentRequest) -> list[dict[str, Any]]:
    """Return the session's earlier turns, or none when memory is off or cannot be read."""
    if memory is None:
        return []
    try:
        return memory.history(request.tenant_id, request.user_id, request.session_id)
    except (ClientError, BotoCoreError, ValueError) as error:
        # The request is still answered, without history.
        logger.warning(
            "memory read failed request_id=%s error=%s", request.request_id, type(error).__name__
        )
        return []


def save_turn(memory: ConversationMemory | None, request: AgentRequest, answer: str) -> int:
    """Store the turn in memory and return the number of memory events created (0 or 1)."""
    if memory is None or not answer:
        return 0
    try:
        memory.append_turn(
            request.tenant_id, request.user_id, request.session_id, request.prompt, answer
        )
    except (ClientError, BotoCoreError, ValueError) as error:
        logger.warning(
            "memory write failed request_id=%s error=%s", request.request_id, type(error).__name__
        )
        return 0
    return 1


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
    memory = conversation_memory(settings, request)
    history = load_history(memory, request)
    loop = ConverseLoop(
        request, tools, bedrock_client(), gateway, settings.max_model_calls, history=history
    )
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
    if response.output is not None and response.error is None:
        memory_events = save_turn(memory, request, response.output)
        response = response.model_copy(update={"memory_events": memory_events})
    logger.info(
        "invocation finished request_id=%s model_calls=%d tool_calls=%d memory_events=%d error=%s",
        request.request_id,
        response.model_calls,
        len(response.tool_calls),
        response.memory_events,
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
    # AGENT_HOST pins the address; without it the SDK picks 0.0.0.0 inside a container (as
    # AgentCore Runtime needs) and 127.0.0.1 elsewhere. The local stack sets 127.0.0.1.
    app.run(port=port, host=os.environ.get("AGENT_HOST") or None)


if __name__ == "__main__":
    main()
