"""Deliver a log group's new events to a function, as a CloudWatch Logs subscription filter does.

The poller reads the log group in moto and invokes the function with the subscription envelope
that CloudWatch Logs sends (`awslogs.data`, base64 of gzip of JSON, see
agentpool.log_subscription). It sends one CONTROL_MESSAGE first, as CloudWatch Logs does when a
subscription is created. Then it sends a DATA_MESSAGE per log stream with the events not yet
delivered. Like Lambda's asynchronous
invocation, a failed invocation is retried `max_retries` times and then, if the function has
a dead-letter queue, the event is sent there.

Local differences: only the empty filter pattern (every event) is supported, and events are
delivered within about POLL_SECONDS, where CloudWatch Logs takes seconds to minutes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from agentpool.log_subscription import (
    CONTROL_MESSAGE,
    DATA_MESSAGE,
    LogEvent,
    SubscriptionBatch,
    encode_subscription_event,
)
from agentpool_dev.lambda_runner import FunctionError

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# The events of one stream are sent in envelopes of at most this many events.
MAX_EVENTS_PER_BATCH = 1000
CONTROL_MESSAGE_TEXT = "CWL CONTROL MESSAGE: Checking health of destination Lambda function"


class LogSubscriptionPoller:
    def __init__(
        self,
        logs: Any,
        log_group: str,
        filter_name: str,
        owner: str,
        invoke: Callable[[dict[str, Any]], Any],
        dead_letter: Callable[[str], None] | None = None,
        max_retries: int = 2,
    ) -> None:
        self._logs = logs
        self._log_group = log_group
        self._filter_name = filter_name
        self._owner = owner
        self._invoke = invoke
        self._dead_letter = dead_letter
        self._max_retries = max_retries
        self._delivered: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="log-poller")
        self.batches = 0
        self.failed_batches = 0
        self._failures = 0

    def start(self) -> None:
        self._send_control_message()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)

    def idle(self) -> bool:
        """Return True when every event of the log group has been delivered or dead-lettered."""
        with self._lock:
            return not any(events for _, events in self._new_events())

    def poll(self) -> None:
        """Deliver every event not yet delivered, one envelope per stream and chunk."""
        with self._lock:
            for stream, events in self._new_events():
                for start in range(0, len(events), MAX_EVENTS_PER_BATCH):
                    chunk = events[start : start + MAX_EVENTS_PER_BATCH]
                    self._deliver(self._batch(DATA_MESSAGE, stream, chunk))
                    self._delivered.update(event.id for event in chunk)

    def _run(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception as error:
                # Once per failure streak with the trace, so a stopped moto does not flood the log.
                self._failures += 1
                if self._failures == 1:
                    logger.exception(
                        "log subscription poller failed; retrying",
                        extra={"log_group": self._log_group},
                    )
                else:
                    logger.warning(
                        "log subscription poller still failing",
                        extra={"failures": self._failures, "error_type": type(error).__name__},
                    )
                self._stopped.wait(min(30, 2 ** min(self._failures, 5)))
            else:
                self._failures = 0

    def _new_events(self) -> list[tuple[str, list[LogEvent]]]:
        streams: list[str] = []
        paginator = self._logs.get_paginator("describe_log_streams")
        for page in paginator.paginate(logGroupName=self._log_group):
            streams.extend(stream["logStreamName"] for stream in page["logStreams"])
        found = []
        for stream in streams:
            events: list[LogEvent] = []
            arguments: dict[str, Any] = {
                "logGroupName": self._log_group,
                "logStreamNames": [stream],
            }
            while True:
                page = self._logs.filter_log_events(**arguments)
                events.extend(
                    LogEvent(str(item["eventId"]), int(item["timestamp"]), item["message"])
                    for item in page.get("events", [])
                    if str(item["eventId"]) not in self._delivered
                )
                token = page.get("nextToken")
                if not token:
                    break
                arguments["nextToken"] = token
            found.append((stream, sorted(events, key=lambda event: event.timestamp)))
        return found

    def _batch(self, message_type: str, stream: str, events: list[LogEvent]) -> SubscriptionBatch:
        return SubscriptionBatch(
            message_type=message_type,
            owner=self._owner,
            log_group=self._log_group,
            log_stream=stream,
            subscription_filters=[self._filter_name],
            log_events=events,
        )

    def _send_control_message(self) -> None:
        control = SubscriptionBatch(
            message_type=CONTROL_MESSAGE,
            owner="CloudwatchLogs",
            log_group="",
            log_stream="",
            log_events=[LogEvent("", 0, CONTROL_MESSAGE_TEXT)],
        )
        self._deliver(control)

    def _deliver(self, batch: SubscriptionBatch) -> None:
        event = encode_subscription_event(batch)
        self.batches += 1
        for attempt in range(1, self._max_retries + 2):
            try:
                self._invoke(event)
                return
            except FunctionError as error:
                logger.warning(
                    "subscription delivery failed",
                    extra={
                        "attempt": attempt,
                        "events": len(batch.log_events),
                        "error_type": error.error_type,
                    },
                )
        self.failed_batches += 1
        if self._dead_letter is not None:
            self._dead_letter(json.dumps(event))
