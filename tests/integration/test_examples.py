"""The files under examples/ work with the CLI commands that the README runs on them."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from agentpool.events import parse_event
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.runtime_usage import UNKNOWN_USER, SessionOwner, usage_events
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack

from .cli_runner import agentpool
from .conftest import Onboarding
from .test_backfill import ledger_entries, month_totals

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_TENANT = "harbor-clinic"


def copy_for_tenant(name: str, tenant_id: str, folder: Path) -> Path:
    """Copy an example file with its tenant id replaced by `tenant_id`.

    The shared test stack runs the demo, which creates harbor-clinic, so the examples are
    billed to a tenant of this test instead. Event ids and times stay as in the example.
    """
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    assert EXAMPLE_TENANT in text
    copy = folder / name
    copy.write_text(text.replace(EXAMPLE_TENANT, tenant_id), encoding="utf-8")
    return copy


def test_examples_publish_and_ingest(
    stack: LocalStack,
    target: operations.Target,
    onboard: Onboarding,
    tmp_path: Path,
    state_file: Path,
) -> None:
    tenant_id = onboard.tenant("basic")
    events_file = copy_for_tenant("events.jsonl", tenant_id, tmp_path)
    usage_file = copy_for_tenant("runtime-usage.jsonl", tenant_id, tmp_path)
    events = [
        parse_event(json.loads(line))
        for line in events_file.read_text(encoding="utf-8").splitlines()
    ]
    usage_lines = usage_file.read_text(encoding="utf-8").splitlines()
    # The test tenant has no sessions-table items, so usage is billed to the unknown user.
    events += usage_events(usage_lines, lambda *_: SessionOwner("basic", UNKNOWN_USER)).events
    catalog = default_catalog()
    expected = sum((rate_event(event, catalog).amount_usd for event in events), Decimal(0))

    published = agentpool(state_file, "events", "publish", str(events_file))
    ingested = agentpool(state_file, "runtime-usage", "ingest", str(usage_file))
    stack.wait_for_metering()

    assert published.returncode == 0, published.stderr
    assert "Published 6 events (6 distinct ids)" in published.stdout
    assert ingested.returncode == 0, ingested.stderr
    assert "Published 3 Runtime Usage events. Not billable: 0 records." in ingested.stdout
    entries = ledger_entries(target, tenant_id)
    assert {entry["event_id"] for entry in entries} == {event.event_id for event in events}
    assert len(entries) == 9
    assert month_totals(target, tenant_id) == expected
    assert expected > 0
