"""Monthly reports of the demo month on the local stack: reconciled, parsed and rendered."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from agentpool.billing.run import RunResult
from agentpool_dev import operations, reports
from agentpool_dev.demo import DemoResult, run_demo
from agentpool_dev.local_stack import LocalStack

from .test_demo import EXPECTED_TENANTS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(stack: LocalStack) -> DemoResult:
    assert stack.state is not None
    return run_demo(stack, stack.state)


@pytest.fixture(scope="module")
def report_runs(
    demo: DemoResult, target: operations.Target, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[RunResult, Path, float]]:
    out = tmp_path_factory.mktemp("reports")
    runs = {}
    for tenant_id in EXPECTED_TENANTS:
        started = time.monotonic()
        result, month_dir = reports.run_reports(target, demo.month, tenant_id, out_dir=out)
        runs[tenant_id] = (result, month_dir, time.monotonic() - started)
    return runs


@pytest.mark.parametrize("tenant_id", sorted(EXPECTED_TENANTS))
def test_report_total_matches_demo(
    demo: DemoResult, report_runs: dict[str, tuple[RunResult, Path, float]], tenant_id: str
) -> None:
    result, _, _ = report_runs[tenant_id]
    [report] = result.reports
    # The demo read these totals from the totals table; the report summed the ledger.
    assert Decimal(report.total_usd.exact) == demo.tenants[tenant_id]["total"]["cost_usd"]
    assert Decimal(report.total_usd.exact) > 0
    assert report.reconciliation.status == "matched"
    assert report.counters["invocations"] == EXPECTED_TENANTS[tenant_id][0]


@pytest.mark.parametrize("tenant_id", sorted(EXPECTED_TENANTS))
def test_report_files_parse(
    report_runs: dict[str, tuple[RunResult, Path, float]], tenant_id: str
) -> None:
    _, month_dir, _ = report_runs[tenant_id]
    folder = month_dir / "tenants" / tenant_id
    data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    rows = list(csv.DictReader(io.StringIO((folder / "report.csv").read_text(encoding="utf-8"))))
    html = (folder / "report.html").read_text(encoding="utf-8")
    assert data["tenant_id"] == tenant_id
    assert [row["amount_usd"] for row in rows if row["name"] == "total"] == [
        data["total_usd"]["exact"]
    ]
    assert "<svg" in html


def test_report_reads_are_few(report_runs: dict[str, tuple[RunResult, Path, float]]) -> None:
    for tenant_id, (result, _, seconds) in report_runs.items():
        # One ledger index query and one totals query per tenant, each a single page.
        assert result.read_requests == 2, tenant_id
        assert seconds < 10, tenant_id


def test_cli_report_writes_all_formats(
    demo: DemoResult, stack: LocalStack, tmp_path: Path, state_file: Path
) -> None:
    env = {**os.environ, "AGENTPOOL_STATE_FILE": str(state_file), "COLUMNS": "200"}
    argv = ["report", "--month", demo.month, "--tenant", "harbor-clinic", "--out", str(tmp_path)]
    result = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "agentpool_dev.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / demo.month / "tenants" / "harbor-clinic"
    assert sorted(path.name for path in folder.iterdir()) == [
        "report.csv",
        "report.html",
        "report.json",
    ]
    assert "reconciled with the ledger" in result.stdout
