"""Cold start: import and init time of each handler module in a fresh process.

Each sample is a new interpreter that times, with `time.perf_counter`, the import of the
function's `app` module (which runs its init: settings, Powertools, boto3 clients and
resources), with the function's template environment as the local stack sets it. The baseline
is a fresh interpreter that times `import boto3` alone. Interpreter start-up is outside both
timings. Targets and baseline take turns, so load on the machine falls on all of them alike.
No AWS call is made during init; the endpoint points at a closed port on 127.0.0.1 to make sure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentpool_dev.lambda_runner import base_environment
from agentpool_dev.template import REPO_ROOT, Template, resolve
from benchmarks.common import FAKE_CREDENTIALS, median

BASELINE = "import boto3"
TIMED_IMPORT = """
import sys, time
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
{statement}
print((time.perf_counter() - started) * 1000)
"""
# A port that nothing listens on: an unexpected AWS call during init fails at once.
CLOSED_ENDPOINT = "http://127.0.0.1:9"


def placeholder(logical_id: str, attribute: str | None) -> str:
    """Stand in for Ref and GetAtt values; ARNs where the attribute is one."""
    if attribute and attribute.endswith("Arn"):
        return f"arn:aws:iam::123456789012:role/bench-{logical_id}"
    return f"bench-{logical_id}"


def function_environment(template: Template, logical_id: str) -> dict[str, str]:
    variables = resolve(
        template.function_environment(logical_id), placeholder, template.parameter_defaults()
    )
    return {
        **base_environment(),
        **FAKE_CREDENTIALS,
        **{key: str(value) for key, value in variables.items()},
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": CLOSED_ENDPOINT,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        "PYTHONPATH": str(REPO_ROOT / "layers" / "shared"),
        # As in the local stack: no X-Ray daemon runs here.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def sample(statement: str, code_dir: Path, environment: dict[str, str]) -> float:
    completed = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", TIMED_IMPORT.format(statement=statement), str(code_dir)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=code_dir,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{statement} in {code_dir} failed:\n{completed.stderr[-2000:]}")
    return float(completed.stdout.strip().splitlines()[-1])


def run(samples: int = 10) -> dict[str, Any]:
    template = Template()
    targets: dict[str, tuple[str, Path, dict[str, str]]] = {}
    for logical_id in template.functions():
        code_dir = (REPO_ROOT / template.function_setting(logical_id, "CodeUri")).resolve()
        module = template.function_setting(logical_id, "Handler").rsplit(".", 1)[0]
        targets[logical_id] = (
            f"import {module}",
            code_dir,
            function_environment(template, logical_id),
        )
    baseline_environment = {**base_environment(), **FAKE_CREDENTIALS, "AWS_REGION": "us-east-1"}
    targets["boto3"] = (BASELINE, REPO_ROOT, baseline_environment)

    times: dict[str, list[float]] = {name: [] for name in targets}
    ratios: dict[str, list[float]] = {name: [] for name in targets if name != "boto3"}
    for _ in range(samples):
        round_times = {name: sample(*target) for name, target in targets.items()}
        for name, milliseconds in round_times.items():
            times[name].append(milliseconds)
            if name in ratios:
                ratios[name].append(milliseconds / round_times["boto3"])
    return {
        "samples": samples,
        "import_ms": {name: median(values) for name, values in times.items()},
        "ratio_to_boto3": {name: median(values) for name, values in ratios.items()},
        "all_import_ms": times,
    }
