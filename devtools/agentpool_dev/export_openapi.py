"""Keep the component schemas of docs/openapi.yaml equal to the API's pydantic models.

Run `python -m agentpool_dev.export_openapi` after changing agentpool.billing.usage, and commit
the result. Paths, parameters and the invocation schemas are written by hand in the file. With
`--check` it writes nothing and exits 1 when the file's generated schemas differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agentpool.billing.usage import ErrorResponse, UsageResponse

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
MODELS: tuple[type[BaseModel], ...] = (UsageResponse, ErrorResponse)


def generated_schemas() -> dict[str, Any]:
    """Return the JSON Schema of each response model and the models it refers to, by name."""
    _, schema = models_json_schema(
        [(model, "serialization") for model in MODELS],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    definitions: dict[str, Any] = schema["$defs"]
    return definitions


def load_spec(path: Path = OPENAPI_PATH) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return spec


def stale_schemas(path: Path = OPENAPI_PATH) -> list[str]:
    """Return the names of generated schemas that are missing from the file or differ."""
    components = load_spec(path).get("components", {}).get("schemas", {})
    return sorted(
        name for name, schema in generated_schemas().items() if components.get(name) != schema
    )


def write_schemas(path: Path = OPENAPI_PATH) -> None:
    spec = load_spec(path)
    spec.setdefault("components", {}).setdefault("schemas", {}).update(generated_schemas())
    path.write_text(yaml.safe_dump(spec, sort_keys=False, width=100), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when a schema differs"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_schemas()
        for name in stale:
            print(f"stale schema in docs/openapi.yaml: {name}", file=sys.stderr)
        return 1 if stale else 0
    write_schemas()
    return 0


if __name__ == "__main__":
    sys.exit(main())
