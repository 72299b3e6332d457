"""RuntimeUsageFunction with moto: subscription envelopes, rejected records, redelivery."""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from agentpool.events import RuntimeUsage, parse_envelope
from agentpool.log_subscription import (
    InvalidSubscriptionEventError,
    LogEvent,
    SubscriptionBatch,
    decode_subscription_event,
    encode_subscription_event,
)
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.registry import Tenant, TenantRegistry
from tests.unit.dynamo_tables import create_table
from tests.unit.pricing_support import LedgerStack, set_fake_credentials

ROOT = Path(__file__).resolve().parents[2]
APP_PATH = ROOT / "functions" / "runtime_usage" / "app.py"
RUNTIME_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agentpool_agent-AbC123"
LOG_GROUP = "/aws/vendedlogs/bedrock-agentcore/agentpool-dev/runtime-usage"
SESSION_ID = "5f2b9c1d-8e47-4a3b-b6d2-91c0e7f4a6d8"
SESSION = f"clinic-a.{SESSION_ID}"
# 2026-03-10T09:50:35.743Z
TIMESTAMP_MS = 1773136235743
# Text that must never reach the function's log output.
MARKER = "do-not-log-7f3e"


@dataclass
class FakeContext:
    function_name: str = "runtime-usage"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:runtime-usage"
    aws_request_id: str = "11111111-2222-4333-8444-555555555555"


def usage_record(session: str = SESSION, offset_ms: int = 0) -> str:
    """One USAGE_LOGS record of 1 vCPU-second (1/3600 h) and 2 GB-seconds (2/3600 h)."""
    return json.dumps(
        {
            "resource_arn": RUNTIME_ARN,
            "event_timestamp": TIMESTAMP_MS + offset_ms,
            "attributes": {"session.id": session, "elapsed_time_seconds": 1},
            "metrics": {
                "agent.runtime.vcpu.hours.used": "0.000277777777777778",
                "agent.runtime.memory.gb_hours.used": "0.000555555555555556",
            },
        }
    )


def envelope(document: dict[str, Any]) -> dict[str, Any]:
    """Build the Lambda event of a subscription document: JSON, then gzip, then base64."""
    data = base64.b64encode(gzip.compress(json.dumps(document).encode())).decode()
    return {"awslogs": {"data": data}}


def data_document(messages: list[str]) -> dict[str, Any]:
    return {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": LOG_GROUP,
        "logStream": "usage-stream",
        "subscriptionFilters": ["agentpool-dev-RuntimeUsageSubscription"],
        "logEvents": [
            {
                "id": f"3800000000000000000000000000000000000000000000000{index}",
                "timestamp": TIMESTAMP_MS,
                "message": message,
            }
            for index, message in enumerate(messages)
        ],
    }


CONTROL_DOCUMENT = {
    "messageType": "CONTROL_MESSAGE",
    "owner": "CloudwatchLogs",
    "logGroup": "",
    "logStream": "",
    "subscriptionFilters": [],
    "logEvents": [
        {"id": "", "timestamp": TIMESTAMP_MS, "message": "CWL CONTROL MESSAGE: Checking health"}
    ],
}


# ---------------------------------------------------------------- envelope decoding


def test_decode_reads_gzip_base64_envelope() -> None:
    batch = decode_subscription_event(envelope(data_document([usage_record()])))
    assert batch.message_type == "DATA_MESSAGE"
    assert batch.log_group == LOG_GROUP
    assert batch.log_stream == "usage-stream"
    assert batch.owner == "123456789012"
    assert batch.log_events == [
        LogEvent(
            id="38000000000000000000000000000000000000000000000000",
            timestamp=TIMESTAMP_MS,
            message=usage_record(),
        )
    ]


def test_decode_round_trips_encoded_event() -> None:
    batch = decode_subscription_event(envelope(data_document([usage_record(), "x"])))
    assert decode_subscription_event(encode_subscription_event(batch)) == batch


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({}, "no awslogs.data"),
        ({"awslogs": {"data": 5}}, "not a string"),
        ({"awslogs": {"data": "not base64!"}}, "not base64 of gzip"),
        ({"awslogs": {"data": base64.b64encode(b"plain").decode()}}, "not base64 of gzip"),
        (
            {"awslogs": {"data": base64.b64encode(gzip.compress(b"{")).decode()}},
            "is not valid JSON",
        ),
        (envelope({"logEvents": []}), "lacks a valid field"),
        (envelope({"messageType": "DATA_MESSAGE", "logEvents": [{"id": "1"}]}), "lacks"),
    ],
)
def test_decode_rejects_invalid_event(event: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidSubscriptionEventError, match=reason):
        decode_subscription_event(event)


# ------------------------------------------------------------------------ handler


@dataclass
class Stack:
    app: ModuleType
    capture_url: str
    dead_letter_url: str
    sqs: Any

    def published(self) -> list[RuntimeUsage]:
        events = []
        for body in drain(self.sqs, self.capture_url):
            event = parse_envelope(body)
            assert isinstance(event, RuntimeUsage)
            events.append(event)
        return events

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in drain(self.sqs, self.dead_letter_url)]


def drain(sqs: Any, queue_url: str) -> list[str]:
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"runtime_usage_app_{uuid.uuid4().hex}", APP_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    set_fake_credentials(monkeypatch)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(dynamodb, "TenantsTable", "tenants")
        create_table(dynamodb, "SessionsTable", "sessions")
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        TenantRegistry(resource.Table("tenants")).create(
            Tenant(tenant_id="clinic-a", name="Clinic A", tier="basic", status="active")
        )
        resource.Table("sessions").put_item(
            Item={"tenant_id": "clinic-a", "session_id": SESSION_ID, "user_id": "user-1"}
        )
        events = boto3.client("events", region_name="us-east-1")
        events.create_event_bus(Name="metering")
        sqs = boto3.client("sqs", region_name="us-east-1")
        capture_url = sqs.create_queue(QueueName="capture")["QueueUrl"]
        capture_arn = sqs.get_queue_attributes(QueueUrl=capture_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="all", EventBusName="metering", EventPattern=json.dumps({"source": ["agentpool"]})
        )
        events.put_targets(
            Rule="all", EventBusName="metering", Targets=[{"Id": "capture", "Arn": capture_arn}]
        )
        dead_letter_url = sqs.create_queue(QueueName="runtime-usage-dlq")["QueueUrl"]
        monkeypatch.setenv("TENANTS_TABLE", "tenants")
        monkeypatch.setenv("SESSIONS_TABLE", "sessions")
        monkeypatch.setenv("EVENT_BUS_NAME", "metering")
        monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", dead_letter_url)
        yield Stack(load_app(), capture_url, dead_letter_url, sqs)


def test_handler_ignores_control_message(stack: Stack) -> None:
    response = stack.app.lambda_handler(envelope(CONTROL_DOCUMENT), FakeContext())
    assert response == {
        "messageType": "CONTROL_MESSAGE",
        "records": 0,
        "published": 0,
        "rejected": 0,
    }
    assert stack.published() == []
    assert stack.dead_letters() == []


def test_handler_bills_valid_records_of_mixed_batch(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = [
        usage_record(),
        f"{{not json {MARKER}",
        usage_record(session=f"no-such-tenant.{SESSION_ID}"),
        usage_record(offset_ms=1000),
    ]
    response = stack.app.lambda_handler(envelope(data_document(messages)), FakeContext())

    published = stack.published()
    dead_letters = stack.dead_letters()
    assert response["records"] == 4
    assert response["published"] == 2
    assert response["rejected"] == 2
    assert sorted(event.event_time.isoformat() for event in published) == [
        "2026-03-10T09:50:35.743000+00:00",
        "2026-03-10T09:50:36.743000+00:00",
    ]
    assert {event.tenant_id for event in published} == {"clinic-a"}
    assert {event.user_id for event in published} == {"user-1"}
    assert {event.vcpu_seconds for event in published} == {Decimal("1.000000")}
    assert {event.memory_gb_seconds for event in published} == {Decimal("2.000000")}
    assert len(dead_letters) == 1
    assert [item["id"] for item in dead_letters[0]["rejected"]] == [
        "38000000000000000000000000000000000000000000000001",
        "38000000000000000000000000000000000000000000000002",
    ]
    assert dead_letters[0]["rejected"][1]["reason"] == "tenant no-such-tenant is not registered"
    # The dead letter is itself a subscription event of exactly the rejected records.
    replay = decode_subscription_event(dead_letters[0])
    assert [item.message for item in replay.log_events] == messages[1:3]
    assert replay.log_group == LOG_GROUP
    assert MARKER not in capsys.readouterr().out


def test_handler_redelivery_bills_once(stack: Stack) -> None:
    event = envelope(data_document([usage_record(), usage_record(offset_ms=1000)]))
    stack.app.lambda_handler(event, FakeContext())
    stack.app.lambda_handler(event, FakeContext())
    published = stack.published()
    ledger = LedgerStack()
    catalog = default_catalog()
    result = ledger.ledger.record([rate_event(item, catalog) for item in published])

    assert len(published) == 4
    assert len({item.event_id for item in published}) == 2
    assert len(result.recorded) == 2
    assert len(ledger.ledger_entries()) == 2
    assert ledger.counter("clinic-a", "month#2026-03", "runtime_vcpu_seconds") == Decimal("2")


def test_handler_dead_letters_undecodable_event(stack: Stack) -> None:
    event = {"awslogs": {"data": "not base64!"}}
    response = stack.app.lambda_handler(event, FakeContext())
    assert response["rejected"] == 0
    assert stack.published() == []
    assert stack.dead_letters() == [event]


def test_encode_keeps_batch_fields() -> None:
    batch = SubscriptionBatch("DATA_MESSAGE", "1", "group", "stream", ["filter"], [])
    decoded = decode_subscription_event(encode_subscription_event(batch))
    assert decoded == batch
