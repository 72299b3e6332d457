"""Local stand-in for Amazon Bedrock's Converse API (bedrock-runtime).

It serves `POST /model/{modelId}/converse` in Converse's rest-json wire format (botocore
service model bedrock-runtime 2023-09-30), so an unchanged
`boto3.client("bedrock-runtime", endpoint_url=url).converse(...)` works against it. No model
runs: the responses are deterministic and state that they come from a stand-in.

- With `toolConfig` and no `toolResult` in the conversation yet, it returns
  `stopReason: "tool_use"` with one `toolUse` per offered tool, input
  `{"query": <last user text, first 200 characters>}`.
- Otherwise it returns `stopReason: "end_turn"` and a text that starts with
  `[stand-in model <modelId>]` and quotes the tool results, saying which ones failed.

Usage is counted, not invented. `inputTokens` is the token count of the request text (see
`request_text`), `outputTokens` that of the answer text or of the toolUse JSON (see
`output_text`), and `totalTokens` their sum. Mistral model ids are counted with mistral-common's
Tekken tokenizer `tekken_240911.json`, which ships inside the package. Ministral 3's own
tokenizer file is not shipped, so those counts are close to Bedrock's but not exact. Other
model ids use an approximation, ceil(UTF-8 bytes / 4).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mistral_common.tokens.tokenizers.tekken import Tekkenizer

from agentpool.tiers import TIERS
from agentpool_dev.standins.http import (
    HttpRequest,
    HttpResponse,
    StandInServer,
    aws_error,
    json_response,
)

logger = logging.getLogger(__name__)

STAND_IN_LABEL = "[stand-in model {model_id}]"
QUERY_MAX_CHARS = 200
RESULT_QUOTE_MAX_CHARS = 300
TEKKEN_FILE = "tekken_240911.json"
MISTRAL_MODEL_PREFIX = "mistral."

# The error shapes of Converse in the botocore service model: HTTP status and error code.
FAULT_ERRORS: dict[int, str] = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


class _TekkenCounter:
    """Tekken tokenizer, loaded once on first use because loading the vocabulary is slow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokenizer: Any = None

    def count(self, text: str) -> int:
        with self._lock:
            if self._tokenizer is None:
                data = resources.files("mistral_common") / "data" / TEKKEN_FILE
                with resources.as_file(data) as path:
                    self._tokenizer = Tekkenizer.from_file(str(path))
            tokenizer = self._tokenizer
        return len(tokenizer.encode(text, bos=False, eos=False))


_TEKKEN = _TekkenCounter()


def count_tokens(model_id: str, text: str) -> int:
    """Count the tokens of `text` for `model_id`: Tekken for Mistral ids, else an approximation."""
    if model_id.startswith(MISTRAL_MODEL_PREFIX):
        return _TEKKEN.count(text)
    # Approximation for models whose tokenizer is not available offline.
    return math.ceil(len(text.encode()) / 4)


def _json_text(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _tool_result_text(block: dict[str, Any]) -> str:
    parts = []
    for content in block.get("content", []):
        if "text" in content:
            parts.append(content["text"])
        elif "json" in content:
            parts.append(_json_text(content["json"]))
    return "\n".join(parts)


def request_text(body: dict[str, Any]) -> str:
    """Serialise the parts of a Converse request that count as input tokens.

    The parts are joined by newlines in request order. First come the `system` texts. Then,
    for each message, each content block adds one part. A `text` block and a `toolResult`'s
    `text` content are used as is. A `toolUse` input and a `toolResult`'s `json` content are
    written as compact JSON with sorted keys. Tool definitions in `toolConfig` are not counted.
    """
    parts = [block["text"] for block in body.get("system", []) if "text" in block]
    for message in body.get("messages", []):
        for block in message.get("content", []):
            if "text" in block:
                parts.append(block["text"])
            elif "toolUse" in block:
                parts.append(_json_text(block["toolUse"].get("input")))
            elif "toolResult" in block:
                parts.append(_tool_result_text(block["toolResult"]))
    return "\n".join(parts)


def output_text(content: list[dict[str, Any]]) -> str:
    """Serialise a response's content blocks for counting output tokens.

    A text response counts its text. A tool-use response counts the compact JSON (sorted keys) of
    the list of `{"name", "input"}` of its toolUse blocks.
    """
    texts = [block["text"] for block in content if "text" in block]
    if texts:
        return "\n".join(texts)
    tool_uses = [
        {"name": block["toolUse"]["name"], "input": block["toolUse"]["input"]}
        for block in content
        if "toolUse" in block
    ]
    return _json_text(tool_uses)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        texts = [block["text"] for block in message.get("content", []) if "text" in block]
        if texts:
            return "\n".join(texts)
    return ""


def _tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        block["toolResult"]
        for message in messages
        for block in message.get("content", [])
        if "toolResult" in block
    ]


def _answer_text(model_id: str, messages: list[dict[str, Any]]) -> str:
    label = STAND_IN_LABEL.format(model_id=model_id)
    results = _tool_results(messages)
    if not results:
        question = _last_user_text(messages)[:QUERY_MAX_CHARS]
        return f"{label} No tool results were given. The question was: {question}"
    lines = [f"{label} Answer from the tenant's retrieved documents:"]
    for result in results:
        quoted = _tool_result_text(result)[:RESULT_QUOTE_MAX_CHARS]
        if result.get("status") == "error":
            lines.append(f"- Tool call {result['toolUseId']} failed or was denied: {quoted}")
        else:
            lines.append(f"- From tool call {result['toolUseId']}: {quoted}")
    return "\n".join(lines)


def _tool_use_content(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body["messages"]
    query = _last_user_text(messages).strip()[:QUERY_MAX_CHARS]
    specs = [tool["toolSpec"] for tool in body["toolConfig"]["tools"] if "toolSpec" in tool]
    # Ids depend only on the conversation length and tool position, so runs repeat exactly.
    return [
        {
            "toolUse": {
                "toolUseId": f"tooluse_standin_{len(messages)}_{index}",
                "name": spec["name"],
                "input": {"query": query},
            }
        }
        for index, spec in enumerate(specs)
    ]


@dataclass(frozen=True)
class ConverseRecord:
    """One successful Converse call and the usage that the stand-in reported for it."""

    model_id: str
    stop_reason: str
    usage: dict[str, int]
    # The request's `inferenceConfig.maxTokens`, or None when it set none. Not enforced.
    max_tokens: int | None = None


class BedrockStandIn(StandInServer):
    """Bedrock Converse stand-in for the local stack and tests.

    `model_ids` are the models it serves (default: every tier's model). Others get the
    ValidationException that Bedrock returns for an invalid model identifier.
    """

    name = "bedrock-standin"

    def __init__(self, port: int = 0, model_ids: tuple[str, ...] | None = None) -> None:
        super().__init__(port)
        self.model_ids = model_ids or tuple(tier.model_id for tier in TIERS.values())
        self.calls: Counter[str] = Counter()
        self.records: list[ConverseRecord] = []
        self._lock = threading.Lock()
        self._faults: list[int] = []

    def fail_next(self, status: int, count: int = 1) -> None:
        """Make the next `count` Converse calls fail with the error that Bedrock sends for `status`.

        Supported statuses are the keys of FAULT_ERRORS, for example 429 (ThrottlingException)
        and 424 (ModelErrorException). botocore retries 429, 500 and 503 by itself, so a test
        of a failure needs `count` above the client's attempts, or a client without retries.
        """
        if status not in FAULT_ERRORS:
            raise ValueError(
                f"unsupported fault status {status}: use one of {sorted(FAULT_ERRORS)}"
            )
        if count < 1:
            raise ValueError(f"fault count must be at least 1, got {count}")
        with self._lock:
            self._faults.extend([status] * count)

    def call_count(self, model_id: str) -> int:
        with self._lock:
            return self.calls[model_id]

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path == "/_standin/faults":
            return self._handle_faults(request)
        parts = request.path.split("/")
        is_converse = len(parts) == 4 and parts[1] == "model" and parts[3] == "converse"
        if request.method == "POST" and is_converse:
            return self._converse(urllib.parse.unquote(parts[2]), request)
        return aws_error(404, "UnknownOperationException", f"{request.method} {request.path}")

    def _handle_faults(self, request: HttpRequest) -> HttpResponse:
        try:
            document = request.json()
            self.fail_next(int(document["status"]), int(document.get("count", 1)))
        except (ValueError, KeyError, TypeError) as error:
            return json_response(400, {"message": f"invalid fault request: {error}"})
        return json_response(200, {"status": document["status"], "count": document.get("count", 1)})

    def _take_fault(self) -> int | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _converse(self, model_id: str, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        if model_id not in self.model_ids:
            return aws_error(
                400, "ValidationException", "The provided model identifier is invalid."
            )
        try:
            body = request.json()
        except ValueError:
            return aws_error(400, "ValidationException", "The request body is not valid JSON.")
        if not isinstance(body, dict) or not body.get("messages"):
            return aws_error(400, "ValidationException", "The request must contain messages.")
        fault = self._take_fault()
        if fault is not None:
            return self._fault_response(fault, model_id)

        wants_tools = bool(body.get("toolConfig")) and not _tool_results(body["messages"])
        if wants_tools:
            stop_reason = "tool_use"
            content = _tool_use_content(body)
        else:
            stop_reason = "end_turn"
            content = [{"text": _answer_text(model_id, body["messages"])}]
        input_tokens = count_tokens(model_id, request_text(body))
        output_tokens = count_tokens(model_id, output_text(content))
        usage = {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens,
        }
        with self._lock:
            self.calls[model_id] += 1
            max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens")
            self.records.append(ConverseRecord(model_id, stop_reason, dict(usage), max_tokens))
        logger.info("converse stand-in returned model_id=%s stop_reason=%s", model_id, stop_reason)
        return json_response(
            200,
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop_reason,
                "usage": usage,
                "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)},
            },
        )

    def _fault_response(self, status: int, model_id: str) -> HttpResponse:
        error_type = FAULT_ERRORS[status]
        message = f"Stand-in fault injected for a test: {error_type}."
        if error_type == "ModelErrorException":
            return aws_error(
                status, error_type, message, originalStatusCode=500, resourceName=model_id
            )
        return aws_error(status, error_type, message)
