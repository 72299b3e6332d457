"""Every function writes the layer modules' log records, as JSON with its own keys."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest

from agentpool.observability import function_logger

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def test_layer_record_written_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    service = f"logging-{uuid.uuid4().hex[:8]}"
    function_logger({"POWERTOOLS_SERVICE_NAME": service})

    logging.getLogger("agentpool.admission").info("request throttled")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert [(line["message"], line["level"]) for line in lines] == [("request throttled", "INFO")]


@pytest.mark.parametrize("app", sorted(FUNCTIONS.glob("*/app.py")), ids=lambda p: p.parent.name)
def test_function_builds_logger_with_layer_handler(app: Path) -> None:
    # A bare Powertools Logger() leaves the layer's INFO records without a handler.
    source = app.read_text()
    assert "Logger()" not in source
    assert "function_logger()" in source or "observability_from_env()" in source
