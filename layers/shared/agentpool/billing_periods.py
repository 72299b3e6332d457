"""Billing periods: which months have an issued report, and where a late amount is billed.

A month is issued when the monthly report run has marked it, with one item per month in the
totals table (pk `billing#issued`, sk `month#YYYY-MM`). An issued month's totals never change:
the ledger bills an event of an issued month in the first open month after it, as an
adjustment, and its transaction checks that this month is still open. DynamoDB transactions
are serializable, so a report run that marks the month first and reads its totals afterwards
sees every amount that will ever be billed in that month:

    report run:  mark_issued(2026-03) -> read totals of 2026-03 -> write the report
    aggregator:  [put ledger entry, add totals of 2026-03, check 2026-03 not issued]
                 commits before the mark: included in the read
                 arrives after the mark:  cancelled, re-billed in 2026-04 as an adjustment
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

ISSUED_PARTITION = "billing#issued"


def issued_key(month: str) -> dict[str, str]:
    """Return the totals-table key of the item that marks `month` (YYYY-MM) as issued."""
    return {"pk": ISSUED_PARTITION, "sk": f"month#{month}"}


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

    def mark_issued(self, month: str, report_key: str | None = None) -> bool:
        """Mark `month` (YYYY-MM) issued. Return False when it was already issued.

        The report run calls this before it reads the month's totals, so that no amount can
        be added to them after the read.
        """
        datetime.strptime(month, "%Y-%m")  # raises ValueError for a malformed month
        item: dict[str, Any] = {
            "pk": {"S": ISSUED_PARTITION},
            "sk": {"S": f"month#{month}"},
            "issued_at": {"S": datetime.now(UTC).isoformat().replace("+00:00", "Z")},
        }
        if report_key:
            item["report_key"] = {"S": report_key}
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
