"""The agent app end to end on 127.0.0.1: AgentCore, Bedrock and Gateway stand-ins around it.

A real boto3 bedrock-agentcore client invokes the AgentCore stand-in, which forwards to the
agent app served by uvicorn. The agent calls the Bedrock stand-in with boto3 and the Gateway
stand-in over MCP.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import uvicorn
from botocore.config import Config
from botocore.exceptions import ClientError

import agent.app
from agent.mcp_client import McpClient, _parse_event_stream
from agentpool.agent_contract import MAX_OUTPUT_TOKENS
from agentpool.tokens import TokenError
from agentpool.tool_policy import with_registry_tier
from agentpool_dev.standins.agentcore import AgentCoreStandIn
from agentpool_dev.standins.bedrock import BedrockStandIn
from agentpool_dev.standins.gateway import GatewayStandIn

BASIC_MODEL = "mistral.ministral-3-8b-instruct"
PREMIUM_MODEL = "openai.gpt-oss-120b-1:0"
RUNTIME_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agentpool_agent-AbCdEf1234"
SESSION_ID = "clinic-a-user-1-session-0000000000001"
TOKEN = "fixed-test-token"
PROMPT = "Patient with chest pain: what does our triage policy say?"
TENANT_TIERS = {"clinic-a": "basic", "hospital-b": "premium"}
INTERCEPTOR = "GatewayInterceptorFunction"
CANNED_DOCUMENTS = {"documents": [{"title": "Triage policy v3", "text": "See a nurse first."}]}


class FixedTokenVerifier:
    """Accepts one token, whose tenant the test sets."""

    def __init__(self) -> None:
        self.tenant_id = "clinic-a"

    def verify(self, token: str) -> dict[str, Any]:
        if token != TOKEN:
            raise TokenError("token is invalid")
        tier = TENANT_TIERS[self.tenant_id]
        return {"sub": "user-1", "custom:tenant_id": self.tenant_id, "custom:tier": tier}


class CannedFunctions:
    """Tool functions that return canned documents, and a Gateway interceptor that sets the
    tier of each call from TENANT_TIERS, as the real one does from the tenant registry."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.on_call: Any = None

    def __call__(self, logical_id: str, event: dict[str, Any], context: Any) -> Any:
        if logical_id == INTERCEPTOR:
            body = event["mcp"]["gatewayRequest"]["body"]
            if body.get("method") == "tools/call":
                tenant_id = body["params"]["arguments"].get("tenant_id")
                arguments = with_registry_tier(
                    body["params"]["arguments"], TENANT_TIERS.get(tenant_id)
                )
                body = {**body, "params": {**body["params"], "arguments": arguments}}
            return {"mcp": {"transformedGatewayRequest": {"body": body}}}
        self.events.append(event)
        if self.on_call is not None:
            self.on_call()
        return CANNED_DOCUMENTS


class AgentServer:
    """The agent app under uvicorn in a background thread on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        config = uvicorn.Config(agent.app.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the agent app did not start within 10 seconds")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        sock: socket.socket = self.server.servers[0].sockets[0]
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Stack:
    bedrock: BedrockStandIn
    gateway: GatewayStandIn
    verifier: FixedTokenVerifier
    functions: CannedFunctions
    agent: AgentServer
    agentcore: AgentCoreStandIn


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    verifier = FixedTokenVerifier()
    functions = CannedFunctions()
    bedrock = BedrockStandIn()
    gateway = GatewayStandIn(verifier, functions, interceptor_function=INTERCEPTOR)
    agent_server = AgentServer()
    bedrock.start()
    gateway.start()
    agent_server.start()
    agentcore = AgentCoreStandIn(agent_server.url)
    agentcore.start()
    yield Stack(bedrock, gateway, verifier, functions, agent_server, agentcore)
    agentcore.stop()
    agent_server.stop()
    gateway.stop()
    bedrock.stop()


@pytest.fixture(autouse=True)
def environment(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", stack.bedrock.url)
    monkeypatch.setenv("GATEWAY_URL", f"{stack.gateway.url}/mcp")
    stack.verifier.tenant_id = "clinic-a"
    stack.functions.on_call = None
    stack.bedrock.records.clear()
    stack.bedrock.calls.clear()
    stack.gateway.decisions.clear()
    stack.functions.events.clear()


def payload(tenant_id: str = "clinic-a", tier: str = "basic", **changes: Any) -> dict[str, Any]:
    model_id = BASIC_MODEL if tier == "basic" else PREMIUM_MODEL
    tools = ["document_search"] if tier == "basic" else ["document_search", "web_search"]
    return {
        "prompt": PROMPT,
        "request_id": "request-1",
        "tenant_id": tenant_id,
        "tier": tier,
        "user_id": "user-1",
        "session_id": "chat-1",
        "model_id": model_id,
        "tools": tools,
        "gateway_token": TOKEN,
        **changes,
    }


def make_client(url: str) -> Any:
    return boto3.client(
        "bedrock-agentcore",
        region_name="us-east-1",
        endpoint_url=url,
        config=Config(retries={"total_max_attempts": 1}),
    )


def invoke(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    response = make_client(stack.agentcore.url).invoke_agent_runtime(
        agentRuntimeArn=RUNTIME_ARN,
        runtimeSessionId=SESSION_ID,
        runtimeUserId="user-1",
        payload=json.dumps(body),
    )
    result: dict[str, Any] = json.loads(response["response"].read())
    return result


def reported_usage(stack: Stack) -> dict[str, int]:
    total = {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
    for record in stack.bedrock.records:
        for key in total:
            total[key] += record.usage[key]
    return total


def test_agent_basic_answers_from_documents(stack: Stack) -> None:
    result = invoke(stack, payload())
    assert result["error"] is None
    assert result["output"].startswith(f"[stand-in model {BASIC_MODEL}]")
    assert "Triage policy v3" in result["output"]
    assert result["model_id"] == BASIC_MODEL
    assert result["model_calls"] == 2
    assert result["tool_calls"] == [{"tool": "document_search", "decision": "allowed"}]


def test_agent_usage_equals_reported_sum(stack: Stack) -> None:
    result = invoke(stack, payload())
    assert len(stack.bedrock.records) == 2
    assert result["usage"] == reported_usage(stack)


def test_agent_bounds_output_tokens(stack: Stack) -> None:
    invoke(stack, payload())
    assert stack.bedrock.records
    for record in stack.bedrock.records:
        assert record.max_tokens == MAX_OUTPUT_TOKENS


def test_agent_injects_identity_into_tools(stack: Stack) -> None:
    invoke(stack, payload())
    event = stack.functions.events[0]
    assert event["tenant_id"] == "clinic-a"
    assert event["user_id"] == "user-1"
    assert event["query"] == PROMPT


def test_agent_basic_offers_document_search_only(stack: Stack) -> None:
    invoke(stack, payload())
    decisions = [(d.tool, d.decision) for d in stack.gateway.decisions]
    assert decisions == [("document-search___search_documents", "allowed")]


def test_agent_premium_calls_both_tools(stack: Stack) -> None:
    stack.verifier.tenant_id = "hospital-b"
    result = invoke(stack, payload("hospital-b", "premium"))
    assert result["tool_calls"] == [
        {"tool": "document_search", "decision": "allowed"},
        {"tool": "web_search", "decision": "allowed"},
    ]
    assert result["usage"] == reported_usage(stack)


def test_basic_tenant_denied_web_search(stack: Stack) -> None:
    # The payload claims premium, but the tenant registry has clinic-a on basic, so the
    # Gateway's policy denies web_search even though the agent offered it.
    result = invoke(stack, payload("clinic-a", "premium"))
    assert result["tool_calls"] == [
        {"tool": "document_search", "decision": "allowed"},
        {"tool": "web_search", "decision": "denied"},
    ]
    assert "failed or was denied" in result["output"]
    assert ("web-search___search_web", "denied") in [
        (d.tool, d.decision) for d in stack.gateway.decisions
    ]


class RecordingMemory:
    """A ConversationMemory double that stores turns, or fails every write when told to."""

    def __init__(self, fail_writes: bool = False) -> None:
        self.fail_writes = fail_writes
        self.turns: list[tuple[str, str]] = []

    def history(self, tenant_id: str, user_id: str, session_id: str) -> list[dict[str, Any]]:
        return []

    def append_turn(
        self, tenant_id: str, user_id: str, session_id: str, prompt: str, answer: str
    ) -> None:
        if self.fail_writes:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "CreateEvent"
            )
        self.turns.append((prompt, answer))


def test_agent_without_memory_reports_no_events(stack: Stack) -> None:
    result = invoke(stack, payload())
    assert result["error"] is None
    assert result["memory_events"] == 0


def test_agent_reports_created_memory_events(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = RecordingMemory()
    monkeypatch.setattr(agent.app, "conversation_memory", lambda settings, request: memory)
    result = invoke(stack, payload())
    assert result["error"] is None
    assert len(memory.turns) == 1
    assert result["memory_events"] == 1


def test_failed_memory_write_reports_no_events(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = RecordingMemory(fail_writes=True)
    monkeypatch.setattr(agent.app, "conversation_memory", lambda settings, request: memory)
    result = invoke(stack, payload())
    assert result["error"] is None
    assert result["output"]
    assert result["memory_events"] == 0


def test_failed_answer_stores_no_memory_events(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = RecordingMemory()
    monkeypatch.setattr(agent.app, "conversation_memory", lambda settings, request: memory)
    stack.functions.on_call = lambda: stack.bedrock.fail_next(424)
    result = invoke(stack, payload())
    assert result["error"]["code"] == "model_call_failed"
    assert memory.turns == []
    assert result["memory_events"] == 0


def test_agent_fault_after_run_not_retried(stack: Stack) -> None:
    stack.agentcore.fail_next(500, after_agent_ran=True)
    runs_before = stack.agentcore.invocation_count(SESSION_ID)
    with pytest.raises(ClientError) as caught:
        invoke(stack, payload())
    assert caught.value.response["Error"]["Code"] == "InternalServerException"
    assert stack.agentcore.invocation_count(SESSION_ID) == runs_before + 1
    # One agent run makes exactly two model calls: tool use, then the final text.
    assert stack.bedrock.call_count(BASIC_MODEL) == 2


def test_model_failure_keeps_reported_usage(stack: Stack) -> None:
    # The tool call runs between the first and second model call, so the second one fails.
    stack.functions.on_call = lambda: stack.bedrock.fail_next(424)
    result = invoke(stack, payload())
    assert result["error"]["code"] == "model_call_failed"
    assert "ModelErrorException" in result["error"]["message"]
    assert result["model_calls"] == 1
    assert result["usage"] == reported_usage(stack)
    assert result["usage"]["inputTokens"] > 0


def test_gateway_failure_keeps_reported_usage(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    monkeypatch.setenv("GATEWAY_URL", f"http://127.0.0.1:{closed_port}/mcp")
    result = invoke(stack, payload())
    assert result["error"]["code"] == "tool_call_failed"
    assert result["model_calls"] == 0


def test_invalid_payload_returns_error(stack: Stack) -> None:
    body = payload()
    del body["tenant_id"]
    result = invoke(stack, body)
    assert result["error"]["code"] == "invalid_request"
    assert "tenant_id" in result["error"]["message"]
    assert stack.bedrock.records == []


def test_mismatched_model_rejected(stack: Stack) -> None:
    result = invoke(stack, payload(model_id=PREMIUM_MODEL))
    assert result["error"]["code"] == "invalid_request"


def test_missing_gateway_url_is_config_error(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_URL")
    result = invoke(stack, payload())
    assert result["error"]["code"] == "configuration_error"
    assert "GATEWAY_URL" in result["error"]["message"]


def test_model_call_limit_stops_loop(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_MAX_MODEL_CALLS", "1")
    result = invoke(stack, payload())
    assert result["error"]["code"] == "model_call_limit"
    assert result["model_calls"] == 1
    assert result["usage"] == reported_usage(stack)
    assert stack.functions.events == []


def test_logs_omit_prompt_and_token(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    # INFO and above, as the runtime logs. botocore's DEBUG logs carry request bodies.
    with caplog.at_level(logging.INFO):
        invoke(stack, payload())
    text = caplog.text
    assert "invocation finished" in text
    assert "chest pain" not in text
    assert TOKEN not in text
    assert "Triage policy v3" not in text


def get_ping(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:  # noqa: S310
        document: dict[str, Any] = json.load(response)
    return document


def test_ping_time_stays_unchanged(stack: Stack) -> None:
    # A ping that stamps the current time on every call keeps a runtime session alive and
    # billed. bedrock-agentcore 1.25 updates the time only when the status changes.
    first = get_ping(stack.agent.url)
    time.sleep(2.1)
    second = get_ping(stack.agent.url)
    assert first["status"] == "Healthy"
    assert second["time_of_last_update"] == first["time_of_last_update"]


def test_event_stream_response_parsed() -> None:
    body = (
        "event: message\r\n"
        'data: {"jsonrpc": "2.0", "method": "notifications/progress"}\r\n\r\n'
        "event: message\r\n"
        'data: {"jsonrpc": "2.0", "id": 7, "result": {"tools": []}}\r\n\r\n'
    )
    assert _parse_event_stream(body, 7) == {"jsonrpc": "2.0", "id": 7, "result": {"tools": []}}


def test_mcp_client_lists_gateway_tools(stack: Stack) -> None:
    client = McpClient(f"{stack.gateway.url}/mcp", TOKEN)
    client.initialize()
    names = [tool["name"] for tool in client.list_tools()]
    assert names == ["document-search___search_documents", "web-search___search_web"]
