"""Bill the USAGE_LOGS records that a CloudWatch Logs subscription delivers.

The runtime's usage log group has a subscription filter that invokes RuntimeUsageFunction
with batches of log events, one usage record per event (agentpool.log_subscription). Each
record that can be billed becomes a Runtime Usage event (agentpool.runtime_usage), whose id is
stable, so a batch delivered twice is billed once. A record that cannot be billed (not JSON, a
missing field, an unregistered tenant) does not hold up the others. It is set aside with its
reason and sent to the dead-letter queue inside a subscription event of its own, which an
operator can replay once the cause is fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentpool.events import RuntimeUsage
from agentpool.log_subscription import (
    CONTROL_MESSAGE,
    LogEvent,
    SubscriptionBatch,
    encode_subscription_event,
)
from agentpool.runtime_usage import SessionOwner, usage_events


@dataclass(frozen=True)
class RejectedLogEvent:
    """A log event that produced no Runtime Usage event, with the reason (ids only)."""

    log_event: LogEvent
    reason: str


@dataclass
class DeliveredUsage:
    """The Runtime Usage events of one subscription batch and the log events set aside."""

    message_type: str
    records: int = 0
    events: list[RuntimeUsage] = field(default_factory=list)
    rejected: list[RejectedLogEvent] = field(default_factory=list)


def usage_from_subscription(
    batch: SubscriptionBatch, owner_of: Callable[[str, str], SessionOwner | None]
) -> DeliveredUsage:
    """Turn the log events of `batch` into Runtime Usage events; a control message has none."""
    delivered = DeliveredUsage(message_type=batch.message_type)
    if batch.message_type == CONTROL_MESSAGE:
        return delivered
    delivered.records = len(batch.log_events)
    usage = usage_events([item.message for item in batch.log_events], owner_of)
    delivered.events = usage.events
    # usage_events numbers the lines from 1; blank messages produce neither event nor reason.
    delivered.rejected = [
        RejectedLogEvent(batch.log_events[number - 1], reason) for number, reason in usage.rejected
    ]
    return delivered


def dead_letter_body(batch: SubscriptionBatch, rejected: list[RejectedLogEvent]) -> str:
    """Return an SQS message body that is a subscription event of the rejected log events.

    The body is a valid input of RuntimeUsageFunction, as the bodies that Lambda writes to the
    function's dead-letter queue after failed invocations are, so both replay the same way.
    The `rejected` key lists each log event id with its reason for the operator.
    """
    event: dict[str, Any] = encode_subscription_event(batch, [item.log_event for item in rejected])
    event["rejected"] = [{"id": item.log_event.id, "reason": item.reason} for item in rejected]
    return json.dumps(event)
