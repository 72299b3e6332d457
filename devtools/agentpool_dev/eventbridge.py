"""EventBridge messages as a rule delivers them to the metering queue, for tests and benchmarks
that feed the aggregator without a bus."""

from __future__ import annotations

import json
import uuid

from agentpool.events import EVENT_SOURCE, MeteringEvent

# The account id that moto uses, so the messages look like the local stack's.
ACCOUNT_ID = "123456789012"


def rule_message(event: MeteringEvent, region: str = "us-east-1") -> str:
    """Return the JSON body of the SQS message that the metering rule would deliver for `event`."""
    detail = event.model_dump(mode="json")
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail["detail_type"],
            "source": EVENT_SOURCE,
            "account": ACCOUNT_ID,
            "time": detail["event_time"],
            "region": region,
            "resources": [],
            "detail": detail,
        }
    )
