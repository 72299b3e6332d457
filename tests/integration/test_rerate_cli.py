"""`agentpool rerate` on the local stack: differences recorded once, reruns add nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agentpool.events import ModelUsage, stable_event_id
from agentpool.pricing.catalog import DEFAULT_CATALOG_PATH, PriceCatalog
from agentpool.pricing.rating import rate_event
from agentpool.publisher import MeteringPublisher
from agentpool.usage import TokenUsage
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .cli_runner import agentpool
from .conftest import Onboarding

pytestmark = pytest.mark.integration

# A past month that no other test of the session bills in.
MONTH = "2026-01"
MODEL = "mistral.ministral-3-8b-instruct"


def usage_event(tenant_id: str, day: int) -> ModelUsage:
    request_id = str(uuid.uuid4())
    return ModelUsage(
        event_id=stable_event_id(request_id, "model"),
        event_time=datetime(2026, 1, day, 10, 0, tzinfo=UTC),
        tenant_id=tenant_id,
        tier="basic",
        user_id="user-1",
        request_id=request_id,
        model_id=MODEL,
        usage=TokenUsage(input_tokens=1_000 * day, output_tokens=200 * day),
    )


def test_rerate_cli_records_differences_once(
    stack: LocalStack,
    target: operations.Target,
    onboard: Onboarding,
    tmp_path: Path,
    state_file: Path,
) -> None:
    tenant_id = onboard.tenant("basic")
    events = [usage_event(tenant_id, day) for day in (3, 9, 17)]
    MeteringPublisher(target.outputs["EventBusName"], target.client("events")).publish(events)
    stack.wait_for_metering()
    data: dict[str, Any] = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    data["catalog_version"] = "rerate-test"
    data["models"][MODEL][0]["usd_per_million"]["input"] = "0.30"
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(data), encoding="utf-8")
    expected = sum((rate_event(e, PriceCatalog(data)).amount_usd for e in events), Decimal(0))

    first = agentpool(state_file, "rerate", "--month", MONTH, "--catalog", str(catalog_file))
    after_first = operations.tenant_month(target, tenant_id, MONTH)["total"]["cost_usd"]
    second = agentpool(state_file, "rerate", "--month", MONTH, "--catalog", str(catalog_file))
    after_second = operations.tenant_month(target, tenant_id, MONTH)["total"]["cost_usd"]

    assert first.returncode == 0, first.stderr
    assert "3 differences recorded" in first.stdout
    assert after_first == expected
    assert second.returncode == 0, second.stderr
    assert "0 differences recorded" in second.stdout
    assert after_second == expected


def test_rerate_cli_rejects_missing_catalog(
    stack: LocalStack, tmp_path: Path, state_file: Path
) -> None:
    result = agentpool(state_file, "rerate", "--month", MONTH, "--catalog", str(tmp_path / "x"))
    assert result.returncode == 1
    assert "not found" in result.stderr
