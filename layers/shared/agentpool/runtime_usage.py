"""AgentCore Runtime usage logs: turn per-session usage records into Runtime Usage events.

AgentCore Runtime can deliver vended usage logs (log type USAGE_LOGS) with one record per
runtime session and second. The fields are listed in "AgentCore generated runtime
observability data" (docs.aws.amazon.com/bedrock-agentcore/latest/devguide/
observability-runtime-metrics.html): event_timestamp, resource_arn, service.name,
cloud.provider, cloud.region, account.id, region, resource.id, session.id, agent.name,
elapsed_time_seconds, agent.runtime.vcpu.hours.used and agent.runtime.memory.gb_hours.used.
NOTE: the nesting parsed here (`resource`, `attributes` and `metrics` objects, event_timestamp
in epoch milliseconds) follows the sample record in Sumo Logic's documentation of its Amazon
Bedrock AgentCore app, because the AWS page lists the fields but shows no record.

Each record becomes one Runtime Usage event whose id is derived from the runtime ARN, the
runtime session id and the record's timestamp, so a record delivered twice is billed once.
The tenant is the prefix of the runtime session id (`agentpool.sessions`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from agentpool.events import RuntimeUsage, stable_event_id
from agentpool.registry import TenantRegistry
from agentpool.sessions import tenant_of_runtime_session

SECONDS_PER_HOUR = Decimal(3600)
# Runtime Usage quantities have at most 6 decimals (agentpool.events.Quantity). Usage logs
# report hours with more digits, so seconds are rounded half-even to a millionth.
QUANTITY_QUANTUM = Decimal("1e-6")
# Namespace of the request ids of usage events; fixed, because it is part of every event.
USAGE_REQUEST_NAMESPACE = uuid.UUID("2f6b1c9e-0d4a-4e57-8b3c-6a1f9e2d7c45")
VCPU_METRIC = "agent.runtime.vcpu.hours.used"
MEMORY_METRIC = "agent.runtime.memory.gb_hours.used"
# The user of a runtime session whose sessions-table item has expired (after 30 days).
UNKNOWN_USER = "unknown"


class InvalidUsageRecordError(ValueError):
    """A usage log record is not JSON, or lacks a field that billing needs."""


@dataclass(frozen=True)
class UsageRecord:
    """One usage log record: a runtime session's vCPU and memory use over about a second."""

    resource_arn: str
    runtime_session_id: str
    event_time: datetime
    vcpu_hours: Decimal
    memory_gb_hours: Decimal


@dataclass(frozen=True)
class SessionOwner:
    """The tier of a runtime session's tenant and the user who owns the session."""

    tier: str
    user_id: str


def session_owner_lookup(
    registry: TenantRegistry, sessions_table: Any
) -> Callable[[str, str], SessionOwner | None]:
    """Return `owner_of(tenant_id, runtime_session_id)` that reads the registry and sessions.

    `sessions_table` is a boto3 DynamoDB Table resource for the sessions table. The owner is
    None when the tenant is not registered.
    """

    def owner_of(tenant_id: str, runtime_session_id: str) -> SessionOwner | None:
        tenant = registry.get(tenant_id)
        if tenant is None:
            return None
        session_id = runtime_session_id.partition(".")[2]
        item = sessions_table.get_item(
            Key={"tenant_id": tenant_id, "session_id": session_id}, ConsistentRead=True
        ).get("Item")
        user_id = str(item["user_id"]) if item else UNKNOWN_USER
        return SessionOwner(tier=tenant.tier, user_id=user_id)

    return owner_of


def parse_usage_record(text: str) -> UsageRecord:
    """Parse one USAGE_LOGS record; raise InvalidUsageRecordError when it cannot be billed.

    Numbers are read as `Decimal`, so the hours keep the digits the log wrote.
    """
    try:
        record = json.loads(text, parse_float=Decimal)
    except ValueError as error:
        raise InvalidUsageRecordError(f"usage record is not valid JSON: {error}") from error
    if not isinstance(record, dict):
        raise InvalidUsageRecordError("usage record is not a JSON object")
    attributes = record.get("attributes") or {}
    metrics = record.get("metrics") or {}
    try:
        return UsageRecord(
            resource_arn=str(record["resource_arn"]),
            runtime_session_id=str(attributes["session.id"]),
            event_time=datetime.fromtimestamp(int(record["event_timestamp"]) / 1000, tz=UTC),
            vcpu_hours=Decimal(metrics.get(VCPU_METRIC, 0)),
            memory_gb_hours=Decimal(metrics.get(MEMORY_METRIC, 0)),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        raise InvalidUsageRecordError(f"usage record lacks a valid field: {error}") from error


def _seconds(hours: Decimal) -> Decimal:
    return (hours * SECONDS_PER_HOUR).quantize(QUANTITY_QUANTUM, rounding=ROUND_HALF_EVEN)


def usage_event(record: UsageRecord, owner: SessionOwner) -> RuntimeUsage:
    """Build the Runtime Usage event of `record`, billed to the tenant of its session."""
    tenant_id = tenant_of_runtime_session(record.runtime_session_id)
    timestamp_ms = int(record.event_time.timestamp() * 1000)
    key = f"{record.resource_arn}|{record.runtime_session_id}|{timestamp_ms}"
    return RuntimeUsage(
        event_id=stable_event_id(key, "runtime-usage"),
        event_time=record.event_time,
        tenant_id=tenant_id,
        tier=owner.tier,
        user_id=owner.user_id,
        # Usage records belong to a runtime session, not to one request.
        request_id=str(uuid.uuid5(USAGE_REQUEST_NAMESPACE, record.runtime_session_id)),
        runtime_session_id=record.runtime_session_id,
        vcpu_seconds=_seconds(record.vcpu_hours),
        memory_gb_seconds=_seconds(record.memory_gb_hours),
    )


@dataclass
class UsageBatch:
    """The events of a batch of usage log lines, and the lines that could not be billed."""

    events: list[RuntimeUsage] = field(default_factory=list)
    # (1-based line number, reason) of each line that produced no event.
    rejected: list[tuple[int, str]] = field(default_factory=list)


def usage_events(
    lines: Iterable[str], owner_of: Callable[[str, str], SessionOwner | None]
) -> UsageBatch:
    """Turn usage log lines into Runtime Usage events.

    `owner_of(tenant_id, runtime_session_id)` returns the session's owner, or None when the
    tenant is not registered. Records with zero usage produce no event.
    """
    batch = UsageBatch()
    owners: dict[str, SessionOwner | None] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = parse_usage_record(line)
            tenant_id = tenant_of_runtime_session(record.runtime_session_id)
        except ValueError as error:
            batch.rejected.append((number, str(error)))
            continue
        if record.runtime_session_id not in owners:
            owners[record.runtime_session_id] = owner_of(tenant_id, record.runtime_session_id)
        owner = owners[record.runtime_session_id]
        if owner is None:
            batch.rejected.append((number, f"tenant {tenant_id} is not registered"))
            continue
        event = usage_event(record, owner)
        if event.vcpu_seconds or event.memory_gb_seconds:
            batch.events.append(event)
    return batch
