"""`agentpool runtime-usage ingest`: publish Runtime Usage events from AgentCore usage logs.

The input is USAGE_LOGS records, one JSON object per line, as AgentCore Runtime delivers
them to CloudWatch Logs, S3 or Firehose, or as the local AgentCore stand-in writes them.
The tier comes from the tenant registry and the user from the sessions table, both read
with the operator's credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agentpool.publisher import MeteringPublisher
from agentpool.registry import TenantRegistry
from agentpool.runtime_usage import SessionOwner, UsageBatch, usage_events
from agentpool_dev.operations import Target

# The user of a runtime session whose sessions-table item has expired (after 30 days).
UNKNOWN_USER = "unknown"


def session_owner_resolver(target: Target) -> Callable[[str, str], SessionOwner | None]:
    """Return `owner_of(tenant_id, runtime_session_id)` backed by the stack's tables."""
    registry = TenantRegistry(target.table("TenantsTableName"))
    sessions = target.table("SessionsTableName")

    def owner_of(tenant_id: str, runtime_session_id: str) -> SessionOwner | None:
        tenant = registry.get(tenant_id)
        if tenant is None:
            return None
        session_id = runtime_session_id.partition(".")[2]
        item = sessions.get_item(
            Key={"tenant_id": tenant_id, "session_id": session_id}, ConsistentRead=True
        ).get("Item")
        user_id = str(item["user_id"]) if item else UNKNOWN_USER
        return SessionOwner(tier=tenant.tier, user_id=user_id)

    return owner_of


def ingest_usage_logs(target: Target, lines: Iterable[str]) -> UsageBatch:
    """Publish one Runtime Usage event per billable usage record in `lines`.

    Event ids are stable, so ingesting the same records again bills nothing twice.
    """
    # NOTE: in AWS nothing calls this yet. The delivery path would be a CloudWatch Logs
    # subscription filter on the runtime's USAGE_LOGS log group that invokes a function
    # running this code, and it is not in template.yaml.
    batch = usage_events(lines, session_owner_resolver(target))
    if batch.events:
        publisher = MeteringPublisher(target.outputs["EventBusName"], target.client("events"))
        publisher.publish(batch.events)
    return batch
