"""Issued months on the local stack: a late event after the report becomes an adjustment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from agentpool.billing_periods import BillingPeriods
from agentpool.events import ModelUsage, stable_event_id
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.publisher import MeteringPublisher
from agentpool.usage import TokenUsage
from agentpool_dev import operations, reports
from agentpool_dev.local_stack import LocalStack

from .conftest import Onboarding

pytestmark = pytest.mark.integration

# A past month that no other test of the session publishes to, because issuing it is global.
ISSUED_MONTH = "2026-02"
NEXT_MONTH = "2026-03"
MODEL = "mistral.ministral-3-8b-instruct"


def usage_event(tenant_id: str, day: int, input_tokens: int) -> ModelUsage:
    request_id = str(uuid.uuid4())
    return ModelUsage(
        event_id=stable_event_id(request_id, "model"),
        event_time=datetime(2026, 2, day, 10, 0, tzinfo=UTC),
        tenant_id=tenant_id,
        tier="basic",
        user_id="user-1",
        request_id=request_id,
        model_id=MODEL,
        usage=TokenUsage(input_tokens=input_tokens, output_tokens=100),
    )


def test_late_event_becomes_next_month_adjustment(
    stack: LocalStack, target: operations.Target, onboard: Onboarding, tmp_path: Path
) -> None:
    tenant_id = onboard.tenant("basic")
    publisher = MeteringPublisher(target.outputs["EventBusName"], target.client("events"))
    publisher.publish([usage_event(tenant_id, 10, 1_000)])
    stack.wait_for_metering()

    issued, _ = reports.run_reports(target, ISSUED_MONTH, out_dir=tmp_path / "issued")
    before = operations.tenant_month(target, tenant_id, ISSUED_MONTH)["total"]

    late = usage_event(tenant_id, 27, 2_000)
    publisher.publish([late])
    stack.wait_for_metering()

    after = operations.tenant_month(target, tenant_id, ISSUED_MONTH)["total"]
    [issued_report] = [r for r in issued.reports if r.tenant_id == tenant_id]
    next_run, _ = reports.run_reports(target, NEXT_MONTH, tenant_id, out_dir=tmp_path / "next")
    [next_report] = next_run.reports
    expected = rate_event(late, default_catalog()).amount_usd
    assert issued.issued is True
    assert after == before
    assert Decimal(issued_report.total_usd.exact) == before["cost_usd"]
    assert next_run.issued is False
    assert [line.adjustment_of_month for line in next_report.adjustments] == [ISSUED_MONTH]
    assert Decimal(next_report.adjustments_usd.exact) == expected
    assert expected > 0


def test_issued_report_rerun_is_unchanged(
    stack: LocalStack, target: operations.Target, onboard: Onboarding, tmp_path: Path
) -> None:
    tenant_id = onboard.tenant("basic")
    # Issued by the test above when it ran first; marking again is a no-op.
    BillingPeriods(target.client("dynamodb"), target.outputs["TotalsTableName"]).mark_issued(
        ISSUED_MONTH
    )
    first, _ = reports.run_reports(target, ISSUED_MONTH, tenant_id, out_dir=tmp_path / "a")
    MeteringPublisher(target.outputs["EventBusName"], target.client("events")).publish(
        [usage_event(tenant_id, 12, 500)]
    )
    stack.wait_for_metering()
    second, _ = reports.run_reports(target, ISSUED_MONTH, tenant_id, out_dir=tmp_path / "b")
    assert first.event is not None
    assert second.event is not None
    assert second.event.event_id == first.event.event_id
