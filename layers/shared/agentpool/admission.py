"""Admission control: each tenant's request rate and daily quota, exact across Lambda instances.

State lives in the limits table (template.yaml `LimitsTable`), keyed by tenant id and limit:

- `rate`: a token bucket with `burst` tokens that refills at `requests_per_second`. Tokens are
  stored in thousandths, so a refill over whole milliseconds is an exact integer
  (`elapsed_ms * requests_per_second` thousandths). Each admission reads the bucket with a
  consistent read and writes it back on condition that its `version` is unchanged:

      A reads v7 (5000)   B reads v7 (5000)
      A writes v8 (4000)  -> committed
                          B writes v8 if version = 7  -> ConditionalCheckFailed
                          B reads v8 (4000), writes v9 (3000) -> committed

  so every admitted request took a token that no other request took.
- `day#<YYYY-MM-DD>` (UTC): a counter that one conditional ADD raises only while it is below
  the tier's `requests_per_day`, so no number of parallel callers can pass the quota.

Items carry an `expires_at` TTL for cleanup only. Correctness never depends on TTL: a missing
bucket is a full bucket (which is what it would be after a day idle), and a day's counter is
only read on its own day.

The rate limit is checked before the quota, so a request that the rate limit rejects never
uses up the day's quota. A request that the rate limit admits and the quota rejects has used a
token, which only matters after the quota is exhausted. Every admitted request counts towards
the quota, including one that later fails (an invalid session, an agent error): it has been
accepted for work, and the agent may already have used the model before failing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError

from agentpool.agent_contract import max_tool_calls
from agentpool.tiers import TierConfig

logger = logging.getLogger(__name__)

RATE_KEY = "rate"
MILLI = 1000
# Attempts at the bucket's conditional write. Each conflict means that another request took a
# token, so contention ends quickly. A request that still loses after this many attempts is
# rejected, which may admit fewer than the limit but never more.
MAX_BUCKET_ATTEMPTS = 25
BUCKET_TTL = timedelta(days=1)
QUOTA_TTL = timedelta(days=2)

LimitName = Literal["rate", "daily_quota"]
# Gateway tool calls have limits of their own (`tool_limits`), in items with this prefix.
TOOL_KEY_PREFIX = "tool-"
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Admission:
    """The decision on one request: admitted, or rejected by `limit` until `retry_after_seconds`."""

    admitted: bool
    limit: LimitName | None = None
    retry_after_seconds: int = 0


ADMITTED = Admission(admitted=True)


def quota_key(moment: datetime) -> str:
    """Return the limits-table sort key of the UTC day that contains `moment`."""
    return f"day#{moment.astimezone(UTC):%Y-%m-%d}"


def seconds_until_next_utc_day(moment: datetime) -> int:
    """Return the whole seconds, at least 1, from `moment` to the next UTC midnight."""
    utc = moment.astimezone(UTC)
    midnight = datetime(utc.year, utc.month, utc.day, tzinfo=UTC) + timedelta(days=1)
    return max(1, _ceil_div(int((midnight - utc).total_seconds() * MILLI), MILLI))


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * MILLI)


class AdmissionControl:
    """Apply a tier's rate limit and daily quota to one tenant's requests.

    `table` is a boto3 DynamoDB Table resource for the limits table, used with the function's
    own role: tenants never write their own limits.
    """

    def __init__(
        self,
        table: Any,
        clock: Clock = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        key_prefix: str = "",
    ) -> None:
        """`key_prefix` keeps the items of another kind of limit apart, such as TOOL_KEY_PREFIX."""
        self._table = table
        self._clock = clock
        self._sleep = sleep
        self._prefix = key_prefix

    def admit(self, tenant_id: str, tier: TierConfig) -> Admission:
        """Take one token from the tenant's bucket, then count the request in today's quota."""
        now = self._clock()
        decision = self._take_token(tenant_id, tier, now)
        if not decision.admitted:
            return decision
        return self._count_request(tenant_id, tier, now)

    def _take_token(self, tenant_id: str, tier: TierConfig, now: datetime) -> Admission:
        capacity = tier.burst * MILLI
        now_ms = _epoch_ms(now)
        for attempt in range(1, MAX_BUCKET_ATTEMPTS + 1):
            item = self._table.get_item(
                Key={"tenant_id": tenant_id, "limit_key": self._prefix + RATE_KEY},
                ConsistentRead=True,
            ).get("Item")
            if item is None:
                tokens, version, updated_ms = capacity, 0, now_ms
            else:
                stored_tokens, version = int(item["tokens"]), int(item["version"])
                updated_ms = int(item["updated_ms"])
                # A clock behind the stored time refills nothing rather than going negative.
                elapsed_ms = max(0, now_ms - updated_ms)
                tokens = min(capacity, stored_tokens + elapsed_ms * tier.requests_per_second)
            if tokens < MILLI:
                missing_ms = _ceil_div(MILLI - tokens, tier.requests_per_second)
                return Admission(False, "rate", max(1, _ceil_div(missing_ms, MILLI)))
            if self._write_bucket(tenant_id, tokens - MILLI, version, max(now_ms, updated_ms)):
                return ADMITTED
            # Jittered backoff spreads the contenders so that each retry has a fair chance.
            self._sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 - not for security
        logger.warning(
            "rate limit bucket contended, request rejected",
            extra={"tenant_id": tenant_id, "attempts": MAX_BUCKET_ATTEMPTS},
        )
        return Admission(False, "rate", 1)

    def _write_bucket(self, tenant_id: str, tokens: int, version: int, updated_ms: int) -> bool:
        """Write the bucket if nobody else has since `version`; return whether it was written."""
        expires_at = updated_ms // MILLI + int(BUCKET_TTL.total_seconds())
        try:
            self._table.update_item(
                Key={"tenant_id": tenant_id, "limit_key": self._prefix + RATE_KEY},
                UpdateExpression=(
                    "SET tokens = :tokens, updated_ms = :updated, version = :next, "
                    "expires_at = :expires"
                ),
                ConditionExpression="attribute_not_exists(version) OR version = :version",
                ExpressionAttributeValues={
                    ":tokens": tokens,
                    ":updated": updated_ms,
                    ":version": version,
                    ":next": version + 1,
                    ":expires": expires_at,
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _count_request(self, tenant_id: str, tier: TierConfig, now: datetime) -> Admission:
        key = quota_key(now)
        day_start = datetime.strptime(key.removeprefix("day#"), "%Y-%m-%d").replace(tzinfo=UTC)
        key = self._prefix + key
        expires_at = int((day_start + timedelta(days=1) + QUOTA_TTL).timestamp())
        try:
            self._table.update_item(
                Key={"tenant_id": tenant_id, "limit_key": key},
                UpdateExpression="ADD request_count :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(request_count) OR request_count < :quota",
                ExpressionAttributeValues={
                    ":one": 1,
                    ":quota": tier.requests_per_day,
                    ":expires": expires_at,
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return Admission(False, "daily_quota", seconds_until_next_utc_day(now))
            raise
        return ADMITTED


def tool_limits(tier: TierConfig) -> TierConfig:
    """Return the limits of a tenant's Gateway tool calls on `tier`.

    They are the tier's request limits times the tool calls that one request may make, so the
    agent never reaches them, while a caller that calls the Gateway directly with a user's
    token is bounded as the agent would be.
    """
    calls = max_tool_calls()
    return tier.model_copy(
        update={
            "requests_per_second": tier.requests_per_second * calls,
            "burst": tier.burst * calls,
            "requests_per_day": tier.requests_per_day * calls,
        }
    )
