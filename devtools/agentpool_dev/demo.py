"""`agentpool demo`: start the local stack, onboard tenants, send real requests, print costs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from agentpool.documents import documents_prefix
from agentpool_dev import operations, reports
from agentpool_dev.demo_data import REQUESTS, TENANTS
from agentpool_dev.local_stack import LocalStack, StackState

# Wide enough for the cost table when the output is not a terminal (CI logs, pipes). With
# soft_wrap, longer lines are printed whole rather than broken at that width.
console = Console(width=None if sys.stdout.isatty() else 110, soft_wrap=True)


@dataclass
class DemoResult:
    month: str
    responses: list[dict[str, Any]] = field(default_factory=list)
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    tiers: dict[str, dict[str, Decimal]] = field(default_factory=dict)


def local_target(state: StackState, stack: LocalStack) -> operations.Target:
    return operations.Target(
        "local", state.api_url, state.resources, stack.aws_session(), state.moto_url
    )


def run_demo(stack: LocalStack, state: StackState, progress: Progress | None = None) -> DemoResult:
    """Onboard the demo tenants and users, send the demo requests and read the totals."""
    target = local_target(state, stack)
    s3 = target.client("s3")
    passwords: dict[str, str] = {}
    for tenant in TENANTS:
        operations.create_tenant(target, tenant.tenant_id, tenant.name, tenant.tier)
        for name, text in tenant.documents.items():
            s3.put_object(
                Bucket=state.resources["DocumentsBucketName"],
                Key=documents_prefix(tenant.tenant_id) + name,
                Body=text.encode(),
            )
        for index, email in enumerate(tenant.users):
            passwords[email] = operations.generate_password()
            operations.create_user(
                target, tenant.tenant_id, email, passwords[email], tenant_admin=index == 0
            )

    month = datetime.now(UTC).strftime("%Y-%m")
    result = DemoResult(month)
    task = progress.add_task("Sending requests", total=len(REQUESTS)) if progress else None
    for request in REQUESTS:
        token = operations.id_token(target, request.user, passwords[request.user])
        status, body = operations.invoke(target, token, request.prompt)
        if status != 200:
            raise operations.OperatorError(f"demo request failed with {status}: {body}")
        result.responses.append(body)
        if progress is not None and task is not None:
            progress.advance(task)

    stack.wait_for_metering()
    for tenant in TENANTS:
        result.tenants[tenant.tenant_id] = operations.tenant_month(target, tenant.tenant_id, month)
    for tier in sorted({tenant.tier for tenant in TENANTS}):
        result.tiers[tier] = operations.tier_month(target, tier, month)
    return result


def cost_table(result: DemoResult) -> Table:
    table = Table(
        "tenant",
        "tier",
        "invocations",
        "input tokens",
        "output tokens",
        "tool calls",
        "cost (USD)",
        title=f"agentpool costs for {result.month} (local stack, stand-in models)",
    )
    tiers = {tenant.tenant_id: tenant.tier for tenant in TENANTS}
    for tenant_id, usage in result.tenants.items():
        total = usage["total"]
        table.add_row(tenant_id, tiers[tenant_id], *_cells(total))
    table.add_section()
    for tier, total in result.tiers.items():
        table.add_row("all tenants", tier, *_cells(total))
    return table


def _cells(total: dict[str, Decimal]) -> list[str]:
    return [
        str(total["invocations"]),
        str(total["input_tokens"]),
        str(total["output_tokens"]),
        str(total["tool_calls"]),
        f"{total['cost_usd'].normalize():f}",
    ]


def run_demo_command(args: argparse.Namespace) -> int:
    stack = LocalStack()
    with console.status("Starting the local stack (moto, stand-ins, agent, functions)..."):
        state = stack.start()
    try:
        console.print(f"Local stack up; API {state.api_url}")
        with Progress(console=console) as progress:
            result = run_demo(stack, state, progress)
        console.print(cost_table(result))
        console.print(
            "Model answers come from the local Bedrock stand-in; token counts from its "
            "tokenizer. Runtime cost is the AgentCore stand-in's wall-clock seconds at 1 vCPU "
            "and 2 GB, so it varies between runs. Prices from "
            "layers/shared/agentpool/pricing/catalog.json."
        )
        run, month_dir = reports.run_reports(local_target(state, stack), result.month)
        console.print(
            f"Billing reports for {result.month} ({len(run.reports)} tenants, reconciled "
            f"with the ledger, {run.read_requests} DynamoDB reads): {month_dir}"
        )
    finally:
        with console.status("Stopping the local stack..."):
            stack.stop()
    return 0
