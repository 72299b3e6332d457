"""The local stack as the benchmarks run it: a zero-latency agent and a probed invoke function.

Everything else is the local stack of `make run` (devtools/agentpool_dev/local_stack.py) on
free ports. The agent app is replaced by benchmarks/agent_stub.py, and the invoke function's
workers load benchmarks/shim/sitecustomize.py, which records each invocation's time and AWS
calls in `records_path`.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from agentpool_dev.lambda_runner import base_environment
from agentpool_dev.local_stack import LocalStack, Ports, _wait_for_http

BENCH_DIR = Path(__file__).resolve().parent
SHIM_DIR = BENCH_DIR / "shim"
PROBED_FUNCTION = "InvokeFunction"


class BenchStack(LocalStack):
    def __init__(self, log_dir: Path, records_path: Path) -> None:
        super().__init__(ports=Ports.free(), log_dir=log_dir, state_file=None, max_concurrency=4)
        self.records_path = records_path

    def _start_agent(self) -> None:
        log = self._log("agent-stub")
        environment = {
            **base_environment(),
            "PYTHONPATH": os.pathsep.join([str(BENCH_DIR.parent / "layers" / "shared")]),
        }
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, str(BENCH_DIR / "agent_stub.py"), str(self.ports.agent)],
            stdout=log,
            stderr=log,
            env=environment,
        )
        self._processes.append(process)
        _wait_for_http(f"http://127.0.0.1:{self.ports.agent}/ping", 30, process)

    def _start_functions(self) -> None:
        super()._start_functions()
        pool = self.runner.pools[PROBED_FUNCTION]
        environment = dict(pool.spec.environment)
        environment["PYTHONPATH"] = os.pathsep.join([str(SHIM_DIR), environment["PYTHONPATH"]])
        environment["AGENTPOOL_BENCH_RECORDS"] = str(self.records_path)
        # Workers start on first use, so every worker of the pool gets the probe.
        pool.spec = dataclasses.replace(pool.spec, environment=environment)
