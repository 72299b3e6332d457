"""Make moto's TransactWriteItems fast enough for tests with thousands of events.

moto (5.x) backs up every table a transaction touches with `copy.deepcopy` of the whole
table, once per action. So each transaction takes time in proportion to the table size, and a
test with thousands of ledger entries runs for many minutes. `fast_transactions` keeps moto's
own condition logic but backs up only the items the transaction touches, and restores those
items when moto cancels the transaction.

It also applies the ledger's unconditional `ADD #c0 :c0, #c1 :c1, ...` updates of numbers
directly, because moto's update expression validator spends milliseconds on each. Every
other update goes through moto.
"""

from __future__ import annotations

import copy
import re
import types
from decimal import Decimal
from typing import Any

import pytest
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_original_transact = dynamodb_models.DynamoDBBackend.transact_write_items
_original_update = dynamodb_models.DynamoDBBackend.update_item
_NUMERIC_ADD = re.compile(r"^ADD (#c\d+ :c\d+)(, #c\d+ :c\d+)*$")


def _table_backup_skipped(value: Any, memo: Any = None) -> Any:
    # The item backups below replace moto's whole-table backup, so a table is not copied.
    if isinstance(value, Table):
        return value
    return copy.deepcopy(value, memo)


def _key_of(table: Table, op_type: str, op: dict[str, Any]) -> tuple[DynamoType, Any]:
    attributes = op["Item"] if op_type == "Put" else op["Key"]
    hash_key = DynamoType(attributes[table.hash_key_attr])
    range_key = (
        DynamoType(attributes[table.range_key_attr]) if table.range_key_attr is not None else None
    )
    return hash_key, range_key


def _restore(table: Table, hash_key: DynamoType, range_key: Any, item: Any) -> None:
    if item is None:
        if table.get_item(hash_key, range_key) is not None:
            table.delete_item(hash_key, range_key)
    elif range_key is not None:
        table.items[hash_key][range_key] = item
    else:
        table.items[hash_key] = item


def _transact_with_item_backups(self: Any, transact_items: list[dict[str, Any]]) -> None:
    backups = []
    for action in transact_items:
        op_type, op = next(iter(action.items()))
        if op.get("TableName") not in self.tables:
            continue
        table = self.tables[op["TableName"]]
        try:
            hash_key, range_key = _key_of(table, op_type, op)
        except KeyError:
            continue  # moto reports the malformed action itself
        current = table.get_item(hash_key, range_key)
        backups.append((table, hash_key, range_key, copy.deepcopy(current)))
    try:
        _original_transact(self, transact_items)
    except Exception:
        for table, hash_key, range_key, item in reversed(backups):
            _restore(table, hash_key, range_key, item)
        raise


def _update_with_numeric_add(self: Any, table_name: str, key: dict[str, Any], **kwargs: Any) -> Any:
    expression = kwargs.get("update_expression") or ""
    values = kwargs.get("expression_attribute_values") or {}
    if (
        kwargs.get("condition_expression")
        or not _NUMERIC_ADD.match(expression)
        or not all("N" in value for value in values.values())
    ):
        return _original_update(self, table_name, key, **kwargs)
    table = self.get_table(table_name)
    hash_key, range_key = _key_of(table, "Update", {"Key": key})
    current = table.get_item(hash_key, range_key)
    attributes = dict(current.to_json()["Attributes"]) if current is not None else dict(key)
    names = kwargs["expression_attribute_names"]
    for pair in expression.removeprefix("ADD ").split(", "):
        name_token, value_token = pair.split(" ")
        name = names[name_token]
        total = Decimal(attributes.get(name, {"N": "0"})["N"]) + Decimal(values[value_token]["N"])
        attributes[name] = {"N": str(total)}
    return table.put_item(attributes)


@pytest.fixture(name="fast_transactions")
def fast_transactions_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_copy = types.SimpleNamespace(deepcopy=_table_backup_skipped)
    monkeypatch.setattr(dynamodb_models, "copy", fake_copy)
    monkeypatch.setattr(
        dynamodb_models.DynamoDBBackend, "transact_write_items", _transact_with_item_backups
    )
    monkeypatch.setattr(dynamodb_models.DynamoDBBackend, "update_item", _update_with_numeric_add)
