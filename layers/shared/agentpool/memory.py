"""Conversation history per session in AgentCore Memory, read and written as the tenant's user.

Actor ids and namespaces encode tenant and user so that no two (tenant, user) pairs share one:

- actor id `<tenant id>:<user id>`. Tenant ids never contain ":" (identity.TENANT_ID_PATTERN)
  and user ids are checked to contain none, so the first ":" always ends the tenant id:
  tenant `a-b` with user `c` is `a-b:c`, and tenant `a` with user `b-c` is `a:b-c`. The
  AgentCore actorId pattern allows ":" between segments.
- namespace `/actor/<actor id>/`, as a memory strategy with the namespace template
  `/actor/{actorId}/` would write it. The closing "/" keeps one actor's namespace from being
  a prefix of another's (`/actor/a:b/` is no prefix of `/actor/a:bc/`).

The client must carry tenant-scoped credentials from the Token Vending Machine: the
tenant-access role allows memory events only for the actor id built from the credentials'
TenantId and UserId session tags, so a wrong actor id fails at IAM too.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from agentpool.identity import is_valid_tenant_id

logger = logging.getLogger(__name__)

# Cognito subs are UUIDs. Other user ids must still leave ":" and "/" free for the encoding.
USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# Turns of history loaded into one invocation; older turns are not sent to the model.
MAX_HISTORY_TURNS = 10


class InvalidActorError(ValueError):
    """A tenant or user id that cannot be encoded into an actor id without ambiguity."""


def actor_id(tenant_id: str, user_id: str) -> str:
    """Return the AgentCore Memory actor id of a tenant's user."""
    if not is_valid_tenant_id(tenant_id):
        raise InvalidActorError(f"tenant id {tenant_id!r} is not a valid tenant id")
    if not USER_ID_PATTERN.fullmatch(user_id):
        raise InvalidActorError(
            "user id must be 1 to 128 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return f"{tenant_id}:{user_id}"


def namespace(tenant_id: str, user_id: str) -> str:
    """Return the long-term memory namespace of a tenant's user."""
    return f"/actor/{actor_id(tenant_id, user_id)}/"


class ConversationMemory:
    """Short-term conversation events of one memory resource, through a bedrock-agentcore client.

    `client` is a boto3 `bedrock-agentcore` client made from tenant-scoped credentials.
    """

    def __init__(self, client: Any, memory_id: str) -> None:
        self._client = client
        self._memory_id = memory_id

    def history(self, tenant_id: str, user_id: str, session_id: str) -> list[dict[str, Any]]:
        """Return the session's last turns as Converse messages, oldest first."""
        events: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "memoryId": self._memory_id,
            "actorId": actor_id(tenant_id, user_id),
            "sessionId": session_id,
            "includePayloads": True,
            "maxResults": 100,
        }
        while True:
            page = self._client.list_events(**request)
            events.extend(page.get("events", []))
            if not page.get("nextToken"):
                break
            request["nextToken"] = page["nextToken"]
        events.sort(key=lambda event: (event["eventTimestamp"], event["eventId"]))
        messages: list[dict[str, Any]] = []
        for event in events[-MAX_HISTORY_TURNS:]:
            for payload in event.get("payload", []):
                conversational = payload.get("conversational")
                if conversational is None:
                    continue
                role = "user" if conversational["role"] == "USER" else "assistant"
                messages.append(
                    {"role": role, "content": [{"text": conversational["content"]["text"]}]}
                )
        return messages

    def append_turn(
        self, tenant_id: str, user_id: str, session_id: str, prompt: str, answer: str
    ) -> None:
        """Store one prompt and its answer as one event of the session."""
        self._client.create_event(
            memoryId=self._memory_id,
            actorId=actor_id(tenant_id, user_id),
            sessionId=session_id,
            eventTimestamp=datetime.now(UTC),
            payload=[
                {"conversational": {"content": {"text": prompt}, "role": "USER"}},
                {"conversational": {"content": {"text": answer}, "role": "ASSISTANT"}},
            ],
        )
