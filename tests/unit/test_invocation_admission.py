"""InvocationService with admission control: a rejected request does no work and is metered."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from agentpool.admission import Admission
from agentpool.errors import ThrottledError
from agentpool.events import MeteringEvent, RequestThrottled, stable_event_id
from agentpool.http import error_response
from agentpool.identity import CallerIdentity
from agentpool.invocation import InvocationRequest, InvocationService
from agentpool.ledger import totals_for
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.registry import Tenant


class FakeRegistry:
    def get(self, tenant_id: str) -> Any:
        return Tenant.model_validate(
            {"tenant_id": tenant_id, "name": "Clinic", "tier": "basic", "status": "active"}
        )


class Untouchable:
    """A collaborator that a rejected request must never reach."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a rejected request used {name}")


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[MeteringEvent] = []

    def publish(self, events: list[MeteringEvent]) -> None:
        self.events.extend(events)


class FixedAdmission:
    def __init__(self, decision: Admission) -> None:
        self.decision = decision
        self.calls: list[tuple[str, str]] = []

    def admit(self, tenant_id: str, tier: Any) -> Admission:
        self.calls.append((tenant_id, tier.name))
        return self.decision


def service(decision: Admission, publisher: FakePublisher) -> InvocationService:
    return InvocationService(
        registry=FakeRegistry(),  # type: ignore[arg-type]
        vending_machine=Untouchable(),  # type: ignore[arg-type]
        sessions_table="sessions",
        runtime=Untouchable(),  # type: ignore[arg-type]
        publisher=publisher,  # type: ignore[arg-type]
        admission=FixedAdmission(decision),  # type: ignore[arg-type]
    )


CALLER = CallerIdentity(tenant_id="clinic-a", user_id="u-1", claimed_tier="basic")
REQUEST = InvocationRequest(prompt="hello")


@pytest.mark.parametrize(("limit", "retry_after"), [("rate", 1), ("daily_quota", 3600)])
def test_rejected_request_raises_throttled(limit: Any, retry_after: int) -> None:
    publisher = FakePublisher()

    with pytest.raises(ThrottledError) as raised:
        service(Admission(False, limit, retry_after), publisher).invoke(
            CALLER, REQUEST, "req-1", "token"
        )

    assert raised.value.retry_after_seconds == retry_after
    assert raised.value.status == 429


def test_rejected_request_publishes_throttle_event() -> None:
    publisher = FakePublisher()

    with pytest.raises(ThrottledError):
        service(Admission(False, "daily_quota", 60), publisher).invoke(
            CALLER, REQUEST, "req-1", "token"
        )

    assert len(publisher.events) == 1
    event = publisher.events[0]
    assert isinstance(event, RequestThrottled)
    assert event.event_id == stable_event_id("req-1", "throttle")
    assert (event.tenant_id, event.tier, event.user_id) == ("clinic-a", "basic", "u-1")
    assert (event.limit, event.retry_after_seconds) == ("daily_quota", 60)


def test_throttled_response_has_retry_after_header() -> None:
    response = error_response(ThrottledError("Slow down.", 7), "req-1")

    assert response["statusCode"] == 429
    assert response["headers"]["Retry-After"] == "7"
    assert '"code":"throttled"' in response["body"]


def test_throttle_event_counted_and_never_billed() -> None:
    event = RequestThrottled(
        event_id="e-1",
        event_time=datetime(2026, 3, 14, 9, 0, tzinfo=UTC),
        tenant_id="clinic-a",
        tier="basic",
        user_id="u-1",
        request_id="req-1",
        limit="rate",
        retry_after_seconds=1,
    )

    rated = rate_event(event, default_catalog())
    totals = totals_for(rated)

    assert rated.amount_usd == Decimal(0)
    assert rated.priced is True
    month = totals[("clinic-a", "month#2026-03")]
    assert month["throttled_requests"] == Decimal(1)
    assert month.get("cost_usd", Decimal(0)) == Decimal(0)
