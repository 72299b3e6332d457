"""`agentpool events publish` file checks that need no stack: tier, tenant and event time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentpool.events import stable_event_id
from agentpool.runtime_usage import SessionOwner, usage_events
from agentpool_dev.backfill import MAX_CLOCK_SKEW, read_backfill

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def tool_event(index: int, when: datetime, tenant_id: str = "harbor-clinic") -> dict[str, Any]:
    request_id = f"check-{index}"
    return {
        "schema_version": 1,
        "event_id": stable_event_id(request_id, "tool"),
        "event_time": when.isoformat().replace("+00:00", "Z"),
        "tenant_id": tenant_id,
        "tier": "basic",
        "user_id": "user-1",
        "request_id": request_id,
        "detail_type": "Tool Invoked",
        "tool": "document_search",
        "decision": "allowed",
    }


def write_lines(path: Path, details: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(detail) + "\n" for detail in details), encoding="utf-8")
    return path


def test_event_within_clock_skew_is_valid(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "events.jsonl", [tool_event(1, NOW + MAX_CLOCK_SKEW)])

    parsed = read_backfill(path, lambda _: True, NOW)

    assert parsed.errors == []
    assert len(parsed.events) == 1


def test_event_beyond_clock_skew_is_rejected(tmp_path: Path) -> None:
    detail = tool_event(1, NOW + MAX_CLOCK_SKEW + timedelta(seconds=1))
    path = write_lines(tmp_path / "events.jsonl", [detail])

    parsed = read_backfill(path, lambda _: True, NOW)

    assert parsed.events == []
    assert [error.line for error in parsed.errors] == [1]
    assert parsed.errors[0].reason == (
        f"event {detail['event_id']}: event time 2026-12-04T12:05:01+00:00 is in the future "
        "(now 2026-12-04T12:00:00+00:00, allowed clock skew 0:05:00)"
    )


def test_tenant_registry_read_once_per_tenant(tmp_path: Path) -> None:
    details = [tool_event(index, NOW, "no-such-tenant") for index in range(3)]
    path = write_lines(tmp_path / "events.jsonl", details)
    lookups: list[str] = []

    def tenant_registered(tenant_id: str) -> bool:
        lookups.append(tenant_id)
        return False

    parsed = read_backfill(path, tenant_registered, NOW)

    assert lookups == ["no-such-tenant"]
    assert [error.line for error in parsed.errors] == [1, 2, 3]
    assert parsed.errors[2].reason == (
        f"event {details[2]['event_id']}: tenant no-such-tenant is not in the tenant registry"
    )


def test_example_events_file_is_valid() -> None:
    parsed = read_backfill(
        EXAMPLES / "events.jsonl", lambda tenant_id: tenant_id == "harbor-clinic", NOW
    )

    assert parsed.errors == []
    assert parsed.distinct_events == 6
    assert {event.event_time.strftime("%Y-%m") for event in parsed.events} == {"2026-12"}


def test_example_runtime_usage_file_is_billable() -> None:
    lines = (EXAMPLES / "runtime-usage.jsonl").read_text(encoding="utf-8").splitlines()

    batch = usage_events(lines, lambda *_: SessionOwner("basic", "unknown"))

    assert batch.rejected == []
    assert {event.tenant_id for event in batch.events} == {"harbor-clinic"}
    assert len(batch.events) == 3
