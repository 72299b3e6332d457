"""Local stand-in for the AgentCore Memory data plane, served by the AgentCore stand-in.

It serves three operations of the botocore service model bedrock-agentcore 2024-02-28, with
their request and response shapes:

- CreateEvent, `POST /memories/{memoryId}/events` (status 201);
- ListEvents, `POST /memories/{memoryId}/actor/{actorId}/sessions/{sessionId}`;
- RetrieveMemoryRecords, `POST /memories/{memoryId}/retrieve`.

Events are kept per (memory, actor, session), so a ListEvents call only ever returns the
events of the actor and session in its path. The real service extracts long-term records
with a memory strategy and a model. This stand-in instead keeps each user message as one
record in the namespace `/actor/{actorId}/`, and RetrieveMemoryRecords returns the records of
exactly the requested namespace that share a word with the search query.

NOTE: the stand-in does not check the caller's credentials. IAM's actorId and namespace
conditions on the tenant-access role apply only in AWS.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentpool_dev.standins.http import HttpRequest, HttpResponse, aws_error, json_response

# Patterns of the botocore service model bedrock-agentcore 2024-02-28.
MEMORY_ID_PATTERN = re.compile(
    r"^(arn:(aws|aws-cn|aws-us-gov):bedrock-agentcore:[a-z0-9-]+:[0-9]{12}:memory/)?"
    r"[a-zA-Z][a-zA-Z0-9-_]{0,99}-[a-zA-Z0-9]{10}$"
)
ACTOR_ID_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-_/]*(?::[a-zA-Z0-9-_/]+)*[a-zA-Z0-9-_/]*$")
SESSION_ID_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-_]*$")
NAMESPACE_PATTERN = re.compile(
    r"^[a-zA-Z0-9/*][a-zA-Z0-9-_/*]*(?::[a-zA-Z0-9-_/*]+)*[a-zA-Z0-9-_/*]*$"
)
ROLES = ("ASSISTANT", "USER", "TOOL", "OTHER")
MAX_PAYLOAD_ITEMS = 100
MAX_RESULTS = 100
DEFAULT_MAX_RESULTS = 20
STRATEGY_ID = "standin-user-messages"
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class _Record:
    memory_id: str
    record_id: str
    namespace: str
    text: str
    created_at: datetime


@dataclass
class MemoryStore:
    """Events and records of every memory resource, as the stand-in keeps them."""

    events: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    records: list[_Record] = field(default_factory=list)


def _invalid(message: str, field_name: str) -> HttpResponse:
    return aws_error(
        400,
        "ValidationException",
        message,
        reason="FieldValidationFailed",
        fieldList=[{"name": field_name, "message": message}],
    )


def _check(pattern: re.Pattern[str], value: Any, name: str, max_length: int) -> str | None:
    """Return an error message when `value` breaks the model's pattern or length, else None."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        return f"{name} must be a string of 1 to {max_length} characters"
    if not pattern.fullmatch(value):
        return f"{name} {value!r} does not match the pattern {pattern.pattern}"
    return None


def _check_actor_and_session(actor: Any, session: Any) -> HttpResponse | None:
    """Return the ValidationException of an invalid actor or session id, else None."""
    for pattern, value, name, length in (
        (ACTOR_ID_PATTERN, actor, "actorId", 255),
        (SESSION_ID_PATTERN, session, "sessionId", 100),
    ):
        error = _check(pattern, value, name, length)
        if error:
            return _invalid(error, name)
    return None


def _timestamp(value: datetime) -> float:
    # botocore's rest-json protocol sends and reads timestamps as epoch seconds.
    return value.timestamp()


class MemoryStandIn:
    """Handle the Memory operations for the AgentCore stand-in's HTTP server."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self._lock = threading.Lock()

    def handles(self, request: HttpRequest) -> bool:
        return request.path.startswith("/memories/")

    def handle(self, request: HttpRequest) -> HttpResponse:
        parts = [urllib.parse.unquote(part) for part in request.path.split("/")]
        if request.method != "POST" or len(parts) < 4:
            return aws_error(404, "UnknownOperationException", f"{request.method} {request.path}")
        memory_id = parts[2]
        error = _check(MEMORY_ID_PATTERN, memory_id, "memoryId", 2048)
        if error:
            return _invalid(error, "memoryId")
        try:
            body = request.json() or {}
        except ValueError:
            return _invalid("The request body is not valid JSON.", "body")
        if not isinstance(body, dict):
            return _invalid("The request body must be a JSON object.", "body")
        if len(parts) == 4 and parts[3] == "events":
            return self._create_event(memory_id, body)
        if len(parts) == 4 and parts[3] == "retrieve":
            return self._retrieve(memory_id, body)
        if len(parts) == 7 and parts[3] == "actor" and parts[5] == "sessions":
            return self._list_events(memory_id, parts[4], parts[6], body)
        return aws_error(404, "UnknownOperationException", f"{request.method} {request.path}")

    def _create_event(self, memory_id: str, body: dict[str, Any]) -> HttpResponse:
        actor, session = body.get("actorId"), body.get("sessionId")
        invalid = _check_actor_and_session(actor, session)
        if invalid is not None:
            return invalid
        payload = body.get("payload")
        if not isinstance(payload, list) or len(payload) > MAX_PAYLOAD_ITEMS:
            return _invalid(f"payload must be a list of at most {MAX_PAYLOAD_ITEMS}", "payload")
        for item in payload:
            conversational = item.get("conversational") if isinstance(item, dict) else None
            if conversational is None:
                continue
            text = (conversational.get("content") or {}).get("text")
            if conversational.get("role") not in ROLES or not isinstance(text, str) or not text:
                return _invalid("conversational needs a role and non-empty text", "payload")
        timestamp = body.get("eventTimestamp")
        if not isinstance(timestamp, int | float):
            return _invalid("eventTimestamp is required", "eventTimestamp")
        created = datetime.fromtimestamp(timestamp, UTC)
        event = {
            "memoryId": memory_id,
            "actorId": actor,
            "sessionId": session,
            "eventId": f"{int(timestamp * 1000)}#{uuid.uuid4().hex}",
            "eventTimestamp": timestamp,
            "payload": payload,
        }
        with self._lock:
            self.store.events.setdefault((memory_id, str(actor), str(session)), []).append(event)
            for item in payload:
                conversational = item.get("conversational") or {}
                if conversational.get("role") == "USER":
                    self.store.records.append(
                        _Record(
                            memory_id=memory_id,
                            # The model's pattern needs 40 to 50 characters.
                            record_id=f"mem-{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}",
                            namespace=f"/actor/{actor}/",
                            text=conversational["content"]["text"][:16000],
                            created_at=created,
                        )
                    )
        return json_response(201, {"event": event})

    def _list_events(
        self, memory_id: str, actor: str, session: str, body: dict[str, Any]
    ) -> HttpResponse:
        invalid = _check_actor_and_session(actor, session)
        if invalid is not None:
            return invalid
        max_results = body.get("maxResults", DEFAULT_MAX_RESULTS)
        if not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
            return _invalid(f"maxResults must be 1 to {MAX_RESULTS}", "maxResults")
        start = int(body.get("nextToken") or 0)
        with self._lock:
            events = list(self.store.events.get((memory_id, actor, session), []))
        page = events[start : start + max_results]
        if not body.get("includePayloads", True):
            page = [{**event, "payload": []} for event in page]
        result: dict[str, Any] = {"events": page}
        if start + max_results < len(events):
            result["nextToken"] = str(start + max_results)
        return json_response(200, result)

    def _retrieve(self, memory_id: str, body: dict[str, Any]) -> HttpResponse:
        namespace = body.get("namespace")
        error = _check(NAMESPACE_PATTERN, namespace, "namespace", 1024)
        if error:
            return _invalid(error, "namespace")
        criteria = body.get("searchCriteria")
        query = criteria.get("searchQuery") if isinstance(criteria, dict) else None
        if not isinstance(query, str) or not query:
            return _invalid("searchCriteria.searchQuery is required", "searchCriteria")
        top_k = criteria.get("topK", 10) if isinstance(criteria, dict) else 10
        words = set(_WORD.findall(query.lower()))
        with self._lock:
            matches = [
                record
                for record in self.store.records
                if record.memory_id == memory_id
                and record.namespace == namespace
                and words & set(_WORD.findall(record.text.lower()))
            ]
        summaries = [
            {
                "memoryRecordId": record.record_id,
                "content": {"text": record.text},
                "memoryStrategyId": STRATEGY_ID,
                "namespaces": [record.namespace],
                "createdAt": _timestamp(record.created_at),
            }
            for record in matches[:top_k]
        ]
        return json_response(200, {"memoryRecordSummaries": summaries})
