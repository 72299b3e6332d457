"""Adapter for AgentCore Runtime's InvokeAgentRuntime."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from agentpool.agent_contract import AgentRequest, AgentResponse
from agentpool.errors import UpstreamError

logger = logging.getLogger(__name__)

# botocore retries a 5xx from the runtime up to 5 times by default, and the runtime may have
# run the agent before failing, so a retry could run (and bill) the agent twice. One attempt
# only: the client sees a 502 and decides itself whether to retry.
NO_RETRY = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    read_timeout=900,
    connect_timeout=5,
)


class AgentRuntime:
    """Invoke one runtime through one endpoint.

    `qualifier` names the runtime endpoint. IAM grants the invoke function that endpoint only,
    so a call through another endpoint (such as DEFAULT) is denied.
    """

    def __init__(self, runtime_arn: str, qualifier: str, client: Any | None = None) -> None:
        self._runtime_arn = runtime_arn
        self._qualifier = qualifier
        self._client = client or boto3.client("bedrock-agentcore", config=NO_RETRY)

    def invoke(self, request: AgentRequest, runtime_session_id: str) -> AgentResponse:
        """Run the agent once; raise UpstreamError if the runtime fails or returns bad JSON."""
        try:
            response = self._client.invoke_agent_runtime(
                agentRuntimeArn=self._runtime_arn,
                qualifier=self._qualifier,
                runtimeSessionId=runtime_session_id,
                runtimeUserId=request.user_id,
                contentType="application/json",
                accept="application/json",
                payload=request.model_dump_json().encode(),
            )
            body = response["response"].read()
        except (ClientError, BotoCoreError) as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
            logger.warning("agent runtime call failed", extra={"error_code": code})
            raise UpstreamError("The agent runtime call failed; retry later.") from error
        try:
            return AgentResponse.model_validate(json.loads(body))
        except (ValueError, ValidationError) as error:
            logger.warning("agent runtime response is malformed JSON")
            raise UpstreamError("The agent runtime returned malformed JSON.") from error
