"""Rate limits and daily quotas against moto's DynamoDB, with an injected clock.

The concurrency tests run 8 or more threads against one table. Each thread has its own boto3
client, as separate Lambda instances would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from agentpool.admission import (
    MAX_BUCKET_ATTEMPTS,
    TOOL_KEY_PREFIX,
    Admission,
    AdmissionControl,
    quota_key,
    seconds_until_next_utc_day,
    tool_limits,
)
from agentpool.tiers import TIERS, TierConfig
from agentpool_dev.moto_atomic import serialize_dynamodb_writes
from tests.unit.dynamo_tables import create_table

TABLE = "limits"
BASIC = TIERS["basic"]
PREMIUM = TIERS["premium"]
NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = NOON) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def no_sleep(_seconds: float) -> None:
    return None


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # DynamoDB applies each conditional write atomically, and moto does not without this.
    serialize_dynamodb_writes()
    with mock_aws():
        create_table(boto3.client("dynamodb"), "LimitsTable", TABLE)
        yield boto3.resource("dynamodb").Table(TABLE)


def control(clock: Clock) -> AdmissionControl:
    return AdmissionControl(boto3.resource("dynamodb").Table(TABLE), clock, no_sleep)


def admit_many(control: AdmissionControl, tenant_id: str, tier: TierConfig, count: int) -> int:
    return sum(control.admit(tenant_id, tier).admitted for _ in range(count))


def roomy_tier(tier: TierConfig, **changes: int) -> TierConfig:
    """Return `tier` with changed limits, so one limit can be tested without the other."""
    return tier.model_copy(update=changes)


def test_bucket_admits_burst_then_rejects(table: Any) -> None:
    admission = control(Clock())

    admitted = admit_many(admission, "clinic-a", BASIC, BASIC.burst + 3)

    assert admitted == BASIC.burst


def test_rate_rejection_names_limit_and_retry_after(table: Any) -> None:
    admission = control(Clock())
    admit_many(admission, "clinic-a", BASIC, BASIC.burst)

    decision = admission.admit("clinic-a", BASIC)

    # Basic refills 2 tokens a second, so the next token is 0.5 s away, rounded up to 1 s.
    assert decision == Admission(admitted=False, limit="rate", retry_after_seconds=1)


def test_bucket_refills_at_tier_rate(table: Any) -> None:
    clock = Clock()
    admission = control(clock)
    admit_many(admission, "clinic-a", BASIC, BASIC.burst)

    clock.advance(1.0)

    assert admit_many(admission, "clinic-a", BASIC, 5) == BASIC.requests_per_second


def test_bucket_refill_never_exceeds_burst(table: Any) -> None:
    clock = Clock()
    admission = control(clock)
    admit_many(admission, "clinic-a", BASIC, BASIC.burst)

    clock.advance(3600)

    assert admit_many(admission, "clinic-a", BASIC, BASIC.burst + 5) == BASIC.burst


def test_bucket_counts_partial_tokens_exactly(table: Any) -> None:
    clock = Clock()
    admission = control(clock)
    admit_many(admission, "clinic-a", BASIC, BASIC.burst)

    clock.advance(0.499)
    early = admission.admit("clinic-a", BASIC)
    clock.advance(0.001)
    on_time = admission.admit("clinic-a", BASIC)

    assert early.admitted is False
    assert on_time.admitted is True


def test_clock_behind_bucket_refills_nothing(table: Any) -> None:
    clock = Clock()
    admission = control(clock)
    admit_many(admission, "clinic-a", BASIC, BASIC.burst)

    clock.advance(-30)

    assert admission.admit("clinic-a", BASIC).admitted is False


def test_tenants_of_one_tier_have_own_buckets(table: Any) -> None:
    admission = control(Clock())
    admit_many(admission, "clinic-a", BASIC, BASIC.burst)

    assert admit_many(admission, "clinic-b", BASIC, BASIC.burst) == BASIC.burst


def test_premium_burst_is_premium_tier_value(table: Any) -> None:
    admission = control(Clock())

    assert admit_many(admission, "hospital", PREMIUM, PREMIUM.burst + 5) == PREMIUM.burst


def test_quota_rejects_51st_request(table: Any) -> None:
    clock = Clock()
    admission = control(clock)
    tier = roomy_tier(BASIC, burst=1000)

    admitted = admit_many(admission, "clinic-a", tier, BASIC.requests_per_day + 1)

    assert BASIC.requests_per_day == 50
    assert admitted == 50


def test_quota_rejection_retries_at_utc_midnight(table: Any) -> None:
    clock = Clock(datetime(2026, 3, 14, 23, 59, 30, tzinfo=UTC))
    admission = control(clock)
    tier = roomy_tier(BASIC, burst=1000, requests_per_day=2)
    admit_many(admission, "clinic-a", tier, 2)

    decision = admission.admit("clinic-a", tier)

    assert decision == Admission(admitted=False, limit="daily_quota", retry_after_seconds=30)


def test_quota_resets_at_utc_day_boundary(table: Any) -> None:
    clock = Clock(datetime(2026, 3, 14, 23, 59, 59, 999000, tzinfo=UTC))
    admission = control(clock)
    tier = roomy_tier(BASIC, burst=1000, requests_per_day=3)
    before = admit_many(admission, "clinic-a", tier, 4)

    clock.advance(0.001)
    after = admit_many(admission, "clinic-a", tier, 4)

    assert before == 3
    assert after == 3


def test_quota_day_is_utc_not_local_time() -> None:
    # 01:30 at UTC+02:00 on the 15th is 23:30 UTC on the 14th.
    plus_two = datetime.fromisoformat("2026-03-15T01:30:00+02:00")

    assert quota_key(plus_two) == "day#2026-03-14"


def test_rate_rejection_uses_no_quota(table: Any) -> None:
    clock = Clock()
    admission = control(clock)
    tier = roomy_tier(BASIC, requests_per_day=BASIC.burst + 1)
    admit_many(admission, "clinic-a", tier, BASIC.burst + 10)

    clock.advance(60)

    assert admission.admit("clinic-a", tier).admitted is True


def test_items_carry_ttl_attribute(table: Any) -> None:
    admission = control(Clock())
    admission.admit("clinic-a", BASIC)

    items = table.scan()["Items"]

    assert {item["limit_key"] for item in items} == {"rate", "day#2026-03-14"}
    assert all(int(item["expires_at"]) > NOON.timestamp() for item in items)


def test_seconds_until_next_utc_day_rounds_up() -> None:
    assert seconds_until_next_utc_day(datetime(2026, 3, 14, 23, 59, 59, 1, tzinfo=UTC)) == 1
    assert seconds_until_next_utc_day(datetime(2026, 3, 14, 0, 0, tzinfo=UTC)) == 86400


def run_parallel(threads: int, tenant_id: str, tier: TierConfig, clock: Clock) -> list[Admission]:
    """Call `admit` from `threads` threads at once, each with its own boto3 client."""
    barrier = threading.Barrier(threads)
    results: list[Admission] = []
    lock = threading.Lock()

    def call() -> None:
        table = boto3.session.Session().resource("dynamodb").Table(TABLE)
        admission = AdmissionControl(table, clock)
        barrier.wait()
        decision = admission.admit(tenant_id, tier)
        with lock:
            results.append(decision)

    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


@pytest.mark.parametrize("threads", [8, 12])
def test_parallel_callers_get_exactly_burst(table: Any, threads: int) -> None:
    results = run_parallel(threads, "clinic-a", BASIC, Clock())

    assert len(results) == threads
    assert sum(result.admitted for result in results) == BASIC.burst


def test_parallel_callers_get_exactly_quota(table: Any) -> None:
    tier = roomy_tier(BASIC, burst=1000, requests_per_day=7)

    results = run_parallel(10, "clinic-a", tier, Clock())

    assert sum(result.admitted for result in results) == 7
    assert {result.limit for result in results if not result.admitted} == {"daily_quota"}


def test_contended_bucket_rejects_after_max_attempts(table: Any) -> None:
    class AlwaysConflicting(AdmissionControl):
        def _write_bucket(self, *args: Any) -> bool:
            return False

    admission = AlwaysConflicting(table, Clock(), no_sleep)

    decision = admission.admit("clinic-a", BASIC)

    assert MAX_BUCKET_ATTEMPTS > 1
    assert decision == Admission(admitted=False, limit="rate", retry_after_seconds=1)


def test_tool_limits_kept_apart_from_request_limits(table: Any) -> None:
    clock = Clock()
    requests = control(clock)
    tools = AdmissionControl(
        boto3.resource("dynamodb").Table(TABLE), clock, no_sleep, key_prefix=TOOL_KEY_PREFIX
    )
    tool_tier = tool_limits(BASIC)

    admit_many(requests, "clinic-a", BASIC, BASIC.burst)
    tool_calls = admit_many(tools, "clinic-a", tool_tier, tool_tier.burst + 1)

    assert tool_calls == BASIC.burst * 12
    assert requests.admit("clinic-a", BASIC).limit == "rate"
    item = table.get_item(Key={"tenant_id": "clinic-a", "limit_key": "tool-rate"})["Item"]
    assert item["tokens"] == 0
    counted = table.get_item(Key={"tenant_id": "clinic-a", "limit_key": "tool-day#2026-03-14"})
    assert counted["Item"]["request_count"] == tool_tier.burst
