"""Parsing of EventBridge envelopes into metering events, and the limits on their numbers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agentpool.events import RuntimeUsage, parse_envelope
from agentpool.usage import MAX_TOKENS

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sample(name: str) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return envelope


def test_fraction_parsed_as_decimal() -> None:
    envelope = sample("runtime-usage")
    body = json.dumps(envelope).replace('"3.5"', "3.1000000000000001")
    # As a float, 3.1000000000000001 would become 3.1 and pass the six-decimal limit.
    with pytest.raises(ValidationError, match="decimal places"):
        parse_envelope(body)


def test_number_quantity_kept_exact() -> None:
    envelope = sample("runtime-usage")
    envelope["detail"]["vcpu_seconds"] = 0.1
    event = parse_envelope(json.dumps(envelope))
    assert isinstance(event, RuntimeUsage)
    assert event.vcpu_seconds == Decimal("0.1")


def test_nan_constant_rejected() -> None:
    body = json.dumps(sample("runtime-usage")).replace('"3.5"', "NaN")
    with pytest.raises(ValueError, match="invalid JSON number NaN"):
        parse_envelope(body)


@pytest.mark.parametrize("value", ["-1", "1e13", "0.0000001"])
def test_runtime_quantity_out_of_range_rejected(value: str) -> None:
    envelope = sample("runtime-usage")
    envelope["detail"]["memory_gb_seconds"] = value
    with pytest.raises(ValidationError):
        parse_envelope(json.dumps(envelope))


def test_runtime_quantity_float_rejected() -> None:
    detail = sample("runtime-usage")["detail"]
    with pytest.raises(ValidationError, match="not a float"):
        RuntimeUsage.model_validate({**detail, "vcpu_seconds": 3.5})


def test_token_count_above_max_rejected() -> None:
    envelope = sample("model-usage")
    envelope["detail"]["usage"]["input_tokens"] = MAX_TOKENS + 1
    with pytest.raises(ValidationError):
        parse_envelope(json.dumps(envelope))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"source": "someone-else"}, "not an agentpool", id="source"),
        pytest.param({"detail": "text"}, "no detail object", id="detail"),
        pytest.param({"detail-type": "Tool Invoked"}, "does not match", id="detail-type"),
    ],
)
def test_envelope_mismatch_rejected(change: dict[str, Any], message: str) -> None:
    envelope = {**sample("model-usage"), **change}
    with pytest.raises(ValueError, match=message):
        parse_envelope(json.dumps(envelope))
