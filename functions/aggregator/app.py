"""SQS consumer: price metering events into the ledger and totals, reporting partial failures.

Each SQS message body is an EventBridge envelope around one metering event. All valid events of
a batch go to the ledger in one `Ledger.record` call, which writes each distinct event exactly
once. A message is reported in `batchItemFailures`, so that SQS delivers it again, when it is
malformed or when the ledger reports its event as failed. After `maxReceiveCount` (3 in
template.yaml) receives, SQS moves it to the dead-letter queue. A duplicate event is a success.

After recording, each tenant whose billed amount of a month reached 80 % or 100 % of its
monthly budget gets one "Budget Threshold Crossed" event per threshold on the bus.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentpool.budget import BudgetAlerts, ThresholdCrossing, alert_entry, monthly_budget
from agentpool.events import parse_envelope
from agentpool.ledger import Ledger, RecordResult
from agentpool.observability import (
    metrics_by_tier,
    observability_from_env,
    publish_tier_metrics,
)
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import RatedEvent, rate_event


class Settings(BaseModel):
    """Environment of the aggregator, validated at cold start."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ledger_table: str = Field(alias="LEDGER_TABLE", min_length=1)
    totals_table: str = Field(alias="TOTALS_TABLE", min_length=1)
    # Budget alerts are sent only when both are set; template.yaml sets both.
    tenants_table: str | None = Field(default=None, alias="TENANTS_TABLE", min_length=1)
    event_bus_name: str | None = Field(default=None, alias="EVENT_BUS_NAME", min_length=1)


# A missing variable raises ValidationError at import, naming it (for example LEDGER_TABLE).
settings = Settings.model_validate(dict(os.environ))
observability = observability_from_env()
logger, metrics, tracer = observability.logger, observability.metrics, observability.tracer
dynamodb = boto3.client("dynamodb")
ledger = Ledger(dynamodb, settings.ledger_table, settings.totals_table)


@dataclass
class ParsedBatch:
    """The rated events of an SQS batch, and the ids of messages that were malformed."""

    rated: list[RatedEvent] = field(default_factory=list)
    message_ids_by_event: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    malformed: list[str] = field(default_factory=list)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
@event_source(data_class=SQSEvent)
def lambda_handler(event: SQSEvent, context: LambdaContext) -> dict[str, Any]:
    batch = parse_batch(event)
    result = ledger.record(batch.rated)
    report(batch, result)
    check_budgets(batch, result)
    return batch_response(batch, result)


def parse_batch(event: SQSEvent) -> ParsedBatch:
    """Parse and rate every message, setting aside the malformed ones."""
    batch = ParsedBatch()
    catalog = default_catalog()
    for record in event.records:
        try:
            metering_event = parse_envelope(record.body)
        except ValueError as error:
            # The body may contain personal data, so only the message id and error types are logged.
            logger.warning(
                "invalid metering message",
                extra={
                    "message_id": record.message_id,
                    "error_type": type(error).__name__,
                    "validation_errors": _validation_error_types(error),
                },
            )
            batch.malformed.append(record.message_id)
            continue
        batch.rated.append(rate_event(metering_event, catalog))
        batch.message_ids_by_event[metering_event.event_id].append(record.message_id)
    return batch


def report(batch: ParsedBatch, result: RecordResult) -> None:
    """Log the batch outcome and emit metrics per tier for the newly recorded events."""
    by_id = {rated.event.event_id: rated for rated in batch.rated}
    for event_id in result.failed:
        logger.warning(
            "ledger write failed, message will be retried",
            extra={
                "event_id": event_id,
                "tenant_id": by_id[event_id].event.tenant_id,
                "message_ids": batch.message_ids_by_event[event_id],
            },
        )
    logger.info(
        "metering batch processed",
        extra={
            "messages": sum(len(ids) for ids in batch.message_ids_by_event.values())
            + len(batch.malformed),
            "malformed": len(batch.malformed),
            "recorded": len(result.recorded),
            "duplicates": len(result.duplicates),
            "failed": len(result.failed),
        },
    )
    recorded = [by_id[event_id] for event_id in result.recorded]
    for tier, values in sorted(metrics_by_tier(recorded).items()):
        publish_tier_metrics(metrics, tier, values)


def check_budgets(batch: ParsedBatch, result: RecordResult) -> list[ThresholdCrossing]:
    """Send the budget alerts that the newly recorded amounts crossed; return them."""
    if settings.tenants_table is None or settings.event_bus_name is None:
        return []
    by_id = {rated.event.event_id: rated for rated in batch.rated}
    tenant_months = sorted(
        {
            (by_id[event_id].event.tenant_id, by_id[event_id].event.tier, month)
            for event_id, month in result.billed_in.items()
            if by_id[event_id].amount_usd
        }
    )
    alerts = BudgetAlerts(dynamodb, settings.totals_table, _publish_alert)
    sent: list[ThresholdCrossing] = []
    for tenant_id, tier, month in tenant_months:
        tenant = dynamodb.get_item(
            TableName=settings.tenants_table, Key={"tenant_id": {"S": tenant_id}}
        ).get("Item")
        override = tenant.get("monthly_budget_usd", {}).get("N") if tenant else None
        budget = monthly_budget({"monthly_budget_usd": override} if override else None, tier)
        try:
            crossings = alerts.check(tenant_id, month, budget)
        except (RuntimeError, ClientError) as error:
            # The events are recorded, so the batch succeeds. The claim stays, and a later
            # batch sends the alert once the claim times out.
            logger.warning(
                "budget alert not sent",
                extra={"tenant_id": tenant_id, "month": month, "error_type": type(error).__name__},
            )
            continue
        for crossing in crossings:
            logger.info(
                "budget threshold crossed",
                extra={
                    "tenant_id": tenant_id,
                    "month": month,
                    "threshold_percent": crossing.threshold_percent,
                },
            )
            sent.append(crossing)
    return sent


def _publish_alert(crossing: ThresholdCrossing) -> None:
    assert settings.event_bus_name is not None  # noqa: S101 - checked by check_budgets
    response = events_client().put_events(Entries=[alert_entry(crossing, settings.event_bus_name)])
    if response.get("FailedEntryCount"):
        # The claim stays, so the alert is sent again once the claim times out.
        raise RuntimeError(f"budget alert not published: {response['Entries'][0]}")


def events_client() -> Any:
    return boto3.client("events")


def batch_response(batch: ParsedBatch, result: RecordResult) -> dict[str, Any]:
    """Build the partial batch response: malformed messages and those of failed events."""
    failed_ids = list(batch.malformed)
    for event_id in result.failed:
        failed_ids.extend(batch.message_ids_by_event[event_id])
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed_ids]}


def _validation_error_types(error: ValueError) -> list[str]:
    # pydantic's error details include the rejected input, so only their types are kept.
    if isinstance(error, ValidationError):
        return sorted({detail["type"] for detail in error.errors()})
    return []
