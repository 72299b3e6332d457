"""Create DynamoDB tables in moto from their definitions in template.yaml.

Key schemas, attribute definitions and indexes come from the template, so a test table can
never drift from the deployed one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cfnlint.decode.cfn_yaml import load

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
# Properties that CreateTable accepts and that decide how items are keyed. The others (SSE,
# point-in-time recovery, TTL) are set by separate API calls and do not change the keys.
_CREATE_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
)


def table_properties(logical_id: str, template_path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Return the `Properties` of the AWS::DynamoDB::Table `logical_id` as plain Python data."""
    template = load(str(template_path))
    resource = template["Resources"][logical_id]
    if resource["Type"] != "AWS::DynamoDB::Table":
        raise ValueError(f"{logical_id} is a {resource['Type']}, not an AWS::DynamoDB::Table")
    # cfn-lint returns its own node classes, so a JSON round trip turns them into dicts and strs.
    properties: dict[str, Any] = json.loads(json.dumps(resource["Properties"]))
    return properties


def create_table(dynamodb_client: Any, logical_id: str, table_name: str) -> str:
    """Create `table_name` with the keys and indexes of `logical_id` and return its name."""
    properties = table_properties(logical_id)
    arguments = {key: properties[key] for key in _CREATE_TABLE_KEYS if key in properties}
    dynamodb_client.create_table(TableName=table_name, **arguments)
    return table_name
