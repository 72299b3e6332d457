"""AgentCore usage log records to Runtime Usage events: parsing, ids, rounding, rejections."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from agentpool.runtime_usage import (
    InvalidUsageRecordError,
    SessionOwner,
    parse_usage_record,
    usage_events,
)
from agentpool_dev.standins.agentcore import RuntimeInvocationRecord, usage_log_records

RUNTIME_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agentpool_agent-AbC123"
SESSION = "clinic-a.5f2b9c1d-8e47-4a3b-b6d2-91c0e7f4a6d8"
OWNER = SessionOwner(tier="basic", user_id="user-1")


def record(**metrics: Any) -> str:
    return json.dumps(
        {
            "resource_arn": RUNTIME_ARN,
            "event_timestamp": 1762768235743,
            "resource": {"cloud.provider": "aws", "service.name": "AgentCore.Runtime"},
            "attributes": {"session.id": SESSION, "elapsed_time_seconds": 1},
            "metrics": metrics
            or {
                "agent.runtime.memory.gb_hours.used": 0.000275552058724,
                "agent.runtime.vcpu.hours.used": 0.000001925,
            },
        }
    )


def owner_of(tenant_id: str, runtime_session_id: str) -> SessionOwner | None:
    return OWNER if tenant_id == "clinic-a" else None


def test_record_parses_exact_hours() -> None:
    parsed = parse_usage_record(record())
    assert parsed.runtime_session_id == SESSION
    assert parsed.vcpu_hours == Decimal("0.000001925")
    assert parsed.memory_gb_hours == Decimal("0.000275552058724")
    assert parsed.event_time.isoformat() == "2025-11-10T09:50:35.743000+00:00"


def test_event_rounds_seconds_half_even() -> None:
    [event] = usage_events([record()], owner_of).events
    assert event.tenant_id == "clinic-a"
    assert event.tier == "basic"
    assert event.user_id == "user-1"
    assert event.runtime_session_id == SESSION
    assert event.vcpu_seconds == Decimal("0.006930")
    # 0.000275552058724 h = 0.9919874114064 s
    assert event.memory_gb_seconds == Decimal("0.991987")


def test_event_id_stable_per_record() -> None:
    first = usage_events([record()], owner_of).events
    second = usage_events([record()], owner_of).events
    assert first[0].event_id == second[0].event_id


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"resource_arn": RUNTIME_ARN}), "lacks a valid field"),
    ],
)
def test_invalid_record_rejected(line: str, reason: str) -> None:
    with pytest.raises(InvalidUsageRecordError, match=reason):
        parse_usage_record(line)


def test_batch_rejects_unregistered_tenant() -> None:
    other = record().replace("clinic-a.", "clinic-b.")
    batch = usage_events(["", record(), other, "{bad"], owner_of)
    assert len(batch.events) == 1
    assert [number for number, _ in batch.rejected] == [3, 4]
    assert "clinic-b is not registered" in batch.rejected[0][1]


def test_batch_skips_zero_usage() -> None:
    zero = record(**{"agent.runtime.vcpu.hours.used": 0, "agent.runtime.memory.gb_hours.used": 0})
    batch = usage_events([zero], owner_of)
    assert batch.events == []
    assert batch.rejected == []


def test_standin_records_cover_invocation() -> None:
    invocation = RuntimeInvocationRecord(
        agent_runtime_arn=RUNTIME_ARN,
        qualifier="live",
        runtime_session_id=SESSION,
        runtime_user_id="user-1",
        started_at=1_762_768_235.5,
        duration_seconds=2.25,
        agent_status=200,
        returned_status=200,
    )
    lines = [json.dumps(item) for item in usage_log_records(invocation)]
    events = usage_events(lines, owner_of).events
    assert len(lines) == 3
    assert len({event.event_id for event in events}) == 3
    # 1 vCPU for 2.25 s, each second rounded to a millionth.
    assert sum((event.vcpu_seconds for event in events), Decimal(0)) == Decimal("2.25")
    assert sum((event.memory_gb_seconds for event in events), Decimal(0)) == Decimal("4.5")
