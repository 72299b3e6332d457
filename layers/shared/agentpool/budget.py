"""Monthly budgets per tenant: threshold alerts, and an optional hard cap with reservations.

Both work on the tenant's month totals item (pk tenant id, sk `month#YYYY-MM`) and its
`committed_usd` attribute. The ledger adds every recorded amount to it, and a hard-capped
request adds its worst-case cost while it runs:

    committed_usd = recorded amounts of the month + worst cases of open reservations

DynamoDB condition expressions cannot add, so `spent + reserved + worst_case <= budget` is
checked as `committed_usd <= budget - worst_case`, with the right side computed here. One
conditional update admits or rejects a request, so concurrent requests never overdraw.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from agentpool.agent_contract import MAX_OUTPUT_TOKENS
from agentpool.errors import ThrottledError
from agentpool.events import stable_event_id
from agentpool.pricing.catalog import MILLION, TokenPrices
from agentpool.tiers import TIERS

logger = logging.getLogger(__name__)

# Alert thresholds in percent of the monthly budget.
ALERT_THRESHOLDS = (80, 100)
# A claimed alert that was not marked sent within this time is claimed again and re-sent,
# because the aggregator that claimed it may have crashed before it published the alert.
ALERT_CLAIM_TIMEOUT = timedelta(minutes=5)
# A source of its own, so that the metering rule never sends the alert to the aggregator.
BUDGET_EVENT_SOURCE = "agentpool.budgets"
BUDGET_DETAIL_TYPE = "Budget Threshold Crossed"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class BudgetExceededError(ThrottledError):
    """The request's worst-case cost does not fit in what is left of the monthly budget.

    HTTP 429 with code `budget_exhausted`, as API Gateway responds when a usage plan's quota is
    used up. Retry-After is the time until the next UTC month. A retry can succeed sooner when
    requests in flight release their reservations or the budget is raised.
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
    """The bound on one request's model tokens that a hard-capped tenant reserves.

    Each of at most `max_model_calls` calls reads at most the prompt's UTF-8 bytes (no
    tokenizer in use emits more than one token per byte) plus `context_tokens` for the
    system prompt, tool specifications and earlier turns. Each writes at most
    `max_output_tokens`, which the agent passes to Converse as `maxTokens`.
    """

    # NOTE: only the output side is enforced. Session history (up to 10 turns) and tool
    # results can exceed `context_tokens`, so a long session can cost more than it reserved.

    max_model_calls: int = 4
    context_tokens: int = 8_000
    max_output_tokens: int = MAX_OUTPUT_TOKENS

    def input_tokens(self, prompt: str) -> int:
        return self.max_model_calls * (len(prompt.encode("utf-8")) + self.context_tokens)

    def output_tokens(self) -> int:
        return self.max_model_calls * self.max_output_tokens

    def cost(self, prompt: str, prices: TokenPrices) -> Decimal:
        """Return the worst-case USD cost of `prompt` at `prices`, exact."""
        return (
            Decimal(self.input_tokens(prompt)) * prices.input
            + Decimal(self.output_tokens()) * prices.output
        ) / MILLION


def month_key(tenant_id: str, month: str) -> dict[str, Any]:
    return {"pk": {"S": tenant_id}, "sk": {"S": f"month#{month}"}}


def current_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    month: str
    request_id: str
    amount_usd: Decimal


class BudgetGuard:
    """Reserve a request's worst-case cost before the model call and release it afterwards."""

    def __init__(self, dynamodb_client: Any, totals_table: str) -> None:
        self._client = dynamodb_client
        self._table = totals_table

    def reserve(
        self, tenant_id: str, request_id: str, worst_case_usd: Decimal, budget_usd: Decimal
    ) -> Reservation:
        """Reserve `worst_case_usd` of the tenant's current month.

        Raises BudgetExceededError when recorded amounts plus open reservations plus this
        one would exceed `budget_usd`. A retried reserve with the same request id returns
        the reservation it already holds instead of reserving twice.
        """
        month = current_month()
        limit = budget_usd - worst_case_usd
        if limit < 0:
            raise BudgetExceededError("The request's worst-case cost exceeds the monthly budget.")
        reservation = Reservation(tenant_id, month, request_id, worst_case_usd)
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": month_key(tenant_id, month),
                            "UpdateExpression": "ADD committed_usd :w, reserved_usd :w",
                            "ConditionExpression": (
                                "attribute_not_exists(committed_usd) OR committed_usd <= :limit"
                            ),
                            "ExpressionAttributeValues": {
                                ":w": _serializer.serialize(worst_case_usd),
                                ":limit": _serializer.serialize(limit),
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _reservation_item(reservation, "open"),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return reservation  # reserved by an earlier attempt of the same request
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise BudgetExceededError(
                    "The monthly budget does not cover this request's worst-case cost."
                ) from error
            raise
        return reservation

    def release(self, reservation: Reservation) -> bool:
        """Release an open reservation; return False when it was already released.

        The request's actual cost reaches `committed_usd` when the ledger records its
        metering events.
        """
        # NOTE: between this release and the ledger recording the request's events (seconds,
        # the queue's delay) the request's actual cost is in neither, so admissions in that
        # window can exceed the budget by up to the actual cost of such requests.
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _reservation_key(reservation),
                            "UpdateExpression": "SET #state = :released",
                            "ConditionExpression": "#state = :open",
                            "ExpressionAttributeNames": {"#state": "state"},
                            "ExpressionAttributeValues": {
                                ":open": {"S": "open"},
                                ":released": {"S": "released"},
                            },
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": month_key(reservation.tenant_id, reservation.month),
                            "UpdateExpression": "ADD committed_usd :w, reserved_usd :w",
                            "ExpressionAttributeValues": {
                                ":w": _serializer.serialize(-reservation.amount_usd)
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


def _reservation_key(reservation: Reservation) -> dict[str, Any]:
    return {
        "pk": {"S": reservation.tenant_id},
        "sk": {"S": f"reservation#{reservation.month}#{reservation.request_id}"},
    }


def _reservation_item(reservation: Reservation, state: str) -> dict[str, Any]:
    return {
        **_reservation_key(reservation),
        "state": {"S": state},
        "amount_usd": _serializer.serialize(reservation.amount_usd),
        "reserved_at": {"S": datetime.now(UTC).isoformat()},
    }


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
