"""DynamoDB reads of the monthly report: ledger entries by event time, totals, tier shards.

Every read goes through `ReadMeter`, which counts requests, items and read capacity, so the
report run can state what a month cost to read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from agentpool.billing.report import month_days

LEDGER_INDEX = "by-event-time"
# Late events and corrections of up to this many earlier months can be billed in a month, so
# the ledger query starts this many months before the report month and keeps only entries
# whose `month` is the report month.
# NOTE: an entry billed more than two months after its event time is missed by the query,
# but reconciliation with the totals table then fails the report instead of dropping it.
ADJUSTMENT_LOOKBACK_MONTHS = 2
READ_UNIT_BYTES = 4096

_deserializer = TypeDeserializer()


@dataclass
class ReadMeter:
    """DynamoDB reads of one report run."""

    requests: int = 0
    items: int = 0
    # Items that queries read before their filter, which is what DynamoDB charges for.
    scanned: int = 0
    # Read units that DynamoDB reported through ReturnConsumedCapacity.
    consumed_read_units: float = 0.0

    def add(self, page: dict[str, Any]) -> None:
        self.requests += 1
        self.items += len(page.get("Items", []))
        self.scanned += int(page.get("ScannedCount", len(page.get("Items", []))))
        capacity = page.get("ConsumedCapacity") or {}
        self.consumed_read_units += float(capacity.get("CapacityUnits", 0))


def months_before(month: str, count: int) -> str:
    year, number = (int(part) for part in month.split("-"))
    index = year * 12 + number - 1 - count
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def item_size_bytes(item: dict[str, Any]) -> int:
    """Estimate an item's size as DynamoDB counts it: names plus values, in UTF-8 bytes.

    Numbers count as about one byte per two digits plus one, as DynamoDB documents.
    """
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return math.ceil(len(str(inner).lstrip("-").replace(".", "")) / 2) + 1
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    return len(str(inner).encode())


class ReportStore:
    """Read one month's ledger entries and totals with platform credentials."""

    def __init__(self, dynamodb_client: Any, ledger_table: str, totals_table: str) -> None:
        self._client = dynamodb_client
        self._ledger_table = ledger_table
        self._totals_table = totals_table
        self.meter = ReadMeter()
        # Estimated eventually consistent read units of the ledger index pages, from item sizes.
        self.estimated_read_units = 0.0

    def ledger_entries(self, tenant_id: str, month: str) -> list[dict[str, Any]]:
        """Return the tenant's ledger entries billed in `month`, through the by-event-time index.

        Index reads are eventually consistent. The monthly run starts hours after the month
        ends, and reconciliation with the strongly consistent totals catches a stale read.
        """
        start = months_before(month, ADJUSTMENT_LOOKBACK_MONTHS) + "-01T00:00:00"
        end = month_days(month)[-1] + "T23:59:59.999999Z"
        entries = []
        for item in self._pages(
            TableName=self._ledger_table,
            IndexName=LEDGER_INDEX,
            KeyConditionExpression="tenant_id = :tenant AND event_time BETWEEN :start AND :end",
            FilterExpression="#month = :month",
            ExpressionAttributeNames={"#month": "month"},
            ExpressionAttributeValues={
                ":tenant": {"S": tenant_id},
                ":start": {"S": start},
                ":end": {"S": end},
                ":month": {"S": month},
            },
        ):
            entries.append(item)
        return entries

    def totals_items(self, partition: str, month: str) -> list[dict[str, Any]]:
        """Return the totals items of `partition` whose sort key starts with month#<month>.

        The day items (`day#...`) are not read: the report sums days from the ledger.
        """
        return list(
            self._pages(
                TableName=self._totals_table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": partition},
                    ":prefix": {"S": f"month#{month}"},
                },
                ConsistentRead=True,
            )
        )

    def total_item(self, partition: str, month: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._totals_table,
            Key={"pk": {"S": partition}, "sk": {"S": f"month#{month}"}},
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        self.meter.add({"Items": [response["Item"]] if "Item" in response else []} | response)
        item = response.get("Item")
        return None if item is None else _plain(item)

    def _pages(self, **arguments: Any) -> Iterator[dict[str, Any]]:
        arguments["ReturnConsumedCapacity"] = "TOTAL"
        consistent = bool(arguments.get("ConsistentRead"))
        while True:
            page = self._client.query(**arguments)
            self.meter.add(page)
            # A query is charged for the items it reads, rounded up to 4 KB per page, and half
            # as much when eventually consistent. NOTE: this counts returned items only, so it
            # is low when the month filter drops entries of earlier months.
            size = sum(item_size_bytes(item) for item in page["Items"])
            units = max(1, math.ceil(size / READ_UNIT_BYTES))
            self.estimated_read_units += units if consistent else units / 2
            for item in page["Items"]:
                yield _plain(item)
            if "LastEvaluatedKey" not in page:
                return
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}
