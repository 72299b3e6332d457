"""Billing periods: which months have an issued report, and where a late amount is billed.

The monthly report run issues a month with one transaction that writes two kinds of mark in
the totals table:

- the month item (pk `billing#issued`, sk `month#YYYY-MM`), which `issued_months` lists, so
  that the ledger bills each later event of the month in the first open month after it;
- the attribute `issued_at` on the month total of every shard of every tier
  (pk `tier#<tier>#<shard>`, sk `month#YYYY-MM`).

Every event adds to the month total of its own tier shard, and the ledger makes that update
conditional on `attribute_not_exists(issued_at)`. So a ledger transaction checks the issued
mark on an item that it writes anyway, and no item is touched by every transaction. Events of a
tier that `agentpool.tiers` does not define are the exception: their transaction checks the
month item with a ConditionCheck, as each issuing run writes it too.

Why an event recorded during issuance is billed exactly once: DynamoDB serializes two
transactions that write the same item ("Isolation levels for DynamoDB transactions" in the
DynamoDB Developer Guide), and the issuing transaction writes every tier shard month total
that a ledger transaction of that month can write. The report run marks the month before it
reads anything, so each ledger transaction of the month is ordered before or after the mark:

    report run:  mark_issued(2026-03) -> read totals of 2026-03 -> write the report
    aggregator:  [put ledger entry, add totals of 2026-03 if the tier shard is not marked]
                 commits before the mark: included in the read
                 arrives after the mark:  cancelled, re-billed in 2026-04 as an adjustment
                 in flight with the mark: one of the two is cancelled with a
                                          TransactionConflict and retried

An issued month's totals therefore never change, and each event is either in the issued report
or an adjustment of a later month, never both and never neither.
`tests/unit/test_issuance_race.py` checks this with the mark placed before each DynamoDB call.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from agentpool.tier_shards import TIER_SHARDS, tier_partition, tier_shard_of
from agentpool.tiers import TIERS

logger = logging.getLogger(__name__)

ISSUED_PARTITION = "billing#issued"
# The attribute that marks a tier shard's month total as issued, and the ledger's condition.
ISSUED_MARK = "issued_at"
NOT_ISSUED_CONDITION = f"attribute_not_exists({ISSUED_MARK})"
# The issuing transaction retries conflicts with ledger transactions on the marked items.
MAX_MARK_ATTEMPTS = 8
# DynamoDB accepts at most 100 actions in one TransactWriteItems call.
MAX_TRANSACTION_ITEMS = 100
_RETRYABLE_CODES = frozenset(
    {
        "TransactionConflict",
        "TransactionConflictException",
        "TransactionInProgressException",
        "ThrottlingError",
        "ThrottlingException",
        "ProvisionedThroughputExceeded",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)


def issued_key(month: str) -> dict[str, str]:
    """Return the totals-table key of the item that marks `month` (YYYY-MM) as issued."""
    return {"pk": ISSUED_PARTITION, "sk": f"month#{month}"}


def issued_mark_key(tier: str, event_id: str, month: str) -> tuple[str, str] | None:
    """Return the (pk, sk) of the tier shard month total that carries `month`'s issued mark.

    It is the month total that the event adds to. Return None for a tier that
    `agentpool.tiers` does not define, because an issuing run may not have marked it.
    """
    if tier not in TIERS:
        return None
    return tier_partition(tier, tier_shard_of(event_id)), f"month#{month}"


def next_month(month: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def billing_month(event_month: str, issued: Collection[str]) -> str:
    """Return the month that bills an event of `event_month`: itself, or the first open one."""
    month = event_month
    while month in issued:
        month = next_month(month)
    return month


class BillingPeriods:
    """Read and write the issued marks in the totals table."""

    def __init__(self, dynamodb_client: Any, totals_table: str) -> None:
        self._client = dynamodb_client
        self._table = totals_table

    def issued_months(self) -> frozenset[str]:
        """Return every issued month, read with strong consistency."""
        months: set[str] = set()
        arguments: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": ISSUED_PARTITION}},
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**arguments)
            months.update(item["sk"]["S"].removeprefix("month#") for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return frozenset(months)
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def mark_issued(
        self, month: str, report_key: str | None = None, tiers: Iterable[str] = ()
    ) -> bool:
        """Mark `month` (YYYY-MM) issued in one transaction. Return False if already issued.

        The transaction puts the month item and sets `issued_at` on the month total of every
        shard of every tier in `agentpool.tiers` and in `tiers`. The report run calls this
        before it reads the month's totals, so that no amount can be added to them after the
        read. Conflicts with ledger transactions on the same items are retried up to
        `MAX_MARK_ATTEMPTS` times, then raised.
        """
        datetime.strptime(month, "%Y-%m")  # raises ValueError for a malformed month
        issued_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        actions = self._mark_actions(month, issued_at, report_key, set(TIERS) | set(tiers))
        # The same token makes DynamoDB apply a retry once if an earlier attempt committed.
        token = hashlib.sha256(f"issue|{month}|{issued_at}".encode()).hexdigest()[:36]
        attempt = 1
        while True:
            try:
                self._client.transact_write_items(TransactItems=actions, ClientRequestToken=token)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                if reasons[:1] == ["ConditionalCheckFailed"]:
                    return False
                retryable = code in _RETRYABLE_CODES or bool(_RETRYABLE_CODES & set(reasons))
                if not retryable or attempt == MAX_MARK_ATTEMPTS:
                    raise
                logger.warning(
                    "issuing billing month failed, retrying",
                    extra={"month": month, "attempt": attempt, "error_code": code},
                )
                time.sleep(0.1 * 2**attempt)
                attempt += 1
                continue
            return True

    def _mark_actions(
        self, month: str, issued_at: str, report_key: str | None, tiers: set[str]
    ) -> list[dict[str, Any]]:
        item: dict[str, Any] = {
            "pk": {"S": ISSUED_PARTITION},
            "sk": {"S": f"month#{month}"},
            ISSUED_MARK: {"S": issued_at},
        }
        if report_key:
            item["report_key"] = {"S": report_key}
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        for tier in sorted(tiers):
            for shard in range(TIER_SHARDS):
                key = {"pk": {"S": tier_partition(tier, shard)}, "sk": {"S": f"month#{month}"}}
                actions.append(
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": key,
                            "UpdateExpression": f"SET {ISSUED_MARK} = :issued_at",
                            "ExpressionAttributeValues": {":issued_at": {"S": issued_at}},
                        }
                    }
                )
        if len(actions) > MAX_TRANSACTION_ITEMS:
            raise ValueError(
                f"Issuing {month} would write {len(actions)} items in one transaction, more than "
                f"DynamoDB's {MAX_TRANSACTION_ITEMS}. Lower TIER_SHARDS or the number of tiers."
            )
        return actions
