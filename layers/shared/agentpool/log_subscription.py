"""CloudWatch Logs subscription events: decode the `awslogs.data` envelope, and build one.

A subscription filter that targets a Lambda function invokes it with
`{"awslogs": {"data": ...}}`, where `data` is base64 of gzip of a JSON document with
`messageType`, `owner`, `logGroup`, `logStream`, `subscriptionFilters` and `logEvents`
(each with `id`, `timestamp` in epoch milliseconds and `message`). CloudWatch Logs first sends
a `CONTROL_MESSAGE` to check that it can reach the function, and then `DATA_MESSAGE`s
("Using CloudWatch Logs subscription filters", Lambda example, in the CloudWatch Logs user
guide). The local stack builds the same envelope with `encode_subscription_event`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DATA_MESSAGE = "DATA_MESSAGE"
CONTROL_MESSAGE = "CONTROL_MESSAGE"


class InvalidSubscriptionEventError(ValueError):
    """An event is not a CloudWatch Logs subscription envelope that can be decoded."""


@dataclass(frozen=True)
class LogEvent:
    """One log event of a subscription batch; `id` is CloudWatch Logs' event id."""

    id: str
    timestamp: int
    message: str


@dataclass(frozen=True)
class SubscriptionBatch:
    """The decoded contents of one subscription event."""

    message_type: str
    owner: str
    log_group: str
    log_stream: str
    subscription_filters: list[str] = field(default_factory=list)
    log_events: list[LogEvent] = field(default_factory=list)


def decode_subscription_event(event: Mapping[str, Any]) -> SubscriptionBatch:
    """Decode a subscription event; raise InvalidSubscriptionEventError naming what failed."""
    try:
        data = event["awslogs"]["data"]
    except (KeyError, TypeError) as error:
        raise InvalidSubscriptionEventError("event has no awslogs.data") from error
    if not isinstance(data, str):
        raise InvalidSubscriptionEventError("awslogs.data is not a string")
    try:
        document = json.loads(gzip.decompress(base64.b64decode(data, validate=True)))
    except (binascii.Error, OSError, EOFError, zlib.error) as error:
        raise InvalidSubscriptionEventError(
            f"awslogs.data is not base64 of gzip: {type(error).__name__}"
        ) from error
    except ValueError as error:
        raise InvalidSubscriptionEventError("awslogs.data is not valid JSON") from error
    if not isinstance(document, dict):
        raise InvalidSubscriptionEventError("awslogs.data is not a JSON object")
    try:
        return SubscriptionBatch(
            message_type=str(document["messageType"]),
            owner=str(document.get("owner", "")),
            log_group=str(document.get("logGroup", "")),
            log_stream=str(document.get("logStream", "")),
            subscription_filters=[str(name) for name in document.get("subscriptionFilters", [])],
            log_events=[
                LogEvent(
                    id=str(item["id"]),
                    timestamp=int(item["timestamp"]),
                    message=str(item["message"]),
                )
                for item in document.get("logEvents") or []
            ],
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidSubscriptionEventError(
            f"subscription document lacks a valid field: {type(error).__name__} {error}"
        ) from error


def encode_subscription_event(
    batch: SubscriptionBatch, log_events: Sequence[LogEvent] | None = None
) -> dict[str, Any]:
    """Build the Lambda event for `batch`, with `log_events` in place of its own if given."""
    document = {
        "messageType": batch.message_type,
        "owner": batch.owner,
        "logGroup": batch.log_group,
        "logStream": batch.log_stream,
        "subscriptionFilters": batch.subscription_filters,
        "logEvents": [
            {"id": item.id, "timestamp": item.timestamp, "message": item.message}
            for item in (batch.log_events if log_events is None else log_events)
        ],
    }
    data = base64.b64encode(gzip.compress(json.dumps(document).encode())).decode()
    return {"awslogs": {"data": data}}
