"""Benchmark probe for local Lambda workers, loaded by Python's `site` at start-up.

The request path benchmark puts this folder first on a worker's PYTHONPATH and sets
AGENTPOOL_BENCH_RECORDS to a file. With that variable unset the module does nothing. With it
set, every botocore session counts its API calls through a `before-call` event hook, and the
worker's handler (the module `app`'s `lambda_handler`, as lambda_worker imports it) is wrapped
so that each invocation appends one JSON line to the file:

- `wall_ms` and `cpu_ms`: `time.perf_counter` and `time.process_time` around the whole handler,
  Powertools decorators included;
- `agent_wall_ms` and `agent_cpu_ms`: the same clocks around `AgentRuntime.invoke`, which
  sends InvokeAgentRuntime and waits for the agent;
- `sdk_cpu_ms` and `sdk_wall_ms`: the same clocks inside botocore's
  `BaseClient._make_api_call` (serialize, sign, send, wait, parse) of every AWS call except
  InvokeAgentRuntime;
- `events_published`: the entries of every PutEvents call, which EventBridge bills one by one;
- `calls`: AWS API calls by `service.Operation`, counted once per call (botocore retries of a
  call are not counted again).

It never changes what the handler returns or raises.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import time
from collections import Counter
from typing import Any

RECORDS_PATH = os.environ.get("AGENTPOOL_BENCH_RECORDS")
HANDLER_MODULE = "app"
HANDLER_NAME = "lambda_handler"

_calls: Counter[str] = Counter()
_agent = {"wall": 0.0, "cpu": 0.0}
_sdk = {"cpu": 0.0, "wall": 0.0}
_published = {"entries": 0}
AGENT_OPERATION = "InvokeAgentRuntime"


def _count_call(model: Any, **_: Any) -> None:
    _calls[f"{model.service_model.service_name}.{model.name}"] += 1


def _count_entries(params: dict[str, Any], **_: Any) -> None:
    _published["entries"] += len(params.get("Entries") or [])


def _install_call_counter() -> None:
    import botocore.session  # noqa: PLC0415 - only when the probe is on

    original_init = botocore.session.Session.__init__

    @functools.wraps(original_init)
    def init_and_register(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.register("before-call", _count_call)
        self.register("before-parameter-build.events.PutEvents", _count_entries)

    botocore.session.Session.__init__ = init_and_register

    import botocore.client  # noqa: PLC0415 - only when the probe is on

    original_call = botocore.client.BaseClient._make_api_call

    @functools.wraps(original_call)
    def timed_call(self: Any, operation_name: str, api_params: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original_call(self, operation_name, api_params)
        finally:
            if operation_name != AGENT_OPERATION:
                _sdk["cpu"] += time.process_time() - cpu
                _sdk["wall"] += time.perf_counter() - wall

    botocore.client.BaseClient._make_api_call = timed_call


def _time_agent_calls() -> None:
    from agentpool.agent_runtime import AgentRuntime  # noqa: PLC0415 - only when the probe is on

    original_invoke = AgentRuntime.invoke

    @functools.wraps(original_invoke)
    def timed_invoke(self: Any, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original_invoke(self, *args, **kwargs)
        finally:
            _agent["wall"] += time.perf_counter() - wall
            _agent["cpu"] += time.process_time() - cpu

    AgentRuntime.invoke = timed_invoke  # type: ignore[method-assign]


def _timed_handler(handler: Any) -> Any:
    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        _calls.clear()
        _agent.update(wall=0.0, cpu=0.0)
        _sdk.update(cpu=0.0, wall=0.0)
        _published.update(entries=0)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return handler(event, context)
        finally:
            cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - wall
            request_context = event.get("requestContext") or {} if isinstance(event, dict) else {}
            record = {
                "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
                "api_request_id": request_context.get("requestId"),
                "wall_ms": wall_s * 1000,
                "cpu_ms": cpu_s * 1000,
                "agent_wall_ms": _agent["wall"] * 1000,
                "agent_cpu_ms": _agent["cpu"] * 1000,
                "sdk_cpu_ms": _sdk["cpu"] * 1000,
                "sdk_wall_ms": _sdk["wall"] * 1000,
                "events_published": _published["entries"],
                "calls": dict(_calls),
            }
            assert RECORDS_PATH is not None  # noqa: S101 - the probe is on only when set
            with open(RECORDS_PATH, "a", encoding="utf-8") as records:
                records.write(json.dumps(record) + "\n")

    return run


def _install_handler_wrapper() -> None:
    original_import = importlib.import_module

    def import_and_wrap(name: str, package: str | None = None) -> Any:
        module = original_import(name, package)
        if name == HANDLER_MODULE and hasattr(module, HANDLER_NAME):
            setattr(module, HANDLER_NAME, _timed_handler(getattr(module, HANDLER_NAME)))
        return module

    importlib.import_module = import_and_wrap


if RECORDS_PATH:
    _install_call_counter()
    _time_agent_calls()
    _install_handler_wrapper()
