"""The priced ledger and per-tenant, per-tier totals in DynamoDB, written exactly once.

Each rated event becomes one ledger entry keyed by (tenant_id, event_id), and every total it
touches is updated in the same TransactWriteItems call. The ledger put is conditional on the
entry not existing, so a duplicate delivery cancels the transaction before any total moves:

    deliver e1 -> [put ledger(e1) if absent, add totals]   -> committed
    deliver e1 -> [put ledger(e1) if absent, ...]           -> ConditionalCheckFailed on e1,
                                                               nothing applied; e1 is dropped
                                                               and the rest is retried

Totals of one batch are summed per item before writing, so a batch of events updates each
total item once. Tier totals are spread over `TIER_SHARDS` items per period, because every
event of a tier would otherwise write to one item and hit DynamoDB's per-partition write rate.

Totals are kept by billing month. An event is billed in the month of its event time (UTC)
unless that month's report is issued (see `agentpool.billing_periods`). Then it is billed in
the first open month as an adjustment. Its ledger entry keeps its event time, has the billing
month as `month` and names the original month in `adjustment_of_month`. Its amount goes to
the billing month's totals and to a `month#<billing month>#adjustment#<original month>` item,
and no total of the issued month moves. Each update of a tier shard's month total is
conditional on that item carrying no issued mark (`agentpool.billing_periods`), so a
transaction checks that the months it bills are open on items it writes anyway, and no item is
read or written by every transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from agentpool.billing_periods import (
    NOT_ISSUED_CONDITION,
    BillingPeriods,
    billing_month,
    issued_key,
    issued_mark_key,
)
from agentpool.budget import HELD_EVENT_TYPES, release_holds
from agentpool.events import (
    InvocationCompleted,
    MemoryUsage,
    ModelUsage,
    RequestThrottled,
    RuntimeUsage,
    ToolInvoked,
)
from agentpool.pricing.rating import RatedEvent
from agentpool.tier_shards import tier_partition, tier_shard_of

logger = logging.getLogger(__name__)

# DynamoDB accepts at most 100 actions in one TransactWriteItems call.
MAX_TRANSACTION_ITEMS = 100
MAX_ATTEMPTS = 4
# How often one `record` call re-reads the issued months after a month became issued under it.
MAX_PERIOD_REFRESHES = 3

_serializer = TypeSerializer()


def month_of(event: RatedEvent) -> str:
    return event.event.event_time.strftime("%Y-%m")


def day_of(event: RatedEvent) -> str:
    return event.event.event_time.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Posting:
    """A rated event with the month whose totals it adds to."""

    rated: RatedEvent
    billing_month: str

    @property
    def event_id(self) -> str:
        return self.rated.event.event_id

    @property
    def adjustment_of_month(self) -> str | None:
        """The event's own month when it is billed in a later month, else None."""
        event_month = month_of(self.rated)
        return event_month if event_month != self.billing_month else None


def _counters(rated: RatedEvent) -> tuple[dict[str, Decimal], tuple[str, str] | None]:
    """Return the counters an event adds and its breakdown (kind, name), if it has one."""
    event = rated.event
    if rated.rerate_of is not None:
        # A re-rating changes only the amount of an event that is already counted.
        return {"cost_usd": rated.amount_usd, "rerate_usd": rated.amount_usd}, _breakdown(rated)
    counters: dict[str, Decimal] = {"events": Decimal(1), "cost_usd": rated.amount_usd}
    if not rated.priced:
        counters["unpriced_events"] = Decimal(1)
    if isinstance(event, InvocationCompleted):
        counters["invocations"] = Decimal(1)
        if event.status == "failed":
            counters["failed_invocations"] = Decimal(1)
    elif isinstance(event, ModelUsage):
        usage = event.usage
        counters["model_calls"] = Decimal(event.model_calls)
        counters["input_tokens"] = Decimal(usage.input_tokens)
        counters["output_tokens"] = Decimal(usage.output_tokens)
        counters["cache_read_tokens"] = Decimal(usage.cache_read_tokens)
        counters["cache_write_tokens"] = Decimal(
            usage.cache_write_5m_tokens + usage.cache_write_1h_tokens
        )
    elif isinstance(event, ToolInvoked):
        counters["tool_denials" if event.decision == "denied" else "tool_calls"] = Decimal(1)
    elif isinstance(event, RuntimeUsage):
        counters["runtime_vcpu_seconds"] = event.vcpu_seconds
        counters["runtime_memory_gb_seconds"] = event.memory_gb_seconds
    elif isinstance(event, MemoryUsage):
        counters["memory_events"] = Decimal(event.events)
    elif isinstance(event, RequestThrottled):
        counters["throttled_requests"] = Decimal(1)
    counters = {name: value for name, value in counters.items() if value or name == "events"}
    return counters, _breakdown(rated)


def _breakdown(rated: RatedEvent) -> tuple[str, str] | None:
    event = rated.event
    if isinstance(event, ModelUsage):
        return ("model", event.model_id)
    if isinstance(event, ToolInvoked):
        return ("tool", event.tool)
    if isinstance(event, RuntimeUsage):
        return ("runtime", "agentcore")
    if isinstance(event, MemoryUsage):
        return ("memory", "agentcore")
    return None


def totals_for(
    rated: RatedEvent, billed_in: str | None = None
) -> dict[tuple[str, str], dict[str, Decimal]]:
    """Return the counters that `rated` adds, keyed by the (pk, sk) of each totals item.

    `billed_in` is the billing month (YYYY-MM), by default the month of the event time. The
    tenant's month item also gets `committed_usd`, which budget reservations add to.
    """
    event = rated.event
    counters, breakdown = _counters(rated)
    event_month = month_of(rated)
    month = billed_in or event_month
    tenant, tier_pk = event.tenant_id, tier_partition(event.tier, tier_shard_of(event.event_id))
    keys = [
        (tenant, f"month#{month}"),
        (tenant, f"month#{month}#user#{event.user_id}"),
        (tier_pk, f"month#{month}"),
    ]
    if month == event_month:
        keys += [(tenant, f"day#{day_of(rated)}"), (tier_pk, f"day#{day_of(rated)}")]
    else:
        counters["adjustment_usd"] = rated.amount_usd
        keys += [
            (tenant, f"month#{month}#adjustment#{event_month}"),
            (tier_pk, f"month#{month}#adjustment#{event_month}"),
        ]
    if breakdown:
        kind, name = breakdown
        keys.append((tenant, f"month#{month}#{kind}#{name}"))
        keys.append((tier_pk, f"month#{month}#{kind}#{name}"))
    # Each key gets its own dict, so a caller that changes one total cannot change another.
    totals = {key: dict(counters) for key in keys}
    totals[(tenant, f"month#{month}")]["committed_usd"] = rated.amount_usd
    return totals


def ledger_item(rated: RatedEvent, billed_in: str | None = None) -> dict[str, Any]:
    """Build the ledger entry of `rated`, billed in `billed_in` (YYYY-MM, default its month).

    `month` is the billing month, which the monthly report reads. An entry billed after its
    own month names that month in `adjustment_of_month`; `event_time` and `day` stay its own.
    """
    event = rated.event
    month = month_of(rated)
    item: dict[str, Any] = {
        "tenant_id": event.tenant_id,
        "event_id": event.event_id,
        "event_time": event.event_time.isoformat().replace("+00:00", "Z"),
        "month": billed_in or month,
        "day": day_of(rated),
        "tier": event.tier,
        "user_id": event.user_id,
        "request_id": event.request_id,
        "detail_type": getattr(event, "detail_type", type(event).__name__),
        "item": rated.item,
        "amount_usd": rated.amount_usd,
        "priced": rated.priced,
        "catalog_version": rated.catalog_version,
        "quantities": rated.quantities,
        "unit_prices": rated.unit_prices,
        # The whole event, so that `agentpool rerate` can price it again. Metering events
        # contain ids and quantities only, never prompts or answers.
        "event": event.model_dump_json(),
    }
    if billed_in and billed_in != month:
        item["adjustment_of_month"] = month
    if rated.unpriced_reason:
        item["unpriced_reason"] = rated.unpriced_reason
    if rated.rerate_of:
        item["rerate_of"] = rated.rerate_of
    return item


@dataclass
class RecordResult:
    """Event ids of one `Ledger.record` call: newly recorded, already recorded, or failed."""

    recorded: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # The billing month (YYYY-MM) of each recorded event.
    billed_in: dict[str, str] = field(default_factory=dict)


class Ledger:
    """Write rated events to the ledger and totals tables exactly once."""

    def __init__(self, dynamodb_client: Any, ledger_table: str, totals_table: str) -> None:
        self._client = dynamodb_client
        self._ledger_table = ledger_table
        self._totals_table = totals_table
        self.periods = BillingPeriods(dynamodb_client, totals_table)
        self.transactions = 0

    def record(self, events: Iterable[RatedEvent]) -> RecordResult:
        """Record each distinct event once; report which were new, duplicates or failed.

        An event is `failed` when its transaction was still throttled or in conflict after
        `MAX_ATTEMPTS`, or when DynamoDB rejected its own ledger entry. Other errors (a missing
        table, denied access) are raised, because they fail every event alike.
        """
        result = RecordResult()
        distinct: dict[str, RatedEvent] = {}
        for rated in events:
            if rated.event.event_id in distinct:
                result.duplicates.append(rated.event.event_id)
            else:
                distinct[rated.event.event_id] = rated
        if not distinct:
            return result
        issued = self.periods.issued_months()
        postings = [Posting(r, billing_month(month_of(r), issued)) for r in distinct.values()]
        for chunk in _chunks(postings):
            self._record_chunk(chunk, result)
        return result

    def _record_chunk(self, chunk: list[Posting], result: RecordResult) -> None:
        pending = list(chunk)
        failed_attempts = 0
        refreshes = 0
        while pending:
            try:
                self._transact(pending)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
                duplicates = {
                    pending[index].event_id
                    for index, reason in enumerate(reasons[: len(pending)])
                    if reason == "ConditionalCheckFailed"
                }
                if duplicates:
                    # Dropping duplicates shrinks `pending`, so it needs no attempt of its own.
                    result.duplicates.extend(sorted(duplicates))
                    pending = [p for p in pending if p.event_id not in duplicates]
                    continue
                if "ConditionalCheckFailed" in reasons and refreshes < MAX_PERIOD_REFRESHES:
                    # A billed month was issued after this call read the issued months, or a
                    # hold expired after it was read, so the chunk is billed again, in the
                    # months that are open now and against the holds as they are now.
                    refreshes += 1
                    pending = self._rebill(pending)
                    continue
                if code in _ITEM_ERROR_CODES or "ValidationError" in reasons:
                    self._split_and_record(pending, result, code)
                    return
                if code != "TransactionCanceledException" and not _is_retryable(code):
                    raise
                failed_attempts += 1
                if failed_attempts == MAX_ATTEMPTS:
                    break
                logger.warning(
                    "ledger transaction failed, retrying",
                    extra={"attempt": failed_attempts, "error_code": code, "reasons": reasons},
                )
                time.sleep(0.05 * 2**failed_attempts)
                continue
            result.recorded.extend(p.event_id for p in pending)
            result.billed_in.update((p.event_id, p.billing_month) for p in pending)
            return
        result.failed.extend(p.event_id for p in pending)

    def _rebill(self, postings: list[Posting]) -> list[Posting]:
        issued = self.periods.issued_months()
        logger.info(
            "billing month issued or hold changed during a batch, rebilling",
            extra={"issued": len(issued)},
        )
        return [Posting(p.rated, billing_month(month_of(p.rated), issued)) for p in postings]

    def _split_and_record(
        self, postings: list[Posting], result: RecordResult, code: str | None
    ) -> None:
        """Record halves of a transaction that DynamoDB rejected for one of its items.

        Halving isolates the rejected event in about 2 * log2(len(postings)) more calls, so one
        bad event fails alone instead of taking its whole batch to the dead-letter queue.
        """
        if len(postings) == 1:
            logger.warning(
                "ledger entry rejected",
                extra={"event_id": postings[0].event_id, "error_code": code},
            )
            result.failed.append(postings[0].event_id)
            return
        middle = len(postings) // 2
        self._record_chunk(postings[:middle], result)
        self._record_chunk(postings[middle:], result)

    def _transact(self, postings: Sequence[Posting]) -> None:
        # Ledger puts come first, so cancellation reason i belongs to postings[i].
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._ledger_table,
                    "Item": _serialize(ledger_item(p.rated, p.billing_month)),
                    "ConditionExpression": "attribute_not_exists(event_id)",
                }
            }
            for p in postings
        ]
        # The tier shard month total that each event adds to carries the issued mark of its
        # month, so the update checks it. Only a tier without marks needs the month item.
        marked = {_mark_of(p) for p in postings} - {None}
        unmarked_months = {p.billing_month for p in postings if _mark_of(p) is None}
        for month in sorted(unmarked_months):
            actions.append(
                {
                    "ConditionCheck": {
                        "TableName": self._totals_table,
                        "Key": _serialize(issued_key(month)),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        totals = _sum_totals(postings)
        # Hard-capped requests' holds shrink by what this transaction records (agentpool.budget).
        hold_actions = release_holds(
            self._client,
            self._totals_table,
            (p.rated.event for p in postings if p.rated.rerate_of is None),
            totals,
        )
        for (pk, sk), counters in totals.items():
            names = {f"#c{i}": name for i, name in enumerate(sorted(counters))}
            values = {f":c{i}": counters[name] for i, name in enumerate(sorted(counters))}
            update: dict[str, Any] = {
                "TableName": self._totals_table,
                "Key": _serialize({"pk": pk, "sk": sk}),
                "UpdateExpression": _add_expression(names),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": _serialize(values),
            }
            if (pk, sk) in marked:
                update["ConditionExpression"] = NOT_ISSUED_CONDITION
            actions.append({"Update": update})
        self._client.transact_write_items(
            TransactItems=actions + hold_actions,
            # The same token within 10 minutes makes DynamoDB apply the transaction once, so a
            # retry after a timeout whose first call had committed does not double the totals.
            ClientRequestToken=_request_token(postings, hold_actions),
        )
        self.transactions += 1


def _mark_of(posting: Posting) -> tuple[str, str] | None:
    event = posting.rated.event
    return issued_mark_key(event.tier, event.event_id, posting.billing_month)


def _add_expression(names: dict[str, str]) -> str:
    return "ADD " + ", ".join(f"{name} {name.replace('#', ':')}" for name in names)


def _serialize(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in values.items()}


def _sum_totals(postings: Iterable[Posting]) -> dict[tuple[str, str], dict[str, Decimal]]:
    summed: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(dict)
    for posting in postings:
        for key, counters in totals_for(posting.rated, posting.billing_month).items():
            target = summed[key]
            for name, value in counters.items():
                target[name] = target.get(name, Decimal(0)) + value
    return summed


def _chunks(postings: list[Posting]) -> Iterable[list[Posting]]:
    """Group postings so that each group's puts, checks and updates fit one transaction.

    The condition check of a billing month, needed only for a tier without issued marks, is
    counted like a totals item, under a key that no totals item has, and so is the hold that
    a hard-capped request's event may shrink (agentpool.budget.release_holds).
    """
    chunk: list[Posting] = []
    keys: set[tuple[str, str]] = set()
    for posting in postings:
        own_keys = set(totals_for(posting.rated, posting.billing_month))
        if _mark_of(posting) is None:
            own_keys.add(("#check", posting.billing_month))
        event = posting.rated.event
        if isinstance(event, HELD_EVENT_TYPES):
            own_keys.add(("#hold", f"{event.tenant_id}/{event.request_id}"))
        new_keys = own_keys - keys
        if chunk and len(chunk) + 1 + len(keys) + len(new_keys) > MAX_TRANSACTION_ITEMS:
            yield chunk
            chunk, keys = [], set()
            new_keys = own_keys
        chunk.append(posting)
        keys |= new_keys
    if chunk:
        yield chunk


def _request_token(postings: Sequence[Posting], hold_actions: Sequence[Any] = ()) -> str:
    # The billing months and hold updates are part of the token: a chunk billed again in
    # another month, or again after a hold expired, is a different transaction, which
    # DynamoDB would reject under the first one's token.
    text = "|".join(f"{p.event_id}@{p.billing_month}" for p in postings)
    if hold_actions:
        text += "|" + json.dumps(hold_actions, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:36]


# Errors caused by the content of one item rather than by the table or by load. Retrying the
# same transaction would fail the same way, so the ledger splits it to find the item.
_ITEM_ERROR_CODES = frozenset({"ValidationException", "IdempotentParameterMismatchException"})


def _is_retryable(code: str | None) -> bool:
    return code in {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "TransactionInProgressException",
    }
