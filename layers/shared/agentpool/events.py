"""Metering events: versioned schemas, stable ids and EventBridge envelopes.

Each event carries tenant, tier, user, request id, event time (UTC) and a stable event id.
The event id is derived from the request id and the event's position in the request, so a
retried publish of the same request step sends the same id and the ledger counts it once.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    TypeAdapter,
    field_validator,
)

from agentpool.identity import TENANT_ID_PATTERN
from agentpool.usage import TokenUsage

EVENT_SOURCE = "agentpool"
# Namespace for uuid5 event ids; fixed forever, because changing it would change every id.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d8a52-2c1e-4b8e-9a57-1f3e0b5c7d21")


def _reject_float(value: Any) -> Any:
    # A float has already lost the exact value, so it may not become a Decimal quantity.
    if isinstance(value, float):
        raise ValueError(f"quantity {value!r} must be a string or an integer, not a float")
    return value


# A usage quantity such as vCPU-seconds. Six decimals and at most 12 integer digits keep
# every amount and total within the 38 significant digits that a DynamoDB number can hold.
# The Field comes before the validator so that the exported JSON Schema shows its limits.
Quantity = Annotated[
    Decimal, Field(ge=0, max_digits=18, decimal_places=6), BeforeValidator(_reject_float)
]


def stable_event_id(request_id: str, kind: str, index: int = 0) -> str:
    """Return the same event id for the same request step, however often it is sent."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{request_id}/{kind}/{index}"))


class MeteringEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    event_id: str = Field(min_length=1, max_length=128)
    event_time: AwareDatetime
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    tier: str = Field(min_length=1, max_length=32)
    user_id: str = Field(min_length=1, max_length=128)
    request_id: str = Field(min_length=1, max_length=128)

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class InvocationCompleted(MeteringEvent):
    detail_type: Literal["Invocation Completed"] = "Invocation Completed"
    status: Literal["succeeded", "failed"]
    latency_ms: NonNegativeInt
    session_id: str = Field(min_length=1, max_length=128)
    runtime_session_id: str = Field(min_length=33, max_length=256)


class ModelUsage(MeteringEvent):
    detail_type: Literal["Model Usage"] = "Model Usage"
    model_id: str = Field(min_length=1, max_length=128)
    usage: TokenUsage
    model_calls: NonNegativeInt = Field(default=1, le=1_000_000)


class ToolInvoked(MeteringEvent):
    detail_type: Literal["Tool Invoked"] = "Tool Invoked"
    tool: str = Field(min_length=1, max_length=64)
    decision: Literal["allowed", "denied"]


class RequestThrottled(MeteringEvent):
    """A request that the tenant's rate limit or daily quota rejected. It is never billed."""

    detail_type: Literal["Request Throttled"] = "Request Throttled"
    limit: Literal["rate", "daily_quota"]
    retry_after_seconds: NonNegativeInt


class RuntimeUsage(MeteringEvent):
    """AgentCore Runtime resource usage of one runtime session over a period."""

    detail_type: Literal["Runtime Usage"] = "Runtime Usage"
    runtime_session_id: str = Field(min_length=33, max_length=256)
    vcpu_seconds: Quantity
    memory_gb_seconds: Quantity


class MemoryUsage(MeteringEvent):
    """AgentCore Memory events (CreateEvent calls that succeeded) of one invocation."""

    detail_type: Literal["Memory Usage"] = "Memory Usage"
    events: int = Field(ge=1, le=1_000_000)


AnyEvent = Annotated[
    InvocationCompleted | ModelUsage | ToolInvoked | RuntimeUsage | MemoryUsage | RequestThrottled,
    Field(discriminator="detail_type"),
]
EVENT_TYPES: tuple[type[MeteringEvent], ...] = (
    InvocationCompleted,
    ModelUsage,
    ToolInvoked,
    RuntimeUsage,
    MemoryUsage,
    RequestThrottled,
)
DETAIL_TYPES: tuple[str, ...] = tuple(
    str(model.model_fields["detail_type"].default) for model in EVENT_TYPES
)
_event_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


class BillingReportGenerated(BaseModel):
    """The monthly report run wrote every report of a month. Not a metering event.

    The metering rule matches metering detail-types only, so this event never reaches the
    aggregator. A rerun for the same month with the same data sends the same `event_id`, so
    consumers can drop the repeat. `total_usd` is the exact sum of the reported tenants.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    detail_type: Literal["Billing Report Generated"] = "Billing Report Generated"
    event_id: str = Field(min_length=1, max_length=128)
    event_time: AwareDatetime
    month: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    bucket: str = Field(min_length=3, max_length=63)
    prefix: str = Field(min_length=1, max_length=256)
    tenants: NonNegativeInt
    tiers: dict[str, Annotated[Decimal, BeforeValidator(_reject_float)]]
    total_usd: Annotated[Decimal, BeforeValidator(_reject_float)]

    @field_validator("event_time")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


# Events on the bus that are not metering events, so the aggregator never receives them.
NOTIFICATION_TYPES: tuple[type[BaseModel], ...] = (BillingReportGenerated,)


def notification_entry(event: BillingReportGenerated, bus_name: str) -> dict[str, Any]:
    """Build the PutEvents entry for a notification event on the bus `bus_name`."""
    detail = event.model_dump(mode="json")
    return {
        "Source": EVENT_SOURCE,
        "DetailType": event.detail_type,
        "Detail": json.dumps(detail, separators=(",", ":")),
        "EventBusName": bus_name,
        "Time": event.event_time,
    }


def parse_event(detail: dict[str, Any]) -> MeteringEvent:
    """Validate one event's detail; raise pydantic.ValidationError when it is malformed."""
    return _event_adapter.validate_python(detail)


def to_put_events_entry(event: MeteringEvent, bus_name: str) -> dict[str, Any]:
    """Build the PutEvents entry for `event` on the bus `bus_name`."""
    detail = event.model_dump(mode="json")
    return {
        "Source": EVENT_SOURCE,
        "DetailType": detail["detail_type"],
        "Detail": json.dumps(detail, separators=(",", ":")),
        "EventBusName": bus_name,
        "Time": event.event_time,
    }


def parse_envelope(body: str) -> MeteringEvent:
    """Parse an EventBridge envelope, as delivered in an SQS message body, into its event.

    Raises ValueError (or pydantic.ValidationError, a subclass) when the body is not a
    metering event. JSON numbers with a fraction are read as `Decimal`, never as float, and
    the non-standard constants NaN and Infinity are rejected.
    """
    envelope = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    if not isinstance(envelope, dict) or envelope.get("source") != EVENT_SOURCE:
        raise ValueError("message is not an agentpool EventBridge event")
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise ValueError("EventBridge event has no detail object")
    if detail.get("detail_type") != envelope.get("detail-type"):
        raise ValueError("detail-type of the envelope does not match the event's detail_type")
    return parse_event(detail)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON number {name}")


def export_json_schemas() -> dict[str, Any]:
    """Return the JSON Schema of every event type, keyed by detail-type."""
    return {
        str(model.model_fields["detail_type"].default): model.model_json_schema()
        for model in (*EVENT_TYPES, *NOTIFICATION_TYPES)
    }
