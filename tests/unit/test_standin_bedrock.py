"""Bedrock Converse stand-in, driven by a real boto3 bedrock-runtime client over HTTP."""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from agentpool_dev.standins.bedrock import (
    BedrockStandIn,
    count_tokens,
    output_text,
    request_text,
)

BASIC_MODEL = "mistral.ministral-3-8b-instruct"
PREMIUM_MODEL = "openai.gpt-oss-120b-1:0"

TOOL_CONFIG = {
    "tools": [
        {
            "toolSpec": {
                "name": "document-search___search_documents",
                "description": "Search documents.",
                "inputSchema": {"json": {"type": "object", "properties": {}}},
            }
        },
        {
            "toolSpec": {
                "name": "web-search___search_web",
                "description": "Search the web.",
                "inputSchema": {"json": {"type": "object", "properties": {}}},
            }
        },
    ]
}


@pytest.fixture
def stand_in() -> Iterator[BedrockStandIn]:
    server = BedrockStandIn()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(stand_in: BedrockStandIn, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=stand_in.url,
        config=Config(retries={"total_max_attempts": 1}),
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"text": text}]}


def test_converse_without_tools_ends_turn(client: Any) -> None:
    response = client.converse(modelId=PREMIUM_MODEL, messages=[user("What is a quota?")])
    assert response["stopReason"] == "end_turn"
    text = response["output"]["message"]["content"][0]["text"]
    assert text.startswith(f"[stand-in model {PREMIUM_MODEL}]")


def test_converse_with_tools_asks_for_each_tool(client: Any) -> None:
    response = client.converse(
        modelId=PREMIUM_MODEL, messages=[user("  find the triage policy  ")], toolConfig=TOOL_CONFIG
    )
    assert response["stopReason"] == "tool_use"
    blocks = response["output"]["message"]["content"]
    names = [block["toolUse"]["name"] for block in blocks]
    assert names == ["document-search___search_documents", "web-search___search_web"]
    assert blocks[0]["toolUse"]["input"] == {"query": "find the triage policy"}


def test_converse_tool_use_ids_repeat(client: Any) -> None:
    first = client.converse(modelId=PREMIUM_MODEL, messages=[user("q")], toolConfig=TOOL_CONFIG)
    second = client.converse(modelId=PREMIUM_MODEL, messages=[user("q")], toolConfig=TOOL_CONFIG)
    first_ids = [b["toolUse"]["toolUseId"] for b in first["output"]["message"]["content"]]
    second_ids = [b["toolUse"]["toolUseId"] for b in second["output"]["message"]["content"]]
    assert first_ids == second_ids


def test_converse_query_trimmed_to_200_chars(client: Any) -> None:
    response = client.converse(
        modelId=PREMIUM_MODEL, messages=[user("x" * 500)], toolConfig=TOOL_CONFIG
    )
    query = response["output"]["message"]["content"][0]["toolUse"]["input"]["query"]
    assert len(query) == 200


def conversation_with_results(status: str) -> list[dict[str, Any]]:
    return [
        user("find the triage policy"),
        {
            "role": "assistant",
            "content": [
                {
                    "toolUse": {
                        "toolUseId": "t1",
                        "name": "document-search___search_documents",
                        "input": {"query": "find the triage policy"},
                    }
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "t1",
                        "content": [{"text": "Triage policy v3: see a nurse first."}],
                        "status": status,
                    }
                }
            ],
        },
    ]


def test_converse_quotes_tool_results(client: Any) -> None:
    response = client.converse(
        modelId=BASIC_MODEL,
        messages=conversation_with_results("success"),
        toolConfig=TOOL_CONFIG,
    )
    assert response["stopReason"] == "end_turn"
    text = response["output"]["message"]["content"][0]["text"]
    assert "Triage policy v3: see a nurse first." in text
    assert "retrieved documents" in text


def test_converse_reports_failed_tool_result(client: Any) -> None:
    response = client.converse(
        modelId=BASIC_MODEL, messages=conversation_with_results("error"), toolConfig=TOOL_CONFIG
    )
    text = response["output"]["message"]["content"][0]["text"]
    assert "t1 failed or was denied" in text


def test_converse_usage_counts_request_and_output(client: Any) -> None:
    body = {
        "system": [{"text": "You are a clinic assistant."}],
        "messages": conversation_with_results("success"),
    }
    response = client.converse(modelId=BASIC_MODEL, toolConfig=TOOL_CONFIG, **body)
    usage = response["usage"]
    expected_input = count_tokens(BASIC_MODEL, request_text(body))
    expected_output = count_tokens(
        BASIC_MODEL, output_text(response["output"]["message"]["content"])
    )
    assert usage["inputTokens"] == expected_input
    assert usage["outputTokens"] == expected_output
    assert usage["totalTokens"] == expected_input + expected_output


def test_count_tokens_mistral_uses_tekken() -> None:
    # Tekken splits "hello world" into two tokens; the byte approximation gives 3.
    assert count_tokens(BASIC_MODEL, "hello world") == 2


def test_count_tokens_other_models_approximate() -> None:
    text = "naïve text"
    assert count_tokens(PREMIUM_MODEL, text) == math.ceil(len(text.encode()) / 4)


def test_request_text_serialises_all_parts() -> None:
    body = {
        "system": [{"text": "S"}],
        "messages": [
            user("U"),
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "a", "name": "n", "input": {"b": 1, "a": 2}}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "a",
                            "content": [{"text": "T"}, {"json": {"k": "v"}}],
                        }
                    }
                ],
            },
        ],
    }
    assert request_text(body) == 'S\nU\n{"a":2,"b":1}\nT\n{"k":"v"}'


def test_converse_reports_latency(client: Any) -> None:
    response = client.converse(modelId=PREMIUM_MODEL, messages=[user("q")])
    assert response["metrics"]["latencyMs"] >= 0


def test_converse_unknown_model_rejected(client: Any) -> None:
    with pytest.raises(ClientError) as caught:
        client.converse(modelId="acme.unknown-model-v1:0", messages=[user("q")])
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_converse_counts_calls_per_model(client: Any, stand_in: BedrockStandIn) -> None:
    client.converse(modelId=PREMIUM_MODEL, messages=[user("q")])
    client.converse(modelId=PREMIUM_MODEL, messages=[user("q")])
    client.converse(modelId=BASIC_MODEL, messages=[user("q")])
    assert stand_in.call_count(PREMIUM_MODEL) == 2
    assert stand_in.call_count(BASIC_MODEL) == 1


def test_fail_next_throttles(client: Any, stand_in: BedrockStandIn) -> None:
    stand_in.fail_next(429, count=1)
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=PREMIUM_MODEL, messages=[user("q")])
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_fail_next_applies_count_times(client: Any, stand_in: BedrockStandIn) -> None:
    stand_in.fail_next(424, count=2)
    codes = []
    for _ in range(3):
        try:
            client.converse(modelId=PREMIUM_MODEL, messages=[user("q")])
            codes.append("ok")
        except ClientError as error:
            codes.append(error.response["Error"]["Code"])
    assert codes == ["ModelErrorException", "ModelErrorException", "ok"]


def test_fault_endpoint_sets_fault(client: Any, stand_in: BedrockStandIn) -> None:
    request = urllib.request.Request(  # noqa: S310
        f"{stand_in.url}/_standin/faults",
        data=json.dumps({"status": 503, "count": 1}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        assert response.status == 200
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=PREMIUM_MODEL, messages=[user("q")])
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailableException"


def test_failed_calls_not_counted(client: Any, stand_in: BedrockStandIn) -> None:
    stand_in.fail_next(429)
    with pytest.raises(ClientError):
        client.converse(modelId=PREMIUM_MODEL, messages=[user("q")])
    assert stand_in.call_count(PREMIUM_MODEL) == 0


def test_fail_next_rejects_unknown_status(stand_in: BedrockStandIn) -> None:
    with pytest.raises(ValueError, match="unsupported fault status"):
        stand_in.fail_next(418)
