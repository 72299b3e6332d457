"""Conversation sessions. Each belongs to one tenant and one user.

Sessions are read and written with tenant-scoped credentials, so the table's partition key
(the tenant id) is checked by IAM as well as by this code.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

SESSION_LIFETIME = timedelta(days=30)


def runtime_session_id(tenant_id: str, session_id: str) -> str:
    """Return the AgentCore runtime session id for a session: `<tenant id>.<session id>`.

    Tenant ids never contain "." and session ids are UUIDs, so the tenant can be read back
    from AgentCore's own usage records. The result is 40 to 77 characters, within
    InvokeAgentRuntime's 33 to 256.
    """
    return f"{tenant_id}.{session_id}"


def tenant_of_runtime_session(runtime_session: str) -> str:
    tenant_id, separator, session_id = runtime_session.partition(".")
    if not separator or not session_id:
        raise ValueError("runtime session id has no tenant part")
    return tenant_id


class Session(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str
    session_id: str
    user_id: str
    runtime_session_id: str
    created_at: str


class SessionStore:
    def __init__(self, table: Any) -> None:
        """`table` is a boto3 Table resource built from tenant-scoped credentials."""
        self._table = table

    def create(self, tenant_id: str, user_id: str) -> Session:
        session_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        session = Session(
            tenant_id=tenant_id,
            session_id=session_id,
            user_id=user_id,
            runtime_session_id=runtime_session_id(tenant_id, session_id),
            created_at=now.isoformat(),
        )
        self._table.put_item(
            Item={**session.model_dump(), "expires_at": int((now + SESSION_LIFETIME).timestamp())},
            ConditionExpression="attribute_not_exists(session_id)",
        )
        return session

    def get(self, tenant_id: str, session_id: str) -> Session | None:
        item = self._table.get_item(
            Key={"tenant_id": tenant_id, "session_id": session_id}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        # DynamoDB deletes expired items up to days late, so expiry is checked here too.
        expires_at = item.pop("expires_at", None)
        if expires_at is not None and int(expires_at) <= datetime.now(UTC).timestamp():
            return None
        return Session.model_validate(item)
