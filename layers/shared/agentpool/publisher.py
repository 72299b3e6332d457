"""Publish metering events to the EventBridge bus."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import boto3

from agentpool.events import MeteringEvent, to_put_events_entry

logger = logging.getLogger(__name__)

MAX_ENTRIES_PER_CALL = 10  # PutEvents accepts at most 10 entries
MAX_ATTEMPTS = 4


class PublishError(Exception):
    def __init__(self, event_ids: list[str]) -> None:
        super().__init__(f"{len(event_ids)} metering events were not published")
        self.event_ids = event_ids


class MeteringPublisher:
    def __init__(self, bus_name: str, client: Any | None = None) -> None:
        self._bus_name = bus_name
        self._client = client or boto3.client("events")

    def publish(self, events: Sequence[MeteringEvent]) -> None:
        """Publish every event, retrying the entries PutEvents reports as failed.

        Raises PublishError naming the events still unpublished after MAX_ATTEMPTS. Event ids
        are stable, so publishing an event twice is harmless: the ledger counts it once.
        """
        for start in range(0, len(events), MAX_ENTRIES_PER_CALL):
            self._publish_chunk(list(events[start : start + MAX_ENTRIES_PER_CALL]))

    def _publish_chunk(self, pending: list[MeteringEvent]) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            entries = [to_put_events_entry(event, self._bus_name) for event in pending]
            response = self._client.put_events(Entries=entries)
            if not response.get("FailedEntryCount"):
                return
            pending = [
                event
                for event, result in zip(pending, response["Entries"], strict=True)
                if result.get("ErrorCode")
            ]
            logger.warning(
                "put events partly failed, retrying",
                extra={"attempt": attempt, "failed": len(pending)},
            )
            time.sleep(0.05 * 2**attempt)
        raise PublishError([event.event_id for event in pending])
