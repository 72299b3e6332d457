"""The agent keeps each Converse request within the bound that a hard-capped budget reserves.

The Bedrock stand-in counts input tokens with the Tekken tokenizer over HTTP, so the tokens
below are counted, not assumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config

from agent.loop import TRUNCATION_MARKER, ConverseLoop, request_bytes, tools_for
from agent.mcp_client import ToolResult
from agentpool.agent_contract import AgentRequest, max_input_bytes
from agentpool.budget import WorstCase
from agentpool.events import ModelUsage
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.tiers import TIERS, Tool
from agentpool.usage import from_converse
from agentpool_dev.standins.bedrock import BedrockStandIn

TIER = TIERS["basic"]
PROMPT = "Which wards have a flu vaccine clinic this week?"
# Varied words, so that the tokenizer cannot pack them into few tokens.
WORDS = ["ward", "clinic", "vaccine", "schedule", "nurse", "patient", "dose", "influenza"]


def long_text(words: int, seed: int) -> str:
    return " ".join(f"{WORDS[(seed + i) % len(WORDS)]}{i % 97}" for i in range(words))


class LargeResultGateway:
    """Returns, for every tool call, a result far above the input bound."""

    def __init__(self) -> None:
        self.calls = 0

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        self.calls += 1
        return ToolResult(text=long_text(20_000, self.calls), is_error=False)


@pytest.fixture
def bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = BedrockStandIn()
    server.start()
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.url,
        config=Config(retries={"total_max_attempts": 1}),
    )
    yield server, client
    server.stop()


def agent_request() -> AgentRequest:
    return AgentRequest(
        prompt=PROMPT,
        request_id="req-bound",
        tenant_id="clinic-a",
        tier=TIER.name,
        user_id="user-1",
        session_id="session-1",
        model_id=TIER.model_id,
        tools=(Tool.DOCUMENT_SEARCH,),
        gateway_token="token",
    )


def history(turns: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in range(turns):
        messages.append({"role": "user", "content": [{"text": long_text(60, turn)}]})
        messages.append({"role": "assistant", "content": [{"text": long_text(120, turn + 1)}]})
    return messages


def test_oldest_history_turns_dropped(bedrock: Any) -> None:
    server, client = bedrock
    request = agent_request()
    turns = history(10)
    loop = ConverseLoop(request, [], client, LargeResultGateway(), 4, history=turns)

    response = loop.run()

    kept_messages = len(loop.messages) - 2
    assert response.error is None
    assert kept_messages == 8
    assert loop.messages[:kept_messages] == turns[-kept_messages:]
    assert server.records[0].usage["inputTokens"] <= max_input_bytes(PROMPT)


def test_long_session_costs_at_most_reserved(bedrock: Any) -> None:
    server, client = bedrock
    request = agent_request()
    turns = history(10)
    assert request_bytes({"messages": turns}) > max_input_bytes(PROMPT)
    loop = ConverseLoop(
        request, tools_for(request, TIER.tools), client, LargeResultGateway(), 4, history=turns
    )

    response = loop.run()

    assert response.error is None
    assert response.model_calls == 2
    bound = max_input_bytes(PROMPT)
    assert bound == 8_048
    for record in server.records:
        assert record.usage["inputTokens"] <= bound
    # The tool result needed the room of every history turn, and was shortened as well.
    assert loop.messages[0]["content"][0]["text"] == PROMPT
    tool_result = loop.messages[2]["content"][0]["toolResult"]["content"][0]["text"]
    assert tool_result.endswith(TRUNCATION_MARKER)
    assert [record.usage["inputTokens"] for record in server.records] == [2_096, 2_262]
    assert [record.usage["outputTokens"] for record in server.records] == [28, 130]
    now = datetime.now(UTC)
    event = ModelUsage(
        event_id="e-1",
        event_time=now,
        tenant_id="clinic-a",
        tier=TIER.name,
        user_id="user-1",
        request_id="req-bound",
        model_id=TIER.model_id,
        usage=from_converse(response.usage),
        model_calls=response.model_calls,
    )
    actual = rate_event(event, default_catalog()).amount_usd
    # 4 calls x (48 + 8,000) input tokens and 4 x 4,096 output tokens at $0.15 per million,
    # 12 tool calls at $0.005 per thousand, 1 Memory event at $0.25 per thousand.
    reserved = WorstCase().cost(PROMPT, default_catalog(), TIER, now)
    assert reserved == Decimal("0.0072864") + Decimal("0.00006") + Decimal("0.00025")
    # 4,358 input and 158 output tokens at $0.15 per million.
    assert actual == Decimal("0.0006774")
    assert actual <= reserved


class ToolUseBedrock:
    """Returns, for the first call, `tool_uses` tool uses whose input has `input_words` words."""

    def __init__(self, tool_uses: int, input_words: int = 1) -> None:
        self.tool_uses = tool_uses
        self.input_words = input_words
        self.calls = 0

    def converse(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        usage = {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
        if self.calls > 1:
            message = {"role": "assistant", "content": [{"text": "done"}]}
            return {"output": {"message": message}, "stopReason": "end_turn", "usage": usage}
        content = [
            {
                "toolUse": {
                    "toolUseId": f"tool-{index}",
                    "name": "document-search___search_documents",
                    "input": {"query": long_text(self.input_words, index)},
                }
            }
            for index in range(self.tool_uses)
        ]
        message = {"role": "assistant", "content": content}
        return {"output": {"message": message}, "stopReason": "tool_use", "usage": usage}


def test_tool_calls_per_turn_capped() -> None:
    request = agent_request()
    bedrock, gateway = ToolUseBedrock(tool_uses=6), LargeResultGateway()
    loop = ConverseLoop(request, tools_for(request, TIER.tools), bedrock, gateway, 4)

    response = loop.run()

    results = [block["toolResult"] for block in loop.messages[2]["content"]]
    assert response.error is None
    assert gateway.calls == 4
    assert len(response.tool_calls) == 4
    assert [result["status"] for result in results] == ["success"] * 4 + ["error"] * 2


def test_oversized_tool_use_stops_before_model_call() -> None:
    request = agent_request()
    # The model's own tool use input is far above the bound and cannot be shortened.
    bedrock = ToolUseBedrock(tool_uses=1, input_words=5_000)
    loop = ConverseLoop(request, tools_for(request, TIER.tools), bedrock, LargeResultGateway(), 4)

    response = loop.run()

    assert response.error is not None
    assert response.error.code == "input_limit_exceeded"
    assert bedrock.calls == 1
    assert response.model_calls == 1
