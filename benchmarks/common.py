"""Shared helpers of the benchmark suite: percentiles, the result file and the machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "out" / "bench"
RESULTS_PATH = OUT_DIR / "results.json"
# Local AWS credentials for moto; they never reach AWS.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the `fraction` quantile of `values` by linear interpolation (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def load_results() -> dict[str, Any]:
    if RESULTS_PATH.exists():
        results: dict[str, Any] = json.loads(RESULTS_PATH.read_text(encoding="utf-8"))
        return results
    return {}


def save_result(name: str, result: dict[str, Any]) -> None:
    """Store one benchmark's result under `name` in out/bench/results.json."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = load_results()
    results[name] = result
    RESULTS_PATH.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
