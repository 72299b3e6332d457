"""The committed JSON Schemas in docs/events/ match the event models in agentpool.events."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from agentpool.events import DETAIL_TYPES
from agentpool_dev.export_schemas import (
    SCHEMA_DIR,
    main,
    render_schemas,
    schema_file_name,
    stale_schema_files,
    write_schemas,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_committed_schemas_match_code() -> None:
    # On failure, run `python -m agentpool_dev.export_schemas` and commit docs/events/.
    assert stale_schema_files() == []


def test_every_detail_type_has_schema() -> None:
    detail_types = (*DETAIL_TYPES, "Billing Report Generated")
    assert sorted(render_schemas()) == sorted(schema_file_name(t) for t in detail_types)


def test_schema_file_name_from_detail_type() -> None:
    assert schema_file_name("Model Usage") == "model-usage.schema.json"


def test_check_reports_changed_schema(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    changed = tmp_path / "tool-invoked.schema.json"
    changed.write_text(changed.read_text(encoding="utf-8").replace("denied", "refused"))
    (tmp_path / "retired.schema.json").write_text("{}\n")
    assert stale_schema_files(tmp_path) == ["retired.schema.json", "tool-invoked.schema.json"]


def test_write_removes_retired_schema(tmp_path: Path) -> None:
    (tmp_path / "retired.schema.json").write_text("{}\n")
    write_schemas(tmp_path)
    assert stale_schema_files(tmp_path) == []


def test_check_exit_status_clean() -> None:
    assert main(["--check"]) == 0


@pytest.mark.parametrize(
    "name",
    ["invocation-completed", "model-usage", "tool-invoked", "runtime-usage", "request-throttled"],
)
def test_sample_event_matches_schema(name: str) -> None:
    envelope = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    schema_path = SCHEMA_DIR / schema_file_name(envelope["detail-type"])
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    jsonschema.validate(envelope["detail"], schema)
