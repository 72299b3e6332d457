"""`make bench`: run every benchmark and rewrite docs/benchmarks.md.

Run from the repository root as `python -m benchmarks.run`. Raw results go to
out/bench/results.json, the page to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from benchmarks import aggregation, cold_start, cost, request_path
from benchmarks.common import (
    OUT_DIR,
    REPO_ROOT,
    load_average,
    load_results,
    machine,
    save_result,
)
from benchmarks.render import render
from benchmarks.stack import BenchStack

PAGE = REPO_ROOT / "docs" / "benchmarks.md"
COMMAND = ".venv/bin/python -m benchmarks.run"

logger = logging.getLogger("benchmarks")


REPORTS_TIMEOUT_SECONDS = 300


def run_reports() -> dict[str, Any]:
    """Run benchmarks/reports.py in a process of its own, stopped after a time limit."""
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.reports"],
            capture_output=True,
            text=True,
            timeout=REPORTS_TIMEOUT_SECONDS,
            cwd=REPO_ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {
            "status": "not measured",
            "reason": f"the report run on moto took longer than {REPORTS_TIMEOUT_SECONDS} s",
        }
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "not measured", "reason": f"the report run failed: {last_line}"}
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Run the benchmarks and rewrite docs/benchmarks.md."
    )
    parser.add_argument("--runs", type=int, default=3, help="repeated runs per figure")
    parser.add_argument("--requests", type=int, default=150, help="requests per request path run")
    parser.add_argument(
        "--cold-start-samples", type=int, default=10, help="fresh processes per handler"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the page from out/bench/results.json without measuring again",
    )
    arguments = parser.parse_args()
    if arguments.render_only:
        stored = load_results()
        context = stored.pop("context")
        # The estimates are arithmetic on stored counts, so they follow benchmarks/prices.json.
        stored["cost"] = cost.run(stored["request_path"], stored["aggregation"])
        PAGE.write_text(render(context, stored), encoding="utf-8")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # The stand-ins log every request at INFO; the benchmark sends hundreds.
    logging.getLogger("agentpool_dev").setLevel(logging.WARNING)

    shutil.rmtree(OUT_DIR, ignore_errors=True)
    OUT_DIR.mkdir(parents=True)
    started = time.monotonic()
    context: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_before": load_average(),
        "command": f"make bench (runs {COMMAND})",
        "arguments": vars(arguments),
    }
    results: dict[str, Any] = {}
    stack = BenchStack(OUT_DIR / "logs", OUT_DIR / "invoke-records.jsonl")
    logger.info("starting the local stack")
    stack.start()
    try:
        logger.info("request path: %d runs of %d requests", arguments.runs, arguments.requests)
        results["request_path"] = request_path.run(stack, arguments.runs, arguments.requests)
        stack.wait_for_metering(timeout=120)
        logger.info("aggregation")
        results["aggregation"] = aggregation.run(stack.moto_url, arguments.runs)
    finally:
        stack.stop()
    logger.info("reports")
    results["reports"] = run_reports()
    logger.info("cold start: %d samples per handler", arguments.cold_start_samples)
    results["cold_start"] = cold_start.run(arguments.cold_start_samples)
    results["cost"] = cost.run(results["request_path"], results["aggregation"])
    context["load_after"] = load_average()
    context["seconds"] = time.monotonic() - started
    for name, result in results.items():
        save_result(name, result)
    save_result("context", context)
    PAGE.write_text(render(context, results), encoding="utf-8")
    logger.info("wrote %s in %.0f s", PAGE.relative_to(REPO_ROOT), context["seconds"])
    print(json.dumps({"page": str(PAGE), "seconds": round(context["seconds"])}))


if __name__ == "__main__":
    main()
