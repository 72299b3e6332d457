"""Re-rating: price a month's ledger entries again with another catalog, exactly once.

Each ledger entry billed in the month is priced again from the event that it stores. When
the new amount differs from what is billed for the event so far (its own amount plus earlier
re-ratings of it), the difference is recorded through the ledger as an entry of its own with
`rerate_of` set to the original event id. That entry keeps the original's event time, so in
an open month it corrects the month's usage in place, and for an issued month the ledger
bills it in the next open month as an adjustment (`adjustment_of_month`).

The id of a re-rating entry is derived from the original id, the amount billed so far and the
new amount. A rerun with the same catalog finds no difference and records nothing, and two
runs that race record the same id, which the ledger writes once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from agentpool.billing.report import month_days
from agentpool.billing.store import ADJUSTMENT_LOOKBACK_MONTHS, LEDGER_INDEX, months_before
from agentpool.events import parse_event
from agentpool.ledger import Ledger
from agentpool.pricing.catalog import PriceCatalog
from agentpool.pricing.rating import RatedEvent, rate_event

logger = logging.getLogger(__name__)

# Namespace of re-rating entry ids; fixed, because changing it would make a rerun record twice.
RERATE_NAMESPACE = uuid.UUID("5d0c9a1e-7b2f-4c63-9e15-2a8f4b6d3c70")

_deserializer = TypeDeserializer()


def rerate_event_id(original_id: str, billed_usd: Decimal, new_usd: Decimal) -> str:
    """Return the id of the re-rating from `billed_usd` to `new_usd` of event `original_id`."""
    key = f"{original_id}|{billed_usd.normalize():f}|{new_usd.normalize():f}"
    return str(uuid.uuid5(RERATE_NAMESPACE, key))


@dataclass
class RerateResult:
    """Counts and ids of one re-rating run."""

    month: str
    catalog_version: str
    entries: int = 0
    unchanged: int = 0
    # Entries that the new catalog cannot price; they keep their billed amount.
    unpriced: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    difference_usd: Decimal = Decimal(0)


def plan_rerating(
    entries: Iterable[Mapping[str, Any]], month: str, catalog: PriceCatalog, result: RerateResult
) -> list[RatedEvent]:
    """Return the re-rating entries that bring `month`'s entries to `catalog`'s prices.

    `entries` must contain every re-rating of the month's entries, which share their event
    time. Entries of other billing months are read only for those re-ratings.
    """
    entries = list(entries)
    billed: dict[str, Decimal] = {}
    originals = []
    for entry in entries:
        if not entry.get("rerate_of") and entry["month"] == month:
            billed[str(entry["event_id"])] = Decimal(entry["amount_usd"])
            originals.append(entry)
    for entry in entries:
        original_id = entry.get("rerate_of")
        if original_id in billed:
            billed[str(original_id)] += Decimal(entry["amount_usd"])
    planned = []
    for entry in originals:
        result.entries += 1
        original_id = str(entry["event_id"])
        event = parse_event(json.loads(entry["event"], parse_float=Decimal))
        rated = rate_event(event, catalog)
        if not rated.priced:
            result.unpriced.append(original_id)
            continue
        difference = rated.amount_usd - billed[original_id]
        if difference == 0:
            result.unchanged += 1
            continue
        rerate_id = rerate_event_id(original_id, billed[original_id], rated.amount_usd)
        planned.append(
            RatedEvent(
                event=event.model_copy(update={"event_id": rerate_id}),
                item=rated.item,
                amount_usd=difference,
                catalog_version=catalog.version,
                # No quantities: the original entry already counts the usage.
                unit_prices=rated.unit_prices,
                rerate_of=original_id,
            )
        )
    return planned


class Rerating:
    """Re-rate tenants' ledger entries of a month and record the differences."""

    def __init__(self, dynamodb_client: Any, ledger_table: str, totals_table: str) -> None:
        self._client = dynamodb_client
        self._ledger_table = ledger_table
        self._ledger = Ledger(dynamodb_client, ledger_table, totals_table)

    def run(
        self,
        tenant_ids: Sequence[str],
        month: str,
        catalog: PriceCatalog,
        on_tenant: Callable[[str], None] | None = None,
    ) -> RerateResult:
        """Re-rate every entry of `tenant_ids` billed in `month` (YYYY-MM) with `catalog`."""
        result = RerateResult(month, catalog.version)
        for tenant_id in tenant_ids:
            planned = plan_rerating(self.entries(tenant_id, month), month, catalog, result)
            recorded = self._ledger.record(planned)
            result.recorded += recorded.recorded
            result.duplicates += recorded.duplicates
            result.failed += recorded.failed
            amounts = {rated.event.event_id: rated.amount_usd for rated in planned}
            result.difference_usd += sum(
                (amounts[event_id] for event_id in recorded.recorded), Decimal(0)
            )
            if on_tenant is not None:
                on_tenant(tenant_id)
        logger.info(
            "month re-rated",
            extra={
                "month": month,
                "catalog_version": catalog.version,
                "entries": result.entries,
                "recorded": len(result.recorded),
                "failed": len(result.failed),
                "unpriced": len(result.unpriced),
            },
        )
        return result

    def entries(self, tenant_id: str, month: str) -> list[dict[str, Any]]:
        """Return the tenant's entries whose event time may be billed in `month`.

        That is every entry from the start of the adjustment lookback to the month's end, with
        the re-ratings of those entries, whatever month they were billed in.
        """
        # NOTE: the by-event-time index is eventually consistent, so an entry written seconds
        # before the run can be missed. It is then re-rated by the next run.
        start = months_before(month, ADJUSTMENT_LOOKBACK_MONTHS) + "-01T00:00:00"
        end = month_days(month)[-1] + "T23:59:59.999999Z"
        return list(
            self._pages(
                TableName=self._ledger_table,
                IndexName=LEDGER_INDEX,
                KeyConditionExpression="tenant_id = :tenant AND event_time BETWEEN :start AND :end",
                ExpressionAttributeValues={
                    ":tenant": {"S": tenant_id},
                    ":start": {"S": start},
                    ":end": {"S": end},
                },
            )
        )

    def _pages(self, **arguments: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._client.query(**arguments)
            for item in page["Items"]:
                yield {name: _deserializer.deserialize(value) for name, value in item.items()}
            if "LastEvaluatedKey" not in page:
                return
            arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]
