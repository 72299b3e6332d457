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
from agentpool.runtime_usage import SessionOwner, UsageBatch, session_owner_lookup, usage_events
from agentpool_dev.operations import Target


def session_owner_resolver(target: Target) -> Callable[[str, str], SessionOwner | None]:
    """Return `owner_of(tenant_id, runtime_session_id)` backed by the stack's tables."""
    return session_owner_lookup(
        TenantRegistry(target.table("TenantsTableName")), target.table("SessionsTableName")
    )


def ingest_usage_logs(target: Target, lines: Iterable[str]) -> UsageBatch:
    """Publish one Runtime Usage event per billable usage record in `lines`.

    Event ids are stable, so ingesting the same records again bills nothing twice.
    """
    # In AWS and on the local stack the RuntimeUsageFunction bills the same records as
    # they arrive; this path is for backfills and dead-letter replays.
    batch = usage_events(lines, session_owner_resolver(target))
    if batch.events:
        publisher = MeteringPublisher(target.outputs["EventBusName"], target.client("events"))
        publisher.publish(batch.events)
    return batch
