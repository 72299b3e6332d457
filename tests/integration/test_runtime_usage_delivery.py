"""USAGE_LOGS on the local stack: stand-in → log group → RuntimeUsageFunction → ledger."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from agentpool.log_subscription import decode_subscription_event
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.runtime_usage import SessionOwner, usage_events
from agentpool_dev import operations
from agentpool_dev.local_stack import LocalStack
from agentpool_dev.provision import STANDIN_RUNTIME_ARN

from .cli_runner import agentpool
from .conftest import Onboarding, running_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def delivering_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Its own stack, because the shared one does not deliver usage logs.
    with running_stack(tmp_path_factory.mktemp("usage-logs")) as stack:
        yield stack


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

    # The log group contains exactly what the stand-in recorded, and the ledger bills all of it.
    assert sorted(messages) == sorted(standin_lines)
    assert len(expected) >= 1
    assert sorted(str(e["event_id"]) for e in entries) == sorted(e.event_id for e in expected)
    assert {e["user_id"] for e in entries} == {user.user_id}
    assert totals["runtime_vcpu_seconds"] == sum((e.vcpu_seconds for e in expected), Decimal(0))
    assert breakdown["cost_usd"] == runtime_cost
    assert runtime_cost > 0


def one_second_record(tenant_id: str, timestamp_ms: int) -> str:
    """A usage record of 1 vCPU-second and 2 GB-seconds in a new session of `tenant_id`."""
    return json.dumps(
        {
            "resource_arn": STANDIN_RUNTIME_ARN,
            "event_timestamp": timestamp_ms,
            "attributes": {"session.id": f"{tenant_id}.{uuid.uuid4()}", "elapsed_time_seconds": 1},
            "metrics": {
                "agent.runtime.vcpu.hours.used": "0.000277777777777778",
                "agent.runtime.memory.gb_hours.used": "0.000555555555555556",
            },
        }
    )


def write_log_events(stack: LocalStack, messages: list[str], timestamp_ms: int) -> str:
    """Write `messages` to a new stream of the runtime usage log group; return its name."""
    logs = stack.client("logs")
    log_group = stack.name("RuntimeUsageLogGroup")
    stream = f"test-{uuid.uuid4().hex[:8]}"
    logs.create_log_stream(logGroupName=log_group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=log_group,
        logStreamName=stream,
        logEvents=[{"timestamp": timestamp_ms, "message": message} for message in messages],
    )
    return stream


def take_dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    """Receive and delete every visible message of the runtime usage dead-letter queue."""
    sqs = stack.client("sqs")
    queue_url = stack.name("RuntimeUsageDeadLetterQueue")
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(message["Body"]) for message in messages]


def test_malformed_record_dead_lettered_valid_billed(
    delivering_stack: LocalStack, delivering_target: operations.Target
) -> None:
    onboard = Onboarding(delivering_target, delivering_stack)
    tenant_id = onboard.tenant("basic")
    now_ms = int(time.time() * 1000)
    stream = write_log_events(
        delivering_stack, [one_second_record(tenant_id, now_ms), "{truncated record"], now_ms
    )
    delivering_stack.wait_for_metering()

    bodies = take_dead_letters(delivering_stack)
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


def test_replay_bills_dead_letter_once(
    delivering_stack: LocalStack, delivering_target: operations.Target, tmp_path: Path
) -> None:
    # The record's tenant is registered only after delivery, so the function dead-letters it.
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    now_ms = int(time.time() * 1000)
    write_log_events(delivering_stack, [one_second_record(tenant_id, now_ms)], now_ms)
    delivering_stack.wait_for_metering()
    operations.create_tenant(delivering_target, tenant_id, f"Tenant {tenant_id}", "basic")
    assert delivering_stack.state is not None
    state_file = tmp_path / "local-stack.json"
    delivering_stack.state.save(state_file)

    replay = agentpool(state_file, "runtime-usage", "replay")
    again = agentpool(state_file, "runtime-usage", "replay")
    delivering_stack.wait_for_metering()
    entries = runtime_entries(delivering_target, tenant_id)

    assert replay.returncode == 0, replay.stderr
    assert "Replayed 1 dead-letter message and published 1 Runtime Usage event" in replay.stdout
    assert again.returncode == 0, again.stderr
    assert "Replayed 0 dead-letter messages" in again.stdout
    assert len(entries) == 1
    assert entries[0]["user_id"] == "unknown"


def test_usage_function_log_has_no_record_contents(
    delivering_stack: LocalStack,
) -> None:
    log = Path(delivering_stack.log_dir) / "RuntimeUsageFunction.log"
    text = log.read_text(encoding="utf-8")
    assert "usage records delivered" in text
    assert "truncated record" not in text
    assert "agent.runtime.vcpu.hours.used" not in text
