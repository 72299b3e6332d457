"""One local Lambda execution environment: imports a handler once and runs events on it.

Started by `lambda_runner` as `python -m agentpool_dev.lambda_worker CODE_DIR HANDLER`. It reads
one JSON request per line on stdin and writes one JSON response per line on the original
stdout. Anything the handler prints goes to stderr, which the runner collects as the
function's log, as Lambda sends stdout and stderr to CloudWatch Logs.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClientContext:
    custom: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    client: Any = None


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, request_id: str, deadline: float, client_context: ClientContext | None):
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.aws_request_id = request_id
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"))
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self.client_context = client_context
        self.identity = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    code_dir, handler_path = sys.argv[1], sys.argv[2]
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr  # handler output is log output, never protocol
    sys.path.insert(0, code_dir)
    module_name, function_name = handler_path.rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), function_name)
    protocol.write(json.dumps({"ready": True}) + "\n")

    for line in sys.stdin:
        request = json.loads(line)
        custom = request.get("client_context")
        client_context = ClientContext(custom=custom.get("custom", {})) if custom else None
        context = LambdaContext(
            request["request_id"], time.monotonic() + request["timeout_seconds"], client_context
        )
        try:
            result = handler(request["event"], context)
            response: dict[str, Any] = {"result": result}
        except Exception as error:
            traceback.print_exc()
            response = {"error": {"errorType": type(error).__name__, "errorMessage": str(error)}}
        protocol.write(json.dumps(response, default=str) + "\n")


if __name__ == "__main__":
    main()
