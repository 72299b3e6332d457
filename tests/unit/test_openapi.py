"""docs/openapi.yaml matches the template's API routes and the usage API's pydantic models."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from agentpool_dev.export_openapi import generated_schemas, load_spec, main, stale_schemas
from agentpool_dev.template import Template

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_spec_is_valid_openapi() -> None:
    validate(load_spec())


def test_paths_match_template_routes() -> None:
    routes = {(route.path, route.method) for route in Template().api_routes()}
    assert spec_operations(load_spec()) == routes


def test_component_schemas_match_models() -> None:
    # On failure, run `python -m agentpool_dev.export_openapi` and commit docs/openapi.yaml.
    assert stale_schemas() == []


def test_check_exit_status_clean() -> None:
    assert main(["--check"]) == 0


def test_usage_routes_return_usage_schema() -> None:
    paths = load_spec()["paths"]
    for path in ("/usage", "/admin/tenants/{tenantId}/usage"):
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/UsageResponse"}, path


def test_usage_routes_document_errors() -> None:
    paths = load_spec()["paths"]
    for path in ("/usage", "/admin/tenants/{tenantId}/usage"):
        assert set(paths[path]["get"]["responses"]) == {"200", "400", "401", "403"}, path


def test_generated_schemas_use_camel_case() -> None:
    properties = generated_schemas()["UsageCounters"]["properties"]
    assert "costUsd" in properties
    assert "cost_usd" not in properties
