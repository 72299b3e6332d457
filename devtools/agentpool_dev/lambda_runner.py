"""Run the template's Lambda functions locally, each in its own worker processes.

Every function gets its own processes with its own environment, as in Lambda, so module
state and settings never leak between functions. A pool keeps up to `max_concurrency` warm
workers per function. A worker that exceeds the function's timeout is killed, like a
Lambda execution environment that times out.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)


class FunctionError(Exception):
    """The handler raised, or the invocation timed out, as Lambda would report it."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout_seconds: int
    log_path: Path


class _Worker:
    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self._log: IO[bytes] = spec.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-m", "agentpool_dev.lambda_worker", str(spec.code_dir), spec.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=spec.environment,
            text=True,
            bufsize=1,
        )
        ready = self._read_line(timeout=60)
        if ready != {"ready": True}:
            self.kill()
            raise FunctionError("Runtime.ImportError", f"{spec.logical_id} failed to start")

    def _read_line(self, timeout: float) -> dict[str, Any] | None:
        result: list[str] = []
        assert self.process.stdout is not None  # noqa: S101 - set by Popen above
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(timeout)
        if reader.is_alive() or not result or not result[0]:
            return None
        parsed: dict[str, Any] = json.loads(result[0])
        return parsed

    def invoke(self, event: Any, client_context: dict[str, Any] | None) -> Any:
        request = {
            "event": event,
            "client_context": client_context,
            "request_id": str(uuid.uuid4()),
            "timeout_seconds": self.spec.timeout_seconds,
        }
        assert self.process.stdin is not None  # noqa: S101 - set by Popen above
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        response = self._read_line(timeout=self.spec.timeout_seconds + 1)
        if response is None:
            self.kill()
            raise FunctionError(
                "Sandbox.Timedout",
                f"{self.spec.logical_id} timed out after {self.spec.timeout_seconds} s",
            )
        if "error" in response:
            raise FunctionError(response["error"]["errorType"], response["error"]["errorMessage"])
        return response["result"]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()


class FunctionPool:
    """Warm workers of one function; at most `max_concurrency` run at once."""

    def __init__(self, spec: FunctionSpec, max_concurrency: int = 4) -> None:
        self.spec = spec
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.invocations = 0

    def invoke(self, event: Any, client_context: dict[str, Any] | None = None) -> Any:
        with self._slots:
            worker = self._acquire()
            try:
                return worker.invoke(event, client_context)
            finally:
                self._release(worker)

    def _acquire(self) -> _Worker:
        with self._lock:
            self.invocations += 1
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
        worker = _Worker(self.spec)
        with self._lock:
            self._all.append(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        if worker.alive:
            with self._lock:
                self._idle.append(worker)

    def stop(self) -> None:
        with self._lock:
            workers, self._all, self._idle = self._all, [], []
        for worker in workers:
            if worker.process.stdin:
                worker.process.stdin.close()
            worker.kill()


class LambdaRunner:
    """All function pools of the local stack, by logical id."""

    def __init__(self) -> None:
        self.pools: dict[str, FunctionPool] = {}

    def add(self, spec: FunctionSpec, max_concurrency: int = 4) -> None:
        self.pools[spec.logical_id] = FunctionPool(spec, max_concurrency)

    def invoke(
        self, logical_id: str, event: Any, client_context: dict[str, Any] | None = None
    ) -> Any:
        return self.pools[logical_id].invoke(event, client_context)

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()


def base_environment() -> dict[str, str]:
    """Return the parent environment variables that a Lambda process may inherit, such as PATH."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
    return {key: os.environ[key] for key in keep if key in os.environ}
