"""`agentpool report`: run the monthly report domain code against a stack and save the files.

Against the local stack the run uses moto's endpoint; against a deployed stack it uses your
AWS credentials and the stack's outputs. Either way it runs the same `ReportRun` as the
monthly report function, so it writes the same objects to the reports bucket and sends the
same event, then copies the requested formats to a local folder.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from agentpool.billing.render import FORMATS
from agentpool.billing.run import (
    ReportRun,
    ReportTargets,
    RunResult,
    month_ended,
    report_prefix,
)
from agentpool.registry import Tenant, TenantRegistry
from agentpool_dev.operations import OperatorError, Target, list_tenants
from agentpool_dev.template import REPO_ROOT

DEFAULT_OUT_DIR = REPO_ROOT / "out" / "reports"


def run_reports(
    target: Target,
    month: str,
    tenant_id: str | None = None,
    formats: tuple[str, ...] = FORMATS,
    out_dir: Path = DEFAULT_OUT_DIR,
    on_start: Callable[[int], None] | None = None,
    on_tenant: Callable[[Tenant], None] | None = None,
    draft: bool = False,
) -> tuple[RunResult, Path]:
    """Write the month's reports to the stack's bucket and copy `formats` to `out_dir`.

    Returns the run's result and the local folder of the month. With `tenant_id` only that
    tenant is reported, and tier summaries are not reconciled with the tier totals, because
    those include every other tenant of the tier.

    The run issues the month (see `agentpool.billing_periods`) only when it reports every
    tenant of a month that has ended and `draft` is False. Otherwise the reports are drafts:
    the issued mark is one per month for all tenants, so a one-tenant run must not set it.
    """
    if tenant_id is None:
        tenants = list_tenants(target)
    else:
        tenant = TenantRegistry(target.table("TenantsTableName")).get(tenant_id)
        if tenant is None:
            raise OperatorError(f"Tenant {tenant_id} is not registered; check the id.")
        tenants = [tenant]
    if on_start is not None:
        on_start(len(tenants))
    outputs = target.outputs
    run = ReportRun(
        target.client("dynamodb"),
        target.client("s3"),
        target.client("events"),
        ReportTargets(
            outputs["LedgerTableName"],
            outputs["TotalsTableName"],
            outputs["ReportsBucketName"],
            outputs.get("EventBusName"),
        ),
    )
    issue = not draft and tenant_id is None and month_ended(month, datetime.now(UTC))
    result = run.run(
        month, tenants, all_tenants=tenant_id is None, on_tenant=on_tenant, issue=issue
    )
    month_dir = out_dir / month
    s3 = target.client("s3")
    for key in result.keys:
        if key.rsplit(".", 1)[-1] not in formats:
            continue
        local = month_dir / key.removeprefix(report_prefix(month))
        local.parent.mkdir(parents=True, exist_ok=True)
        body = s3.get_object(Bucket=outputs["ReportsBucketName"], Key=key)["Body"].read()
        local.write_bytes(body)
    return result, month_dir
