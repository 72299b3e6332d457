"""Deliver an SQS queue to a function, as Lambda's SQS event source mapping does.

Messages are received in batches of up to the mapping's BatchSize and passed as an SQS event.
Records that succeed are deleted. With ReportBatchItemFailures only the records the function
names in `batchItemFailures` stay on the queue; a function error leaves the whole batch.
After the queue's maxReceiveCount receives, SQS itself moves a record to the dead-letter queue.

Local difference: a failed record becomes visible again after RETRY_DELAY_SECONDS instead of
the queue's visibility timeout (180 s in the template), so local retries take seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from agentpool_dev.lambda_runner import FunctionError

logger = logging.getLogger(__name__)

RETRY_DELAY_SECONDS = 1
MAX_RECEIVE_PER_CALL = 10  # SQS ReceiveMessage returns at most 10 messages


class SqsPoller:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        batch_size: int,
        invoke: Callable[[dict[str, Any]], Any],
        reports_item_failures: bool,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._batch_size = batch_size
        self._invoke = invoke
        self._reports_item_failures = reports_item_failures
        self._stopped = threading.Event()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sqs-poller")
        self.batches = 0
        self.failed_records = 0
        self._failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=30)

    def idle(self) -> bool:
        """True when no batch is in flight and the queue has no visible or in-flight message."""
        if self._busy.is_set():
            return False
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]) == 0
            and int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0
            and not self._busy.is_set()
        )

    def _receive_batch(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        wait = 1
        while len(messages) < self._batch_size and not self._stopped.is_set():
            received = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=min(MAX_RECEIVE_PER_CALL, self._batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                break
            messages.extend(received)
            wait = 0  # the batch window closes as soon as the queue is momentarily empty
        return messages

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                messages = self._receive_batch()
                if messages:
                    # Received messages count as in flight on the queue until deleted, so
                    # `idle` also sees them before this flag is set.
                    self._busy.set()
                    self._deliver(messages)
            except Exception as error:
                # Once per failure streak with the trace, then a line per retry with backoff,
                # so a stopped moto server does not flood the log.
                self._failures += 1
                if self._failures == 1:
                    logger.exception(
                        "sqs poller failed; retrying", extra={"queue": self._queue_arn}
                    )
                else:
                    logger.warning(
                        "sqs poller still failing",
                        extra={"failures": self._failures, "error_type": type(error).__name__},
                    )
                self._stopped.wait(min(30, 2 ** min(self._failures, 5)))
            else:
                self._failures = 0
            finally:
                self._busy.clear()

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [self._record(message) for message in messages]}
        self.batches += 1
        try:
            response = self._invoke(event)
        except FunctionError as error:
            logger.warning(
                "batch failed, records return to the queue",
                extra={"records": len(messages), "error_type": error.error_type},
            )
            failed_ids = {message["MessageId"] for message in messages}
        else:
            failed_ids = set()
            if self._reports_item_failures and isinstance(response, dict):
                failed_ids = {
                    failure["itemIdentifier"] for failure in response.get("batchItemFailures") or []
                }
        self.failed_records += len(failed_ids)
        done = [m for m in messages if m["MessageId"] not in failed_ids]
        for start in range(0, len(done), 10):
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(done[start : start + 10])
                ],
            )
        for message in messages:
            if message["MessageId"] in failed_ids:
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=RETRY_DELAY_SECONDS,
                )

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self._queue_arn,
            "awsRegion": self._queue_arn.split(":")[3],
        }
