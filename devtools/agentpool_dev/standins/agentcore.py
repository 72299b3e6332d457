"""Local stand-in for the Amazon Bedrock AgentCore data plane (bedrock-agentcore).

It serves two operations of the botocore service model bedrock-agentcore 2024-02-28:

- InvokeAgentRuntime, `POST /runtimes/{agentRuntimeArn}/invocations?qualifier=...`. The body
  is forwarded to the agent app's `POST {agent_url}/invocations` with the runtime session id
  header, which the bedrock-agentcore SDK reads into `context.session_id`. The agent's body
  comes back with status 200, so `invoke_agent_runtime(...)["response"].read()` returns it.
- InvokeWebSearch, `POST /web-search/{webSearchId}/invoke`, with canned results that state
  that they come from a stand-in.
- the AgentCore Memory operations of `memory` (agentpool_dev.standins.memory), because boto3
  sends them to the same bedrock-agentcore endpoint.

Each invocation is recorded with its runtime session id and wall-clock seconds, which is what
AgentCore Runtime bills by. A real runtime session stays alive between invocations and bills
its idle time too. This stand-in does not model that.

`usage_log_records()` turns an invocation into USAGE_LOGS records, one per runtime session
and started second, with the fields that AgentCore's runtime observability guide lists
(agentpool.runtime_usage). The stand-in charges a fixed allocation of `USAGE_VCPUS` and
`USAGE_MEMORY_GB` for the whole invocation, while AgentCore reports what a session consumed.
With a `usage_log_sink`, each invocation's records are passed to it before the response
returns. The local stack's sink writes them to the runtime usage log group, as AgentCore's
vended log delivery does in AWS. `usage_log_lines()` returns the records of every invocation
so far, as JSON lines.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentpool_dev.standins.http import (
    HttpRequest,
    HttpResponse,
    StandInServer,
    aws_error,
    json_response,
)
from agentpool_dev.standins.memory import MemoryStandIn

logger = logging.getLogger(__name__)

SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
USER_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-User-Id"
REQUEST_ID_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
SESSION_ID_MIN_LENGTH = 33
SESSION_ID_MAX_LENGTH = 256
RUNTIME_ARN_PATTERN = re.compile(
    r"^arn:aws[a-z-]*:bedrock-agentcore:[a-z0-9-]+:\d{12}:runtime/[A-Za-z0-9_-]+$"
)
WEB_SEARCH_QUERY_MAX_LENGTH = 200
WEB_SEARCH_MAX_RESULTS = 25
WEB_SEARCH_DEFAULT_RESULTS = 3
DEFAULT_AGENT_TIMEOUT_SECONDS = 120.0
# The allocation that usage log records charge for each second of an invocation.
USAGE_VCPUS = 1.0
USAGE_MEMORY_GB = 2.0
USAGE_REGION = "us-east-1"

# Error shapes of InvokeAgentRuntime in the botocore service model, by HTTP status.
FAULT_ERRORS: dict[int, str] = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    424: "RuntimeClientError",
    429: "ThrottlingException",
    500: "InternalServerException",
}


@dataclass(frozen=True)
class RuntimeInvocationRecord:
    """One InvokeAgentRuntime call that reached the agent, timed by wall clock."""

    agent_runtime_arn: str
    qualifier: str | None
    runtime_session_id: str
    runtime_user_id: str | None
    started_at: float
    duration_seconds: float
    agent_status: int | None
    returned_status: int


@dataclass(frozen=True)
class _Fault:
    status: int
    after_agent_ran: bool


def _validation_error(message: str, field: str | None = None) -> HttpResponse:
    fields: dict[str, Any] = {"reason": "FieldValidationFailed"}
    if field is not None:
        fields["fieldList"] = [{"name": field, "message": message}]
    return aws_error(400, "ValidationException", message, **fields)


def _fault_response(status: int) -> HttpResponse:
    error_type = FAULT_ERRORS[status]
    message = f"Stand-in fault injected for a test: {error_type}."
    if error_type == "ValidationException":
        return _validation_error(message)
    return aws_error(status, error_type, message)


class AgentCoreStandIn(StandInServer):
    """AgentCore data plane stand-in that forwards invocations to one agent app at `agent_url`."""

    name = "agentcore-standin"

    def __init__(
        self,
        agent_url: str,
        port: int = 0,
        agent_timeout_seconds: float = DEFAULT_AGENT_TIMEOUT_SECONDS,
        memory: MemoryStandIn | None = None,
        usage_log_sink: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        super().__init__(port)
        self.usage_log_sink = usage_log_sink
        self.memory = memory or MemoryStandIn()
        self.agent_url = agent_url.rstrip("/")
        self.agent_timeout_seconds = agent_timeout_seconds
        self.records: list[RuntimeInvocationRecord] = []
        self.web_search_queries: list[str] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()

    def fail_next(self, status: int, count: int = 1, after_agent_ran: bool = False) -> None:
        """Make the next `count` InvokeAgentRuntime calls fail with the error for `status`.

        With `after_agent_ran`, the agent runs first and its response is dropped, as when a
        connection breaks after the agent finished. botocore retries 429 and 500 by itself,
        so a caller that retries would run the agent again.
        """
        if status not in FAULT_ERRORS:
            raise ValueError(
                f"unsupported fault status {status}: use one of {sorted(FAULT_ERRORS)}"
            )
        if count < 1:
            raise ValueError(f"fault count must be at least 1, got {count}")
        with self._lock:
            self._faults.extend([_Fault(status, after_agent_ran)] * count)

    def invocation_count(self, runtime_session_id: str) -> int:
        with self._lock:
            return sum(1 for r in self.records if r.runtime_session_id == runtime_session_id)

    def usage_log_lines(self) -> list[str]:
        """Return USAGE_LOGS records of every recorded invocation, one JSON line per second."""
        with self._lock:
            records = list(self.records)
        return [
            json.dumps(record, separators=(",", ":"))
            for invocation in records
            for record in usage_log_records(invocation)
        ]

    def session_seconds(self, runtime_session_id: str) -> float:
        """Sum the wall-clock seconds of the session's invocations."""
        with self._lock:
            return sum(
                r.duration_seconds
                for r in self.records
                if r.runtime_session_id == runtime_session_id
            )

    def handle(self, request: HttpRequest) -> HttpResponse:
        if self.memory.handles(request):
            return self.memory.handle(request)
        parts = request.path.split("/")
        if request.method != "POST":
            return aws_error(404, "UnknownOperationException", f"{request.method} {request.path}")
        if request.path == "/_standin/faults":
            return self._handle_faults(request)
        if len(parts) == 4 and parts[1] == "runtimes" and parts[3] == "invocations":
            return self._invoke_agent_runtime(urllib.parse.unquote(parts[2]), request)
        if len(parts) == 4 and parts[1] == "web-search" and parts[3] == "invoke":
            return self._invoke_web_search(urllib.parse.unquote(parts[2]), request)
        return aws_error(404, "UnknownOperationException", f"{request.method} {request.path}")

    def _handle_faults(self, request: HttpRequest) -> HttpResponse:
        try:
            document = request.json()
            self.fail_next(
                int(document["status"]),
                int(document.get("count", 1)),
                bool(document.get("after_agent_ran", False)),
            )
        except (ValueError, KeyError, TypeError) as error:
            return json_response(400, {"message": f"invalid fault request: {error}"})
        return json_response(200, {"status": document["status"]})

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _invoke_agent_runtime(self, runtime_arn: str, request: HttpRequest) -> HttpResponse:
        if not RUNTIME_ARN_PATTERN.fullmatch(runtime_arn):
            return _validation_error(
                f"agentRuntimeArn {runtime_arn!r} is not a runtime ARN", "agentRuntimeArn"
            )
        session_id = request.header(SESSION_HEADER)
        if session_id is None or not (
            SESSION_ID_MIN_LENGTH <= len(session_id) <= SESSION_ID_MAX_LENGTH
        ):
            return _validation_error(
                f"runtimeSessionId must be {SESSION_ID_MIN_LENGTH} to {SESSION_ID_MAX_LENGTH} "
                "characters long",
                "runtimeSessionId",
            )
        fault = self._take_fault()
        if fault is not None and not fault.after_agent_ran:
            logger.info("invoke fault injected status=%d session_id=%s", fault.status, session_id)
            return _fault_response(fault.status)

        started_at = time.time()
        started = time.monotonic()
        agent_status, agent_body, content_type = self._call_agent(session_id, request)
        duration = time.monotonic() - started

        if fault is not None:
            response = _fault_response(fault.status)
        elif agent_status is None or not 200 <= agent_status < 300:
            # Status 424 is the RuntimeClientError shape in the service model. AgentCore returns
            # it when the agent container returns an error (awslabs/agentcore-samples issue 314).
            response = aws_error(
                424,
                "RuntimeClientError",
                f"Received error ({agent_status}) from runtime. This is the local stand-in: "
                "check the agent process's log.",
            )
        else:
            response = HttpResponse(
                status=200,
                body=agent_body,
                headers={"Content-Type": content_type, SESSION_HEADER: session_id},
            )
        qualifiers = request.query.get("qualifier")
        record = RuntimeInvocationRecord(
            agent_runtime_arn=runtime_arn,
            qualifier=qualifiers[0] if qualifiers else None,
            runtime_session_id=session_id,
            runtime_user_id=request.header(USER_HEADER),
            started_at=started_at,
            duration_seconds=duration,
            agent_status=agent_status,
            returned_status=response.status,
        )
        with self._lock:
            self.records.append(record)
        self._write_usage_logs(record)
        logger.info(
            "runtime invocation finished session_id=%s agent_status=%s status=%d seconds=%.3f",
            session_id,
            agent_status,
            response.status,
            duration,
        )
        return response

    def _write_usage_logs(self, record: RuntimeInvocationRecord) -> None:
        if self.usage_log_sink is None:
            return
        records = usage_log_records(record)
        if not records:
            return
        try:
            self.usage_log_sink(records)
        except Exception:
            # Delivery is separate from the invocation in AWS too, so the response goes on.
            logger.exception(
                "writing usage log records failed session_id=%s records=%d",
                record.runtime_session_id,
                len(records),
            )

    def _call_agent(self, session_id: str, request: HttpRequest) -> tuple[int | None, bytes, str]:
        """POST the payload to the agent. Return its status (None if unreachable), body, type."""
        headers = {
            "Content-Type": request.header("Content-Type") or "application/json",
            "Accept": request.header("Accept") or "application/json",
            SESSION_HEADER: session_id,
            REQUEST_ID_HEADER: str(uuid.uuid4()),
        }
        agent_request = urllib.request.Request(  # noqa: S310 - agent_url is set by the caller.
            f"{self.agent_url}/invocations", data=request.body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                agent_request, timeout=self.agent_timeout_seconds
            ) as agent_response:
                content_type = agent_response.headers.get("Content-Type", "application/json")
                return agent_response.status, agent_response.read(), content_type
        except urllib.error.HTTPError as error:
            logger.warning(
                "agent returned an error status=%d session_id=%s", error.code, session_id
            )
            return error.code, error.read(), "application/json"
        except (urllib.error.URLError, TimeoutError) as error:
            logger.warning(
                "agent call failed error=%s session_id=%s", type(error).__name__, session_id
            )
            return None, b"", "application/json"

    def _invoke_web_search(self, web_search_id: str, request: HttpRequest) -> HttpResponse:
        try:
            body = request.json()
        except ValueError:
            return _validation_error("The request body is not valid JSON.")
        query = body.get("searchQuery") if isinstance(body, dict) else None
        if not isinstance(query, str) or not 1 <= len(query) <= WEB_SEARCH_QUERY_MAX_LENGTH:
            return _validation_error(
                f"searchQuery must be 1 to {WEB_SEARCH_QUERY_MAX_LENGTH} characters long",
                "searchQuery",
            )
        max_results = body.get("maxResults", WEB_SEARCH_DEFAULT_RESULTS)
        if not isinstance(max_results, int) or not 1 <= max_results <= WEB_SEARCH_MAX_RESULTS:
            return _validation_error(
                f"maxResults must be 1 to {WEB_SEARCH_MAX_RESULTS}", "maxResults"
            )
        with self._lock:
            self.web_search_queries.append(query)
        count = min(max_results, WEB_SEARCH_DEFAULT_RESULTS)
        results = [
            {
                "title": f"Stand-in web result {index} ({web_search_id})",
                # The .invalid top-level domain never resolves (RFC 2606).
                "url": f"https://standin.invalid/web-search/{index}",
                "text": (
                    f"Canned result {index} from the local AgentCore web search stand-in, "
                    f"not from the web, for the query: {query}"
                ),
                "publishedAt": "2025-01-01T00:00:00Z",
            }
            for index in range(1, count + 1)
        ]
        return json_response(200, {"results": results})


def usage_log_records(invocation: RuntimeInvocationRecord) -> list[dict[str, Any]]:
    """Split one invocation into USAGE_LOGS records of at most one second each."""
    records = []
    for second in range(math.ceil(invocation.duration_seconds)):
        elapsed = min(1.0, invocation.duration_seconds - second)
        timestamp_ms = int((invocation.started_at + second) * 1000)
        endpoint = invocation.qualifier or "DEFAULT"
        records.append(
            {
                "resource_arn": invocation.agent_runtime_arn,
                "event_timestamp": timestamp_ms,
                "resource": {
                    "cloud.provider": "aws",
                    "service.name": "AgentCore.Runtime",
                    "cloud.region": USAGE_REGION,
                },
                "attributes": {
                    "account.id": invocation.agent_runtime_arn.split(":")[4],
                    "region": USAGE_REGION,
                    "resource.id": f"{invocation.agent_runtime_arn}/runtime-endpoint/{endpoint}",
                    "session.id": invocation.runtime_session_id,
                    "agent.name": invocation.agent_runtime_arn.rsplit("/", 1)[-1],
                    "elapsed_time_seconds": round(elapsed, 3),
                },
                "metrics": {
                    "agent.runtime.vcpu.hours.used": USAGE_VCPUS * elapsed / 3600,
                    "agent.runtime.memory.gb_hours.used": USAGE_MEMORY_GB * elapsed / 3600,
                },
            }
        )
    return records
