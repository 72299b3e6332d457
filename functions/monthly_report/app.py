"""Monthly report run, started by EventBridge Scheduler on the 1st of each month at 02:00 UTC.

The schedule passes its scheduled time, and the run reports the month before it, so a retry
of the same schedule reports the same month. An operator may pass {"month": "YYYY-MM"}.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentpool.billing.run import ReportRun, ReportTargets, previous_month
from agentpool.observability import function_logger
from agentpool.registry import Tenant

logger = function_logger()


class Settings(BaseSettings):
    """Environment of the function, checked at cold start."""

    model_config = SettingsConfigDict(frozen=True)

    tenants_table: str
    ledger_table: str
    totals_table: str
    reports_bucket: str
    event_bus_name: str


class ReportRequest(BaseModel):
    """Input of a run: the schedule's time, or a month chosen by an operator."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    month: str | None = Field(default=None, pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")
    scheduled_time: AwareDatetime | None = None

    def report_month(self) -> str:
        if self.month:
            return self.month
        return previous_month(self.scheduled_time or datetime.now(UTC))


settings = Settings()
tenants_table = boto3.resource("dynamodb").Table(settings.tenants_table)
report_run = ReportRun(
    boto3.client("dynamodb"),
    boto3.client("s3"),
    boto3.client("events"),
    ReportTargets(
        settings.ledger_table,
        settings.totals_table,
        settings.reports_bucket,
        settings.event_bus_name,
    ),
)


def list_tenants() -> list[Tenant]:
    """Return every registered tenant, suspended ones included, because they may owe usage."""
    tenants: list[Tenant] = []
    arguments: dict[str, Any] = {"ConsistentRead": True}
    while True:
        page = tenants_table.scan(**arguments)
        tenants.extend(Tenant.model_validate(item) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return tenants
        arguments["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    month = ReportRequest.model_validate(event or {}).report_month()
    logger.append_keys(month=month)
    result = report_run.run(month, list_tenants())
    return {
        "month": month,
        "tenants": len(result.reports),
        "objects": len(result.keys),
        "totalUsd": f"{result.total_usd.normalize():f}",
        "eventId": result.event.event_id if result.event else None,
        "readRequests": result.read_requests,
        "itemsRead": result.items_read,
    }
