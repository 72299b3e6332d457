"""Monthly budgets per tenant: threshold alerts, and an optional hard cap with reservations.

Both work on the tenant's month totals item (pk tenant id, sk `month#YYYY-MM`) and its
`committed_usd` attribute. The ledger adds every recorded amount to it. A hard-capped request
adds its worst-case cost while it runs, and the actual cost of its own priced events from
its end until the ledger records those events:

    committed_usd = recorded amounts of the month + open reservations + holds

DynamoDB condition expressions cannot add, so `spent + reserved + held + worst_case <= budget`
is checked as `committed_usd <= budget - worst_case`, with the right side computed here. One
conditional update admits or rejects a request, so concurrent requests never overdraw.

Each request has one item, pk tenant id and sk `reservation#<request id>`, whose `state` goes

    open (worst case reserved) -> held (actual cost of events not yet recorded) or settled
    open or held, older than its timeout -> expired (amount removed from committed_usd)

The ledger removes a hold's events from the hold in the transaction that records them
(`release_holds`), so no amount is in both or in neither.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from agentpool.agent_contract import (
    CONTEXT_BYTES,
    MAX_MEMORY_EVENTS,
    MAX_MODEL_CALLS,
    MAX_OUTPUT_TOKENS,
    max_tool_calls,
)
from agentpool.errors import ThrottledError
from agentpool.events import MemoryUsage, MeteringEvent, ModelUsage, stable_event_id
from agentpool.pricing.catalog import MILLION, THOUSAND, PriceCatalog, UnpricedError
from agentpool.tiers import TIERS, TierConfig, Tool

logger = logging.getLogger(__name__)

# Alert thresholds in percent of the monthly budget.
ALERT_THRESHOLDS = (80, 100)
# A claimed alert that was not marked sent within this time is claimed again and re-sent,
# because the aggregator that claimed it may have crashed before it published the alert.
ALERT_CLAIM_TIMEOUT = timedelta(minutes=5)
# A source of its own, so that the metering rule never sends the alert to the aggregator.
BUDGET_EVENT_SOURCE = "agentpool.budgets"
BUDGET_DETAIL_TYPE = "Budget Threshold Crossed"
# An open reservation older than this belongs to an invoke function that was stopped before it
# settled (its timeout is 29 s), so an admission that does not fit expires it.
RESERVATION_TIMEOUT = timedelta(minutes=5)
# A hold older than this belongs to events that were never published or never recorded. The
# metering queue redelivers a message for 3 x 180 s before the dead-letter queue takes it, so
# events that are recorded at all are recorded within about 10 minutes.
HOLD_TIMEOUT = timedelta(minutes=15)
# Hard-capped requests' own events that a hold covers: the ones the invoke function publishes.
HELD_EVENT_TYPES = (ModelUsage, MemoryUsage)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _number(value: Decimal) -> dict[str, str]:
    """Serialize an amount without trailing zeros or an exponent, such as 0.03 for 0.030000."""
    if value == value.to_integral_value():
        return {"N": str(value.quantize(Decimal(1)))}
    return {"N": format(value.normalize(), "f")}


class BudgetExceededError(ThrottledError):
    """The request's worst-case cost does not fit in what is left of the monthly budget.

    HTTP 429 with code `budget_exhausted`, as API Gateway responds when a usage plan's quota is
    used up. Retry-After is the time until the next UTC month. A retry can succeed sooner when
    requests in flight settle their reservations or the budget is raised.
    """

    code = "budget_exhausted"

    def __init__(self, message: str, now: datetime | None = None) -> None:
        super().__init__(message, seconds_until_next_month(now or datetime.now(UTC)))


def seconds_until_next_month(now: datetime) -> int:
    """Return the whole seconds from `now` to 00:00 UTC on the 1st of the next month, at least 1."""
    now = now.astimezone(UTC)
    index = now.year * 12 + now.month  # the next month, counted from January of year 0
    start = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    return max(1, math.ceil((start - now).total_seconds()))


@dataclass(frozen=True)
class WorstCase:
    """The bound on one request's cost that a hard-capped tenant reserves.

    The defaults are the agent's enforced limits (`agentpool.agent_contract`). Each of at
    most `max_model_calls` Converse requests has at most the prompt's UTF-8 bytes plus
    `context_bytes` of input (no tokenizer in use emits more than one token per byte) and
    writes at most `max_output_tokens`. The agent runs at most `max_tool_calls` Gateway tool
    calls, each of which may be a web search query when the tier has web search, and creates
    at most `max_memory_events` Memory events.
    """

    # NOTE: AgentCore Runtime vCPU and memory, billed from the runtime's usage logs, are not
    # in the bound, so a hard-capped tenant can exceed its budget by its runtime usage.

    max_model_calls: int = MAX_MODEL_CALLS
    context_bytes: int = CONTEXT_BYTES
    max_output_tokens: int = MAX_OUTPUT_TOKENS
    max_tool_calls: int = field(default_factory=max_tool_calls)
    max_memory_events: int = MAX_MEMORY_EVENTS

    def input_tokens(self, prompt: str) -> int:
        return self.max_model_calls * (len(prompt.encode("utf-8")) + self.context_bytes)

    def output_tokens(self) -> int:
        return self.max_model_calls * self.max_output_tokens

    def costliest_tools(self, tier: TierConfig) -> list[Tool]:
        """Return the tools of the most expensive allowed calls that one request can make."""
        # A web search call also runs one query, so it costs the most of the tier's tools.
        costliest = Tool.WEB_SEARCH if Tool.WEB_SEARCH in tier.tools else Tool.DOCUMENT_SEARCH
        return [costliest] * self.max_tool_calls

    def cost(self, prompt: str, catalog: PriceCatalog, tier: TierConfig, when: datetime) -> Decimal:
        """Return the worst-case USD cost of `prompt` on `tier` at the prices at `when`.

        Raises UnpricedError when the tier's model has no price. Without a Gateway, web search
        or Memory price, those events are recorded at 0, so they add 0 here too.
        """
        prices = catalog.model_price(tier.model_id, when).usd_per_million
        cost = (
            Decimal(self.input_tokens(prompt)) * prices.input
            + Decimal(self.output_tokens()) * prices.output
        ) / MILLION
        cost += tool_calls_cost(catalog, self.costliest_tools(tier), when)
        try:
            per_event = catalog.memory_price(when).usd_per_thousand_events
            cost += Decimal(self.max_memory_events) * per_event / THOUSAND
        except UnpricedError:
            pass
        return cost


def tool_calls_cost(catalog: PriceCatalog, tools: Iterable[Tool], when: datetime) -> Decimal:
    """Return the USD cost of allowed Gateway calls of `tools` at the prices at `when`.

    Each call costs one Gateway invocation, and a web search also one query. A price that the
    catalog lacks adds 0, as the rating records such an event unpriced at 0.
    """
    cost = Decimal(0)
    for tool in tools:
        with suppress(UnpricedError):
            cost += catalog.gateway_price(when).usd_per_thousand_invocations / THOUSAND
        if tool is Tool.WEB_SEARCH:
            with suppress(UnpricedError):
                cost += catalog.web_search_price(when).usd_per_thousand_queries / THOUSAND
    return cost


def month_key(tenant_id: str, month: str) -> dict[str, Any]:
    return {"pk": {"S": tenant_id}, "sk": {"S": f"month#{month}"}}


def reservation_key(tenant_id: str, request_id: str) -> dict[str, Any]:
    return {"pk": {"S": tenant_id}, "sk": {"S": f"reservation#{request_id}"}}


def current_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    month: str
    request_id: str
    amount_usd: Decimal


class BudgetGuard:
    """Reserve a request's worst-case cost before the model call and settle it afterwards."""

    def __init__(self, dynamodb_client: Any, totals_table: str) -> None:
        self._client = dynamodb_client
        self._table = totals_table

    def reserve(
        self,
        tenant_id: str,
        request_id: str,
        worst_case_usd: Decimal,
        budget_usd: Decimal,
        now: datetime | None = None,
    ) -> Reservation:
        """Reserve `worst_case_usd` of the tenant's current month.

        Raises BudgetExceededError when recorded amounts plus open reservations plus holds
        plus this one would exceed `budget_usd`, after expiring the tenant's reservations and
        holds that are past their timeout. A retried reserve with the same request id returns
        the reservation it already holds instead of reserving twice.
        """
        now = now or datetime.now(UTC)
        month = now.strftime("%Y-%m")
        if budget_usd - worst_case_usd < 0:
            raise BudgetExceededError("The request's worst-case cost exceeds the monthly budget.")
        reservation = Reservation(tenant_id, month, request_id, worst_case_usd)
        if self._try_reserve(reservation, budget_usd, now):
            return reservation
        if self.expire_stale(tenant_id, now) and self._try_reserve(reservation, budget_usd, now):
            return reservation
        raise BudgetExceededError(
            "The monthly budget does not cover this request's worst-case cost."
        )

    def _try_reserve(self, reservation: Reservation, budget_usd: Decimal, now: datetime) -> bool:
        """Reserve in one transaction; return False when the budget does not cover it."""
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": month_key(reservation.tenant_id, reservation.month),
                            "UpdateExpression": "ADD committed_usd :w, reserved_usd :w",
                            "ConditionExpression": (
                                "attribute_not_exists(committed_usd) OR committed_usd <= :limit"
                            ),
                            "ExpressionAttributeValues": {
                                ":w": _number(reservation.amount_usd),
                                ":limit": _number(budget_usd - reservation.amount_usd),
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                **reservation_key(reservation.tenant_id, reservation.request_id),
                                "state": {"S": "open"},
                                "month": {"S": reservation.month},
                                "amount_usd": _number(reservation.amount_usd),
                                "reserved_at": {"S": now.isoformat()},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return True  # reserved by an earlier attempt of the same request
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            raise
        return True

    def settle(
        self,
        reservation: Reservation,
        held_usd: dict[str, Decimal],
        now: datetime | None = None,
        unmatched_usd: Decimal = Decimal(0),
    ) -> bool:
        """Replace an open reservation by a hold of the actual cost of the request's events.

        `held_usd` maps the event id of each priced event that the request will publish to
        its amount; publish them only after this returns. The ledger removes each event's
        amount from the hold when it records the event. `unmatched_usd` is cost whose events
        the ledger cannot match to this hold: the request's Gateway tool calls, whose events
        carry the interceptor's request ids. It stays in the hold until the hold expires
        (HOLD_TIMEOUT), so it counts twice once those events are recorded, which admits less,
        never more. Returns False when the reservation was no longer open (settled already,
        or expired).
        """
        now = now or datetime.now(UTC)
        amounts = {event_id: amount for event_id, amount in held_usd.items() if amount > 0}
        total = sum(amounts.values(), Decimal(0)) + unmatched_usd
        values: dict[str, Any] = {
            ":open": {"S": "open"},
            ":state": {"S": "held" if total > 0 else "settled"},
            ":held": _number(total),
            ":at": {"S": now.isoformat()},
        }
        expression = "SET #state = :state, held_usd = :held, held_at = :at"
        if amounts:
            expression += ", pending_usd = :pending"
            values[":pending"] = _serializer.serialize(amounts)
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": reservation_key(reservation.tenant_id, reservation.request_id),
                            "UpdateExpression": expression,
                            "ConditionExpression": "#state = :open",
                            "ExpressionAttributeNames": {"#state": "state"},
                            "ExpressionAttributeValues": values,
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": month_key(reservation.tenant_id, reservation.month),
                            "UpdateExpression": (
                                "ADD committed_usd :change, reserved_usd :unreserve, held_usd :held"
                            ),
                            "ExpressionAttributeValues": {
                                ":change": _number(total - reservation.amount_usd),
                                ":unreserve": _number(-reservation.amount_usd),
                                ":held": _number(total),
                            },
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            raise
        return True

    def expire_stale(self, tenant_id: str, now: datetime | None = None) -> int:
        """Expire the tenant's open reservations and holds past their timeouts.

        Each expiry removes the item's remaining amount from `committed_usd` on condition that
        the item is unchanged since it was read, so an expiry never races the ledger's
        removal of a hold. Events of an expired hold that arrive later are recorded like any
        other. Returns the number of items expired.
        """
        now = now or datetime.now(UTC)
        expired = 0
        for item in self._unfinished(tenant_id):
            if self._expire(tenant_id, item, now):
                expired += 1
        return expired

    def _unfinished(self, tenant_id: str) -> Iterable[dict[str, Any]]:
        """Yield the tenant's open and held reservation items."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "#state IN (:open, :held)",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":pk": {"S": tenant_id},
                ":prefix": {"S": "reservation#"},
                ":open": {"S": "open"},
                ":held": {"S": "held"},
            },
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _expire(self, tenant_id: str, item: dict[str, Any], now: datetime) -> bool:
        state = item["state"]["S"]
        if state == "open":
            started, timeout, remaining = "reserved_at", RESERVATION_TIMEOUT, "amount_usd"
        else:
            started, timeout, remaining = "held_at", HOLD_TIMEOUT, "held_usd"
        if datetime.fromisoformat(item[started]["S"]) > now - timeout:
            return False
        amount: Decimal = _deserializer.deserialize(item[remaining])
        month_change = "ADD committed_usd :minus, reserved_usd :minus"
        if state == "held":
            month_change = "ADD committed_usd :minus, held_usd :minus"
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": item["pk"], "sk": item["sk"]},
                            "UpdateExpression": "SET #state = :expired REMOVE pending_usd",
                            "ConditionExpression": "#state = :state AND #remaining = :amount",
                            "ExpressionAttributeNames": {
                                "#state": "state",
                                "#remaining": remaining,
                            },
                            "ExpressionAttributeValues": {
                                ":expired": {"S": "expired"},
                                ":state": {"S": state},
                                ":amount": _number(amount),
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": month_key(tenant_id, item["month"]["S"]),
                            "UpdateExpression": month_change,
                            "ExpressionAttributeValues": {":minus": _number(-amount)},
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False  # changed since it was read: settled or partly recorded
            raise
        logger.warning(
            "budget reservation expired",
            extra={
                "tenant_id": tenant_id,
                "reservation": item["sk"]["S"],
                "state": state,
            },
        )
        return True


def held_amounts(rated: Iterable[Any]) -> dict[str, Decimal]:
    """Return the event id and amount of each rated event that a hold covers."""
    return {
        r.event.event_id: r.amount_usd
        for r in rated
        if isinstance(r.event, HELD_EVENT_TYPES) and r.rerate_of is None
    }


def release_holds(
    client: Any,
    totals_table: str,
    events: Iterable[MeteringEvent],
    totals: dict[tuple[str, str], dict[str, Decimal]],
) -> list[dict[str, Any]]:
    """Return the transaction actions that remove `events` from their requests' holds.

    The ledger calls this with the events of one transaction and its summed `totals`, to
    which the hold's month item gets `-amount` of `committed_usd` and `held_usd`. Each
    action is conditional on the hold still being held and still pending each event, so an
    expiry in between cancels the transaction, and the ledger retries it.
    """
    by_hold: dict[tuple[str, str], list[str]] = {}
    for event in events:
        if isinstance(event, HELD_EVENT_TYPES):
            by_hold.setdefault((event.tenant_id, event.request_id), []).append(event.event_id)
    if not by_hold:
        return []
    actions: list[dict[str, Any]] = []
    for (tenant_id, request_id), item in _read_holds(client, totals_table, by_hold).items():
        pending = _deserializer.deserialize(item["pending_usd"])
        event_ids = [e for e in by_hold[(tenant_id, request_id)] if e in pending]
        if not event_ids:
            continue
        amount = sum((Decimal(pending[e]) for e in event_ids), Decimal(0))
        month_totals = totals.setdefault((tenant_id, f"month#{item['month']['S']}"), {})
        for counter in ("committed_usd", "held_usd"):
            # A zero with an exponent (0E-12) is written as plain 0.
            month_totals[counter] = (month_totals.get(counter, Decimal(0)) - amount) or Decimal(0)
        names = {"#state": "state", **{f"#e{i}": e for i, e in enumerate(event_ids)}}
        actions.append(
            {
                "Update": {
                    "TableName": totals_table,
                    "Key": reservation_key(tenant_id, request_id),
                    "UpdateExpression": "REMOVE "
                    + ", ".join(f"pending_usd.#e{i}" for i in range(len(event_ids)))
                    + " ADD held_usd :minus",
                    "ConditionExpression": "#state = :held AND "
                    + " AND ".join(
                        f"attribute_exists(pending_usd.#e{i})" for i in range(len(event_ids))
                    ),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {
                        ":held": {"S": "held"},
                        ":minus": _number(-amount),
                    },
                }
            }
        )
    return actions


def _read_holds(
    client: Any, totals_table: str, requests: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Read the reservation items of `requests` (tenant id, request id) that are held."""
    keys = [reservation_key(tenant_id, request_id) for tenant_id, request_id in requests]
    holds: dict[tuple[str, str], dict[str, Any]] = {}
    # BatchGetItem takes at most 100 keys.
    for start in range(0, len(keys), 100):
        request: dict[str, Any] = {
            totals_table: {"Keys": keys[start : start + 100], "ConsistentRead": True}
        }
        while request:
            page = client.batch_get_item(RequestItems=request)
            for item in page.get("Responses", {}).get(totals_table, []):
                if item.get("state", {}).get("S") == "held" and "pending_usd" in item:
                    request_id = item["sk"]["S"].removeprefix("reservation#")
                    holds[(item["pk"]["S"], request_id)] = item
            request = page.get("UnprocessedKeys") or {}
    return holds


@dataclass(frozen=True)
class ThresholdCrossing:
    tenant_id: str
    month: str
    threshold_percent: int
    spent_usd: Decimal
    budget_usd: Decimal


def crossed_thresholds(
    tenant_id: str, month: str, spent_usd: Decimal, budget_usd: Decimal
) -> list[ThresholdCrossing]:
    """Return the alert thresholds that `spent_usd` has reached in `month`."""
    return [
        ThresholdCrossing(tenant_id, month, percent, spent_usd, budget_usd)
        for percent in ALERT_THRESHOLDS
        if spent_usd * 100 >= budget_usd * percent
    ]


class BudgetAlerts:
    """Send each threshold alert once per tenant and month, through a claim in DynamoDB."""

    def __init__(self, dynamodb_client: Any, totals_table: str, publish: Any) -> None:
        """`publish(crossing)` sends one alert; it raises when the alert was not sent."""
        self._client = dynamodb_client
        self._table = totals_table
        self._publish = publish

    def spent(self, tenant_id: str, month: str) -> Decimal:
        item = self._client.get_item(
            TableName=self._table, Key=month_key(tenant_id, month), ConsistentRead=True
        ).get("Item", {})
        if "cost_usd" not in item:
            return Decimal(0)
        value: Decimal = _deserializer.deserialize(item["cost_usd"])
        return value

    def check(self, tenant_id: str, month: str, budget_usd: Decimal) -> list[ThresholdCrossing]:
        """Send the alerts of every threshold the tenant's month has reached and not yet sent.

        Returns the alerts sent by this call.
        """
        sent: list[ThresholdCrossing] = []
        spent = self.spent(tenant_id, month)
        for crossing in crossed_thresholds(tenant_id, month, spent, budget_usd):
            if not self._claim(crossing):
                continue
            self._publish(crossing)
            self._mark_sent(crossing)
            sent.append(crossing)
        return sent

    def _alert_key(self, crossing: ThresholdCrossing) -> dict[str, Any]:
        return {
            "pk": {"S": crossing.tenant_id},
            "sk": {"S": f"budget-alert#{crossing.month}#{crossing.threshold_percent}"},
        }

    def _claim(self, crossing: ThresholdCrossing) -> bool:
        now = datetime.now(UTC)
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **self._alert_key(crossing),
                    "state": {"S": "claimed"},
                    "claimed_at": {"S": now.isoformat()},
                    "spent_usd": _serializer.serialize(crossing.spent_usd),
                    "budget_usd": _serializer.serialize(crossing.budget_usd),
                },
                ConditionExpression=(
                    "attribute_not_exists(pk) OR (#state = :claimed AND claimed_at < :stale)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":claimed": {"S": "claimed"},
                    ":stale": {"S": (now - ALERT_CLAIM_TIMEOUT).isoformat()},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _mark_sent(self, crossing: ThresholdCrossing) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=self._alert_key(crossing),
            UpdateExpression="SET #state = :sent",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":sent": {"S": "sent"}},
        )


class BudgetThresholdCrossed(BaseModel):
    """A tenant's billed amount of a month reached a threshold of its budget. Not metered.

    The event id is the same for the same tenant, month and threshold, so a consumer can drop
    the repeat that a re-sent claim produces.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    detail_type: Literal["Budget Threshold Crossed"] = "Budget Threshold Crossed"
    event_id: str
    event_time: AwareDatetime
    tenant_id: str
    month: str = Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    threshold_percent: int
    spent_usd: Decimal
    budget_usd: Decimal


def alert_entry(crossing: ThresholdCrossing, bus_name: str) -> dict[str, Any]:
    """Build the PutEvents entry of the alert for `crossing` on the bus `bus_name`."""
    key = f"budget/{crossing.tenant_id}/{crossing.month}"
    event = BudgetThresholdCrossed(
        event_id=stable_event_id(key, "threshold", crossing.threshold_percent),
        event_time=datetime.now(UTC),
        tenant_id=crossing.tenant_id,
        month=crossing.month,
        threshold_percent=crossing.threshold_percent,
        spent_usd=crossing.spent_usd,
        budget_usd=crossing.budget_usd,
    )
    return {
        "Source": BUDGET_EVENT_SOURCE,
        "DetailType": BUDGET_DETAIL_TYPE,
        "Detail": event.model_dump_json(),
        "EventBusName": bus_name,
        "Time": event.event_time,
    }


def monthly_budget(tenant_item: dict[str, Any] | None, tier: str) -> Decimal:
    """Return the tenant's budget: its registry override, else its tier's default."""
    override = (tenant_item or {}).get("monthly_budget_usd")
    if override is not None:
        return Decimal(str(override))
    return TIERS[tier].monthly_budget_usd
