"""The aggregator Lambda with moto DynamoDB, driven by the sample events in events/."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from pydantic import ValidationError

from agentpool.events import parse_envelope
from agentpool.ledger import RecordResult
from tests.unit.pricing_support import LEDGER_TABLE, TOTALS_TABLE, LedgerStack, set_fake_credentials

ROOT = Path(__file__).resolve().parents[2]
APP_PATH = ROOT / "functions" / "aggregator" / "app.py"
EVENTS = ROOT / "events"
SAMPLE_TYPES = ("invocation-completed", "model-usage", "tool-invoked", "runtime-usage")
MONTH = "month#2026-03"
# Prices of the shipped catalog: model usage 0.0005223, one tool call 0.000005, runtime
# 0.000124420138888... rounded to 12 places, and the completed invocation 0.
BATCH_COST = Decimal("0.000651720139")


@dataclass
class FakeContext:
    function_name: str = "aggregator"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:aggregator"
    aws_request_id: str = "11111111-2222-4333-8444-555555555555"


class CurrentStdout:
    """A stream that writes to whatever `sys.stdout` is now, as pytest swaps it per phase."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"aggregator_app_{uuid.uuid4().hex}", APP_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.logger.registered_handler.setStream(CurrentStdout())
    return module


def sample_batch() -> dict[str, Any]:
    batch: dict[str, Any] = json.loads((EVENTS / "aggregator-sqs-batch.json").read_text())
    return batch


def message_ids(batch: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in batch["Records"]]


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def emf_documents(output: str) -> list[dict[str, Any]]:
    documents = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [document for document in documents if "_aws" in document]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_fake_credentials(monkeypatch)
    monkeypatch.setenv("LEDGER_TABLE", LEDGER_TABLE)
    monkeypatch.setenv("TOTALS_TABLE", TOTALS_TABLE)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "agentpool-test")
    # Powertools configures a logger once per service name, so a new name per test gives
    # each test a logger of its own.
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", f"aggregator-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def stack(environment: None) -> Iterator[LedgerStack]:
    with mock_aws():
        yield LedgerStack()


@pytest.fixture
def app(stack: LedgerStack) -> Iterator[ModuleType]:
    package_logger = logging.getLogger("agentpool")
    saved = (package_logger.handlers, package_logger.propagate, package_logger.level)
    yield load_app()
    # The app gives the agentpool logger its handler; other tests expect the default one.
    package_logger.handlers, package_logger.propagate, package_logger.level = saved


def test_batch_reports_only_malformed_message(app: ModuleType) -> None:
    batch = sample_batch()
    response = app.lambda_handler(batch, FakeContext())
    assert failures(response) == [message_ids(batch)[5]]


def test_batch_records_each_event_once(app: ModuleType, stack: LedgerStack) -> None:
    app.lambda_handler(sample_batch(), FakeContext())
    assert len(stack.ledger_entries()) == 4
    assert stack.counter("acme", MONTH, "events") == Decimal(4)
    assert stack.counter("acme", MONTH, "model_calls") == Decimal(2)
    assert stack.counter("acme", MONTH, "invocations") == Decimal(1)
    assert stack.counter("acme", MONTH, "cost_usd") == BATCH_COST
    assert stack.tier_counter("premium", MONTH, "cost_usd") == BATCH_COST


def test_redelivered_batch_changes_nothing(app: ModuleType, stack: LedgerStack) -> None:
    app.lambda_handler(sample_batch(), FakeContext())
    response = app.lambda_handler(sample_batch(), FakeContext())
    assert failures(response) == [message_ids(sample_batch())[5]]
    assert stack.counter("acme", MONTH, "events") == Decimal(4)
    assert stack.counter("acme", MONTH, "cost_usd") == BATCH_COST


def test_batch_makes_one_ledger_call(app: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    record = app.ledger.record

    def counting_record(events: list[Any]) -> RecordResult:
        calls.append(len(events))
        result: RecordResult = record(events)
        return result

    monkeypatch.setattr(app.ledger, "record", counting_record)
    app.lambda_handler(sample_batch(), FakeContext())
    # Five valid messages, one of them a duplicate delivery, go to the ledger in one call.
    assert calls == [5]


def test_failed_event_reports_its_messages(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = sample_batch()
    model_event_id = parse_envelope(batch["Records"][1]["body"]).event_id
    monkeypatch.setattr(app.ledger, "record", lambda events: RecordResult(failed=[model_event_id]))
    response = app.lambda_handler(batch, FakeContext())
    ids = message_ids(batch)
    # The model usage event arrived in messages 2 and 5, and message 6 is malformed.
    assert sorted(failures(response)) == sorted([ids[5], ids[1], ids[4]])


def test_layer_logs_written_as_json(
    app: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def reject_all(**params: Any) -> None:
        error = {"Error": {"Code": "ValidationException", "Message": "rejected"}}
        raise ClientError(error, "TransactWriteItems")

    monkeypatch.setattr(app.ledger._client, "transact_write_items", reject_all)
    batch = sample_batch()
    response = app.lambda_handler(batch, FakeContext())
    assert len(failures(response)) == len(batch["Records"])
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    rejected = [log for log in logs if log.get("message") == "ledger entry rejected"]
    assert len(rejected) == 4
    assert rejected[0]["name"] == "agentpool.ledger"
    assert rejected[0]["error_code"] == "ValidationException"
    assert rejected[0]["function_request_id"] == FakeContext.aws_request_id


def test_logs_never_contain_body(app: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    batch = sample_batch()
    app.lambda_handler(batch, FakeContext())
    output = capsys.readouterr().out
    logs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    invalid = [log for log in logs if log.get("message") == "invalid metering message"]
    assert len(invalid) == 1
    assert invalid[0]["message_id"] == message_ids(batch)[5]
    assert invalid[0]["error_type"] == "ValidationError"
    assert invalid[0]["validation_errors"] == ["string_pattern_mismatch"]
    assert "ACME#other" not in output
    assert "7c1e3a52-9d4b-4f8e-a6c0-2b5d8e1f0a93" not in output


def test_batch_summary_logged(app: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    app.lambda_handler(sample_batch(), FakeContext())
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    [summary] = [log for log in logs if log.get("message") == "metering batch processed"]
    assert summary["messages"] == 6
    assert summary["malformed"] == 1
    assert summary["recorded"] == 4
    assert summary["duplicates"] == 1
    assert summary["failed"] == 0


def test_metrics_have_tier_dimension_only(
    app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    app.lambda_handler(sample_batch(), FakeContext())
    [document] = emf_documents(capsys.readouterr().out)
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "agentpool-test"
    assert directive["Dimensions"] == [["Tier"]]
    assert document["Tier"] == "premium"
    assert document["EventsPriced"] == [4]
    assert document["UnpricedEvents"] == [0]
    assert document["CostUSD"] == [float(BATCH_COST)]


def test_unpriced_event_counted_in_metrics(
    app: ModuleType, capsys: pytest.CaptureFixture[str], stack: LedgerStack
) -> None:
    batch = sample_batch()
    envelope = json.loads(batch["Records"][1]["body"])
    envelope["detail"]["model_id"] = "unknown.model"
    batch["Records"] = [{**batch["Records"][1], "body": json.dumps(envelope)}]
    response = app.lambda_handler(batch, FakeContext())
    assert failures(response) == []
    [document] = emf_documents(capsys.readouterr().out)
    assert document["UnpricedEvents"] == [1]
    assert document["EventsPriced"] == [0]
    assert stack.counter("acme", MONTH, "unpriced_events") == Decimal(1)


def test_body_that_is_not_json_is_malformed(app: ModuleType) -> None:
    batch = sample_batch()
    batch["Records"] = [{**batch["Records"][0], "body": "not json"}]
    response = app.lambda_handler(batch, FakeContext())
    assert failures(response) == [batch["Records"][0]["messageId"]]


def test_float_quantity_read_exactly(app: ModuleType, stack: LedgerStack) -> None:
    batch = sample_batch()
    envelope = json.loads(batch["Records"][3]["body"])
    # A JSON number with a fraction is read as Decimal, so 0.1 stays exactly 0.1.
    envelope["detail"]["vcpu_seconds"] = 0.1
    envelope["detail"]["memory_gb_seconds"] = 0
    batch["Records"] = [{**batch["Records"][3], "body": json.dumps(envelope)}]
    app.lambda_handler(batch, FakeContext())
    [entry] = stack.ledger_entries()
    assert entry["quantities"]["vcpu_seconds"] == Decimal("0.1")


def test_missing_setting_fails_at_cold_start(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEDGER_TABLE")
    with pytest.raises(ValidationError, match="LEDGER_TABLE"):
        load_app()


@pytest.mark.parametrize("name", SAMPLE_TYPES)
def test_sample_event_parses(name: str) -> None:
    envelope = (EVENTS / f"{name}.json").read_text()
    event = parse_envelope(envelope)
    assert event.detail_type == json.loads(envelope)["detail-type"]  # type: ignore[attr-defined]


def test_sample_batch_matches_event_files() -> None:
    bodies = [json.loads(record["body"]) for record in sample_batch()["Records"]]
    samples = [json.loads((EVENTS / f"{name}.json").read_text()) for name in SAMPLE_TYPES]
    assert bodies[:4] == samples
    assert bodies[4] == samples[1]
