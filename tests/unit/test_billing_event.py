"""The Billing Report Generated event: its schema, its sample, and that metering ignores it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from agentpool.events import BillingReportGenerated, parse_envelope
from agentpool_dev.export_schemas import SCHEMA_DIR, schema_file_name
from agentpool_dev.template import Template

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "billing-report-generated.json"


def sample() -> dict[str, object]:
    envelope: dict[str, object] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return envelope


def test_sample_matches_exported_schema() -> None:
    schema_path = SCHEMA_DIR / schema_file_name("Billing Report Generated")
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.validate(sample()["detail"], schema)


def test_sample_parses_as_model() -> None:
    event = BillingReportGenerated.model_validate(sample()["detail"])
    assert event.month == "2026-03"
    assert str(event.total_usd) == "0.0006025"


def test_metering_rule_skips_report_event() -> None:
    rules = Template().of_type("AWS::Events::Rule")
    pattern = rules["MeteringRule"]["Properties"]["EventPattern"]
    assert "Billing Report Generated" not in pattern["detail-type"]


def test_aggregator_rejects_report_event() -> None:
    with pytest.raises(ValueError, match="detail_type"):
        parse_envelope(SAMPLE.read_text(encoding="utf-8"))


def test_report_event_rejects_float_money() -> None:
    detail = dict(sample()["detail"])  # type: ignore[call-overload]
    detail["total_usd"] = 0.1
    with pytest.raises(ValueError, match="float"):
        BillingReportGenerated.model_validate(detail)
