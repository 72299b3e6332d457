"""`agentpool runtime-usage ingest` and `replay`: publish Runtime Usage events by hand.

The input is USAGE_LOGS records, one JSON object per line, as AgentCore Runtime delivers
them to CloudWatch Logs, S3 or Firehose, or as the local AgentCore stand-in writes them.
The tier comes from the tenant registry and the user from the sessions table, both read
with the operator's credentials.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agentpool.log_subscription import InvalidSubscriptionEventError, decode_subscription_event
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


@dataclass
class ReplayResult:
    """Counts of one replay of the runtime usage dead-letter queue."""

    messages_replayed: int = 0
    events_published: int = 0
    # Messages left on the queue: undecodable, or with records that still cannot be billed.
    messages_kept: int = 0
    records_rejected: int = 0


def replay_dead_letters(target: Target) -> ReplayResult:
    """Bill the records of every message on RuntimeUsageDeadLetterQueue, as the function would.

    A message whose records are all billed now is deleted. The others stay on the queue and
    become visible again after the queue's visibility timeout.
    """
    sqs = target.client("sqs")
    queue_url = target.outputs["RuntimeUsageDeadLetterQueueUrl"]
    result = ReplayResult()
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        if not messages:
            return result
        for message in messages:
            try:
                batch = decode_subscription_event(json.loads(message["Body"]))
            except (ValueError, InvalidSubscriptionEventError):
                result.messages_kept += 1
                continue
            usage = ingest_usage_logs(target, [item.message for item in batch.log_events])
            result.events_published += len(usage.events)
            if usage.rejected:
                result.messages_kept += 1
                result.records_rejected += len(usage.rejected)
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            result.messages_replayed += 1
