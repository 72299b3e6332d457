"""CloudWatch Logs subscription consumer: bill AgentCore Runtime USAGE_LOGS records.

The runtime delivers its usage records to RuntimeUsageLogGroup, whose subscription filter
invokes this function asynchronously with batches of log events. Every billable record is
published as a Runtime Usage event on the metering bus, with a stable id, so a redelivered
batch is billed once. Records that cannot be billed go to RuntimeUsageDeadLetterQueue as a
subscription event of their own, and the rest of the batch is billed. A failure to publish
raises, so Lambda retries the whole invocation and then writes it to the same queue.
Logs hold counts, log event ids and reasons, never record contents.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from agentpool.log_subscription import InvalidSubscriptionEventError, decode_subscription_event
from agentpool.observability import observability_from_env
from agentpool.publisher import MeteringPublisher
from agentpool.registry import TenantRegistry
from agentpool.runtime_usage import session_owner_lookup
from agentpool.usage_log_delivery import dead_letter_body, usage_from_subscription


class Settings(BaseModel):
    """Environment of the runtime usage function, validated at cold start."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenants_table: str = Field(alias="TENANTS_TABLE", min_length=1)
    sessions_table: str = Field(alias="SESSIONS_TABLE", min_length=1)
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)
    dead_letter_queue_url: str = Field(alias="DEAD_LETTER_QUEUE_URL", min_length=1)


# A missing variable raises ValidationError at import, naming it (for example TENANTS_TABLE).
settings = Settings.model_validate(dict(os.environ))
observability = observability_from_env()
logger, tracer = observability.logger, observability.tracer
dynamodb = boto3.resource("dynamodb")
owner_of = session_owner_lookup(
    TenantRegistry(dynamodb.Table(settings.tenants_table)),
    dynamodb.Table(settings.sessions_table),
)
publisher = MeteringPublisher(settings.event_bus_name, boto3.client("events"))
sqs = boto3.client("sqs")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler
def lambda_handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        batch = decode_subscription_event(event)
    except InvalidSubscriptionEventError as error:
        # Retrying cannot decode it either, so it goes to the dead-letter queue as received.
        logger.warning("subscription event rejected", extra={"reason": str(error)})
        sqs.send_message(QueueUrl=settings.dead_letter_queue_url, MessageBody=json.dumps(event))
        return {"messageType": None, "records": 0, "published": 0, "rejected": 0}
    delivered = usage_from_subscription(batch, owner_of)
    # Publish first: if the dead-letter send then fails, the retry publishes the same ids.
    publisher.publish(delivered.events)
    for item in delivered.rejected:
        logger.warning(
            "usage record rejected",
            extra={"log_event_id": item.log_event.id, "reason": item.reason},
        )
    if delivered.rejected:
        sqs.send_message(
            QueueUrl=settings.dead_letter_queue_url,
            MessageBody=dead_letter_body(batch, delivered.rejected),
        )
    logger.info(
        "usage records delivered",
        extra={
            "message_type": delivered.message_type,
            "log_group": batch.log_group,
            "records": delivered.records,
            "published": len(delivered.events),
            "rejected": len(delivered.rejected),
        },
    )
    return {
        "messageType": delivered.message_type,
        "records": delivered.records,
        "published": len(delivered.events),
        "rejected": len(delivered.rejected),
    }
