"""AgentCore data plane stand-in, driven by a real boto3 bedrock-agentcore client over HTTP."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from agentpool_dev.standins.agentcore import AgentCoreStandIn
from agentpool_dev.standins.http import HttpRequest, HttpResponse, StandInServer, json_response

RUNTIME_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agentpool_agent-AbCdEf1234"
SESSION_ID = "tenant-a-user-1-session-000000000000001"


class FakeAgent(StandInServer):
    """An agent app that echoes the payload and the session header it was sent."""

    name = "fake-agent"

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.calls = 0
        self._lock = threading.Lock()

    def handle(self, request: HttpRequest) -> HttpResponse:
        with self._lock:
            self.calls += 1
        return json_response(
            self.status,
            {
                "payload": request.json(),
                "session_id": request.header("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"),
                "path": request.path,
            },
        )


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    server = FakeAgent()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stand_in(agent: FakeAgent) -> Iterator[AgentCoreStandIn]:
    server = AgentCoreStandIn(agent.url)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def make_client(url: str, attempts: int | None = 1) -> Any:
    config = Config(retries={"total_max_attempts": attempts}) if attempts else None
    return boto3.client(
        "bedrock-agentcore", region_name="us-east-1", endpoint_url=url, config=config
    )


def invoke(client: Any, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.invoke_agent_runtime(
        agentRuntimeArn=RUNTIME_ARN,
        qualifier="DEFAULT",
        runtimeSessionId=SESSION_ID,
        runtimeUserId="user-1",
        payload=json.dumps(payload),
    )
    return {"headers": response, "body": json.loads(response["response"].read())}


def test_invoke_returns_agent_body(stand_in: AgentCoreStandIn) -> None:
    result = invoke(make_client(stand_in.url), {"prompt": "hi"})
    assert result["body"]["payload"] == {"prompt": "hi"}
    assert result["body"]["path"] == "/invocations"


def test_invoke_forwards_session_id(stand_in: AgentCoreStandIn) -> None:
    result = invoke(make_client(stand_in.url), {"prompt": "hi"})
    assert result["body"]["session_id"] == SESSION_ID
    assert result["headers"]["runtimeSessionId"] == SESSION_ID
    assert result["headers"]["contentType"] == "application/json"
    assert result["headers"]["statusCode"] == 200


def test_invoke_records_session(stand_in: AgentCoreStandIn) -> None:
    client = make_client(stand_in.url)
    invoke(client, {"prompt": "one"})
    invoke(client, {"prompt": "two"})
    assert stand_in.invocation_count(SESSION_ID) == 2
    assert stand_in.session_seconds(SESSION_ID) > 0
    record = stand_in.records[0]
    assert record.agent_runtime_arn == RUNTIME_ARN
    assert record.qualifier == "DEFAULT"
    assert record.runtime_user_id == "user-1"


def post_raw(url: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, str]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    document = json.loads(response.read())
    error_type = response.getheader("x-amzn-ErrorType") or ""
    connection.close()
    return response.status, document, error_type


def invocation_path(arn: str = RUNTIME_ARN) -> str:
    return f"/runtimes/{urllib.parse.quote(arn, safe='')}/invocations"


def test_invoke_rejects_short_session_id(stand_in: AgentCoreStandIn, agent: FakeAgent) -> None:
    status, document, error_type = post_raw(
        stand_in.url,
        invocation_path(),
        {"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "x" * 32},
        b"{}",
    )
    assert status == 400
    assert error_type == "ValidationException"
    assert document["reason"] == "FieldValidationFailed"
    assert agent.calls == 0


def test_invoke_rejects_missing_session_id(stand_in: AgentCoreStandIn) -> None:
    status, _, error_type = post_raw(stand_in.url, invocation_path(), {}, b"{}")
    assert status == 400
    assert error_type == "ValidationException"


def test_invoke_rejects_invalid_arn(stand_in: AgentCoreStandIn) -> None:
    status, document, _ = post_raw(
        stand_in.url,
        invocation_path("not-an-arn"),
        {"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": SESSION_ID},
        b"{}",
    )
    assert status == 400
    assert document["fieldList"][0]["name"] == "agentRuntimeArn"


def test_agent_error_becomes_runtime_client_error(
    stand_in: AgentCoreStandIn, agent: FakeAgent
) -> None:
    agent.status = 500
    with pytest.raises(ClientError) as caught:
        invoke(make_client(stand_in.url), {"prompt": "hi"})
    assert caught.value.response["Error"]["Code"] == "RuntimeClientError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424


def test_unreachable_agent_is_runtime_client_error() -> None:
    server = AgentCoreStandIn("http://127.0.0.1:9", agent_timeout_seconds=2)
    server.start()
    try:
        with pytest.raises(ClientError) as caught:
            invoke(make_client(server.url), {"prompt": "hi"})
    finally:
        server.stop()
    assert caught.value.response["Error"]["Code"] == "RuntimeClientError"


def test_fault_before_agent_skips_agent(stand_in: AgentCoreStandIn, agent: FakeAgent) -> None:
    stand_in.fail_next(429)
    with pytest.raises(ClientError) as caught:
        invoke(make_client(stand_in.url), {"prompt": "hi"})
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert agent.calls == 0


def test_fault_after_agent_runs_agent_once(stand_in: AgentCoreStandIn, agent: FakeAgent) -> None:
    stand_in.fail_next(500, after_agent_ran=True)
    with pytest.raises(ClientError) as caught:
        invoke(make_client(stand_in.url, attempts=1), {"prompt": "hi"})
    assert caught.value.response["Error"]["Code"] == "InternalServerException"
    assert agent.calls == 1
    assert stand_in.invocation_count(SESSION_ID) == 1


def test_default_retries_run_agent_twice(stand_in: AgentCoreStandIn, agent: FakeAgent) -> None:
    # botocore's default retry policy retries a 500, so the agent runs again.
    stand_in.fail_next(500, after_agent_ran=True)
    invoke(make_client(stand_in.url, attempts=None), {"prompt": "hi"})
    assert agent.calls == 2


def test_fault_endpoint_sets_fault(stand_in: AgentCoreStandIn, agent: FakeAgent) -> None:
    status, _, _ = post_raw(
        stand_in.url,
        "/_standin/faults",
        {"Content-Type": "application/json"},
        json.dumps({"status": 500, "count": 1, "after_agent_ran": True}).encode(),
    )
    assert status == 200
    with pytest.raises(ClientError):
        invoke(make_client(stand_in.url), {"prompt": "hi"})
    assert agent.calls == 1


def test_fail_next_rejects_unknown_status(stand_in: AgentCoreStandIn) -> None:
    with pytest.raises(ValueError, match="unsupported fault status"):
        stand_in.fail_next(418)


def test_web_search_returns_stand_in_results(stand_in: AgentCoreStandIn) -> None:
    client = make_client(stand_in.url)
    response = client.invoke_web_search(
        webSearchId="web-search.v1", searchQuery="flu season", maxResults=2
    )
    results = response["results"]
    assert len(results) == 2
    assert "stand-in" in results[0]["text"]
    assert "flu season" in results[0]["text"]
    assert results[0]["url"].startswith("https://standin.invalid/")
    assert stand_in.web_search_queries == ["flu season"]


def test_web_search_rejects_long_query(stand_in: AgentCoreStandIn) -> None:
    status, document, error_type = post_raw(
        stand_in.url,
        "/web-search/web-search.v1/invoke",
        {"Content-Type": "application/json"},
        json.dumps({"searchQuery": "q" * 201}).encode(),
    )
    assert status == 400
    assert error_type == "ValidationException"
    assert document["fieldList"][0]["name"] == "searchQuery"
