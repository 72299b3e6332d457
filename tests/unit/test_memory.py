"""Actor id encoding and the Memory stand-in, called through boto3's bedrock-agentcore client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from agentpool.memory import ConversationMemory, InvalidActorError, actor_id, namespace
from agentpool_dev.standins.agentcore import AgentCoreStandIn
from agentpool_dev.standins.memory import ACTOR_ID_PATTERN, NAMESPACE_PATTERN

MEMORY_ID = "agentpool_memory_standin-0123456789"
SESSION = "0b8f8f5e-3c1a-4a52-9f55-1d2b3c4d5e6f"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = AgentCoreStandIn(agent_url="http://127.0.0.1:9")
    server.start()
    yield boto3.session.Session().client(
        "bedrock-agentcore", region_name="us-east-1", endpoint_url=server.url
    )
    server.stop()


def test_actor_ids_of_hyphenated_ids_differ() -> None:
    assert actor_id("abc-de", "f") != actor_id("abc", "de-f")


def test_actor_id_fits_service_pattern() -> None:
    actor = actor_id("st-anne-hospital", "7c1e3a52-9d4b-4f8e-a6c0-2b5d8e1f0a93")

    assert ACTOR_ID_PATTERN.fullmatch(actor)
    assert len(actor) <= 255


def test_namespace_fits_service_pattern() -> None:
    assert NAMESPACE_PATTERN.fullmatch(namespace("abc-de", "f"))


def test_namespace_of_one_user_is_no_prefix_of_another() -> None:
    assert not namespace("abc", "de").startswith(namespace("abc", "d"))


@pytest.mark.parametrize(("tenant_id", "user_id"), [("a:b", "c"), ("ab", "c:d"), ("ab", "c/d")])
def test_actor_id_rejects_separator_characters(tenant_id: str, user_id: str) -> None:
    with pytest.raises(InvalidActorError):
        actor_id(tenant_id, user_id)


def test_history_round_trips_through_standin(client: Any) -> None:
    memory = ConversationMemory(client, MEMORY_ID)
    memory.append_turn("clinic-a", "u-1", SESSION, "When is flu clinic?", "Tuesdays.")

    history = memory.history("clinic-a", "u-1", SESSION)

    assert history == [
        {"role": "user", "content": [{"text": "When is flu clinic?"}]},
        {"role": "assistant", "content": [{"text": "Tuesdays."}]},
    ]


def test_colliding_dash_ids_do_not_share_history(client: Any) -> None:
    memory = ConversationMemory(client, MEMORY_ID)
    memory.append_turn("abc-de", "f", SESSION, "secret of tenant abc-de", "noted")

    assert memory.history("abc", "de-f", SESSION) == []
    assert len(memory.history("abc-de", "f", SESSION)) == 2


def test_other_user_sees_no_history(client: Any) -> None:
    memory = ConversationMemory(client, MEMORY_ID)
    memory.append_turn("clinic-a", "u-1", SESSION, "my question", "my answer")

    assert memory.history("clinic-a", "u-2", SESSION) == []
    assert memory.history("clinic-b", "u-1", SESSION) == []


def test_list_events_pages_with_next_token(client: Any) -> None:
    memory = ConversationMemory(client, MEMORY_ID)
    for index in range(3):
        memory.append_turn("clinic-a", "u-1", SESSION, f"q{index}", f"a{index}")

    first = client.list_events(
        memoryId=MEMORY_ID, actorId="clinic-a:u-1", sessionId=SESSION, maxResults=2
    )
    second = client.list_events(
        memoryId=MEMORY_ID,
        actorId="clinic-a:u-1",
        sessionId=SESSION,
        maxResults=2,
        nextToken=first["nextToken"],
    )

    assert len(first["events"]) == 2
    assert len(second["events"]) == 1
    assert "nextToken" not in second


def test_retrieve_returns_own_namespace_only(client: Any) -> None:
    ConversationMemory(client, MEMORY_ID).append_turn(
        "clinic-a", "u-1", SESSION, "allergy to peanuts", "noted"
    )

    own = client.retrieve_memory_records(
        memoryId=MEMORY_ID,
        namespace=namespace("clinic-a", "u-1"),
        searchCriteria={"searchQuery": "peanuts"},
    )
    other = client.retrieve_memory_records(
        memoryId=MEMORY_ID,
        namespace=namespace("clinic-a", "u-2"),
        searchCriteria={"searchQuery": "peanuts"},
    )

    assert [r["content"]["text"] for r in own["memoryRecordSummaries"]] == ["allergy to peanuts"]
    assert other["memoryRecordSummaries"] == []


def test_invalid_memory_id_rejected(client: Any) -> None:
    with pytest.raises(ClientError) as raised:
        client.list_events(memoryId="not-a-memory", actorId="a:b", sessionId=SESSION)

    assert raised.value.response["Error"]["Code"] == "ValidationException"
