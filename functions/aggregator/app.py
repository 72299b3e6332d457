"""SQS consumer: price metering events into the ledger and totals, reporting partial failures.

Each SQS message body is an EventBridge envelope around one metering event. All valid events of
a batch go to the ledger in one `Ledger.record` call, which writes each distinct event exactly
once. A message is reported in `batchItemFailures`, so that SQS delivers it again, when it is
malformed or when the ledger reports its event as failed. After `maxReceiveCount` (3 in
template.yaml) receives, SQS moves it to the dead-letter queue. A duplicate event is a success.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


# A missing variable raises ValidationError at import, naming it (for example LEDGER_TABLE).
settings = Settings.model_validate(dict(os.environ))
observability = observability_from_env()
logger, metrics, tracer = observability.logger, observability.metrics, observability.tracer
ledger = Ledger(boto3.client("dynamodb"), settings.ledger_table, settings.totals_table)


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
