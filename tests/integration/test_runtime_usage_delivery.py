"""USAGE_LOGS on the local stack: stand-in → log group → RuntimeUsageFunction → ledger."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from boto3.dynamodb.conditions import Key

from agentpool.log_subscription import decode_subscription_event
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.runtime_usage import SessionOwner, usage_events
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack, Ports
from agentpool_dev.provision import STANDIN_RUNTIME_ARN

from .conftest import Onboarding

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def delivering_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Its own stack, because the shared one does not deliver usage logs.
    stack = LocalStack(
        ports=Ports.free(), log_dir=tmp_path_factory.mktemp("usage-logs"), state_file=None
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def delivering_target(delivering_stack: LocalStack) -> operations.Target:
    state = delivering_stack.state
    assert state is not None
    return operations.Target(
        "local", state.api_url, state.resources, delivering_stack.aws_session(), state.moto_url
    )


def log_group_messages(stack: LocalStack, prefix: str) -> list[str]:
    """Messages of the runtime usage log group whose session id starts with `prefix`."""
    logs = stack.client("logs")
    events = logs.filter_log_events(logGroupName=stack.name("RuntimeUsageLogGroup"))["events"]
    return [
        event["message"]
        for event in events
        if json.loads(event["message"])["attributes"]["session.id"].startswith(prefix)
    ]


def runtime_entries(target: operations.Target, tenant_id: str) -> list[dict[str, object]]:
    entries = target.table("LedgerTableName").query(
        KeyConditionExpression=Key("tenant_id").eq(tenant_id), ConsistentRead=True
    )["Items"]
    return [entry for entry in entries if entry["detail_type"] == "Runtime Usage"]


def test_invocation_usage_reaches_ledger(
    delivering_stack: LocalStack, delivering_target: operations.Target
) -> None:
    onboard = Onboarding(delivering_target, delivering_stack)
    tenant_id = onboard.tenant("basic")
    user = onboard.user(tenant_id)
    status, body = operations.invoke(delivering_target, user.token, "When is the flu clinic open?")
    assert status == 200, body
    delivering_stack.wait_for_metering()

    messages = log_group_messages(delivering_stack, f"{tenant_id}.")
    standin_lines = [
        line
        for line in delivering_stack.agentcore.usage_log_lines()
        if json.loads(line)["attributes"]["session.id"].startswith(f"{tenant_id}.")
    ]
    expected = usage_events(messages, lambda *_: SessionOwner("basic", user.user_id)).events
    entries = runtime_entries(delivering_target, tenant_id)
    month = expected[0].event_time.strftime("%Y-%m")
    totals = delivering_target.table("TotalsTableName").get_item(
        Key={"pk": tenant_id, "sk": f"month#{month}"}, ConsistentRead=True
    )["Item"]
    catalog = default_catalog()
    runtime_cost = sum((rate_event(e, catalog).amount_usd for e in expected), Decimal(0))
    breakdown = delivering_target.table("TotalsTableName").get_item(
        Key={"pk": tenant_id, "sk": f"month#{month}#runtime#agentcore"}, ConsistentRead=True
    )["Item"]

    # The log group holds exactly what the stand-in recorded, and the ledger bills all of it.
    assert sorted(messages) == sorted(standin_lines)
    assert len(expected) >= 1
    assert sorted(str(e["event_id"]) for e in entries) == sorted(e.event_id for e in expected)
    assert {e["user_id"] for e in entries} == {user.user_id}
    assert totals["runtime_vcpu_seconds"] == sum((e.vcpu_seconds for e in expected), Decimal(0))
    assert breakdown["cost_usd"] == runtime_cost
    assert runtime_cost > 0


def test_malformed_record_dead_lettered_valid_billed(
    delivering_stack: LocalStack, delivering_target: operations.Target
) -> None:
    onboard = Onboarding(delivering_target, delivering_stack)
    tenant_id = onboard.tenant("basic")
    session = f"{tenant_id}.{uuid.uuid4()}"
    now_ms = int(time.time() * 1000)
    valid = {
        "resource_arn": STANDIN_RUNTIME_ARN,
        "event_timestamp": now_ms,
        "attributes": {"session.id": session, "elapsed_time_seconds": 1},
        "metrics": {
            "agent.runtime.vcpu.hours.used": "0.000277777777777778",
            "agent.runtime.memory.gb_hours.used": "0.000555555555555556",
        },
    }
    logs = delivering_stack.client("logs")
    log_group = delivering_stack.name("RuntimeUsageLogGroup")
    stream = f"test-{uuid.uuid4().hex[:8]}"
    logs.create_log_stream(logGroupName=log_group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=log_group,
        logStreamName=stream,
        logEvents=[
            {"timestamp": now_ms, "message": json.dumps(valid)},
            {"timestamp": now_ms, "message": "{truncated record"},
        ],
    )
    delivering_stack.wait_for_metering()

    sqs = delivering_stack.client("sqs")
    messages = sqs.receive_message(
        QueueUrl=delivering_stack.name("RuntimeUsageDeadLetterQueue"),
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
    ).get("Messages", [])
    bodies = [json.loads(message["Body"]) for message in messages]
    replays = [decode_subscription_event(body) for body in bodies]
    entries = runtime_entries(delivering_target, tenant_id)

    assert len(bodies) == 1
    assert [item.message for item in replays[0].log_events] == ["{truncated record"]
    assert replays[0].log_stream == stream
    assert bodies[0]["rejected"][0]["reason"].startswith("usage record is not valid JSON")
    assert len(entries) == 1
    assert entries[0]["user_id"] == "unknown"
    assert entries[0]["quantities"] == {
        "vcpu_seconds": Decimal("1"),
        "memory_gb_seconds": Decimal("2"),
    }


def test_usage_function_log_has_no_record_contents(
    delivering_stack: LocalStack,
) -> None:
    log = Path(delivering_stack.log_dir) / "RuntimeUsageFunction.log"
    text = log.read_text(encoding="utf-8")
    assert "usage records delivered" in text
    assert "truncated record" not in text
    assert "agent.runtime.vcpu.hours.used" not in text
