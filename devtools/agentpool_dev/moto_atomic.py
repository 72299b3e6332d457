"""Make moto's DynamoDB writes atomic per call, as DynamoDB's are, for concurrent tests.

moto 5 checks a `ConditionExpression` and then applies the write in separate steps, with no
lock between them, so two threads of its server can both pass the same condition. DynamoDB
applies each conditional write atomically, and admission control (agentpool.admission)
depends on that. Serializing moto's item operations with one lock restores the guarantee.

Run `python -m agentpool_dev.moto_atomic -H 127.0.0.1 -p PORT` to start moto's server with the
lock in place. Tests that use `mock_aws` in-process call `serialize_dynamodb_writes()`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main as moto_main

_LOCK = threading.RLock()
_SERIALIZED_METHODS = (
    "get_item",
    "put_item",
    "update_item",
    "delete_item",
    "transact_write_items",
)


def _serialized(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    wrapper.__agentpool_serialized__ = True  # type: ignore[attr-defined]
    return wrapper


def serialize_dynamodb_writes() -> None:
    """Wrap moto's DynamoDB item operations in one process-wide lock. Calling again is a no-op."""
    for name in _SERIALIZED_METHODS:
        method = getattr(DynamoDBBackend, name)
        if not getattr(method, "__agentpool_serialized__", False):
            setattr(DynamoDBBackend, name, _serialized(method))


def main() -> None:
    serialize_dynamodb_writes()
    moto_main()


if __name__ == "__main__":
    main()
