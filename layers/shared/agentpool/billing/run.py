"""The monthly report run: read, reconcile, render and store every tenant's report of a month.

Reruns are idempotent. Each file's content depends only on the ledger and totals of the
month, never on when it ran, so a rerun overwrites each object with the same bytes. The
run's time goes into S3 object metadata. Each run sends one Billing Report Generated event,
whose id is derived from the month and the content of the files, so a rerun over unchanged
data sends the same id and adds no money anywhere.

A run that issues the month marks it issued (`agentpool.billing_periods`) before its first
read. From then on the ledger bills every late event of the month in the next open month as
an adjustment, so the totals that the run reads never change and an issued report is never
edited by a rerun.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from agentpool.billing.render import tenant_files, tier_files
from agentpool.billing.report import (
    TenantReport,
    TierSummary,
    build_tenant_report,
    build_tier_summary,
)
from agentpool.billing.store import ReportStore
from agentpool.billing_periods import BillingPeriods, next_month
from agentpool.events import BillingReportGenerated, notification_entry
from agentpool.registry import Tenant
from agentpool.tier_shards import TIER_SHARDS, tier_partition

logger = logging.getLogger(__name__)

# Namespace of report event ids; fixed, because changing it changes the id of every rerun.
REPORT_EVENT_NAMESPACE = uuid.UUID("0b6c7f3e-4f8a-4a8e-9a3c-5d2e7b1f9c40")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
}


def report_prefix(month: str) -> str:
    return f"reports/{month}/"


def tenant_report_key(month: str, tenant_id: str, extension: str) -> str:
    return f"{report_prefix(month)}tenants/{tenant_id}/report.{extension}"


def tier_summary_key(month: str, tier: str, extension: str) -> str:
    return f"{report_prefix(month)}tiers/{tier}/summary.{extension}"


def month_ended(month: str, moment: datetime) -> bool:
    """Return True when `month` (YYYY-MM) ended before `moment`, in UTC."""
    start_of_next = datetime.strptime(next_month(month), "%Y-%m").replace(tzinfo=UTC)
    return moment.astimezone(UTC) >= start_of_next


class MonthNotEndedError(ValueError):
    """A run tried to issue a month that has not ended yet."""


def previous_month(moment: datetime) -> str:
    """Return the month (YYYY-MM) before the one that contains `moment` in UTC."""
    moment = moment.astimezone(UTC)
    index = moment.year * 12 + moment.month - 2
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass(frozen=True)
class ReportTargets:
    """Table names, bucket and event bus that a run reads and writes."""

    ledger_table: str
    totals_table: str
    bucket: str
    event_bus: str | None


@dataclass
class RunResult:
    """Outcome of one run: the objects written, the DynamoDB reads and the time taken."""

    month: str
    # True when the month is issued: marked by this run or by an earlier one.
    issued: bool = False
    reports: list[TenantReport] = field(default_factory=list)
    tiers: list[TierSummary] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    event: BillingReportGenerated | None = None
    read_requests: int = 0
    items_read: int = 0
    items_scanned: int = 0
    estimated_read_units: float = 0.0
    seconds: float = 0.0

    @property
    def total_usd(self) -> Decimal:
        return sum((Decimal(report.total_usd.exact) for report in self.reports), Decimal(0))


class ReportRun:
    """Build and store the reports of a month with the platform's own credentials.

    The run reads every tenant's ledger and totals, so it uses the report function's role,
    which may read those tables and write only the issued-month marks: the month item and
    `issued_at` on the tier shards' month totals. It never uses tenant-scoped credentials.
    """

    def __init__(
        self,
        dynamodb_client: Any,
        s3_client: Any,
        events_client: Any | None,
        targets: ReportTargets,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = ReportStore(dynamodb_client, targets.ledger_table, targets.totals_table)
        self._periods = BillingPeriods(dynamodb_client, targets.totals_table)
        self._s3 = s3_client
        self._events = events_client
        self._targets = targets
        self._clock = clock

    def run(
        self,
        month: str,
        tenants: Sequence[Tenant],
        all_tenants: bool = True,
        on_tenant: Callable[[Tenant], None] | None = None,
        issue: bool = True,
    ) -> RunResult:
        """Write the reports of `tenants` for `month`, then the tier summaries and the event.

        With `issue` the month is marked issued before the first read, and later events of
        the month are billed as adjustments in the next open month. A run without `issue`
        writes drafts, whose numbers can still change. Raises MonthNotEndedError when asked to
        issue a month that has not ended by the run's clock.

        With `all_tenants` the tier summaries are also reconciled with the tier totals, which
        only holds when `tenants` is every tenant with usage. Raises ReconciliationError
        before writing the report whose numbers disagree.
        """
        started = time.monotonic()
        generated_at = self._clock()
        result = RunResult(month)
        if issue:
            if not month_ended(month, generated_at):
                raise MonthNotEndedError(
                    f"Month {month} has not ended, so its reports cannot be issued yet. "
                    "Run them as drafts, or after the month ends (UTC)."
                )
            # The mark comes before every read: a ledger transaction that commits after it
            # bills the next month instead, so the totals read below are final.
            newly_issued = self._periods.mark_issued(
                month, report_prefix(month), tiers={tenant.tier for tenant in tenants}
            )
            logger.info(
                "billing month issued", extra={"month": month, "newly_issued": newly_issued}
            )
            result.issued = True
        digest = hashlib.sha256(month.encode())
        for tenant in sorted(tenants, key=lambda tenant: tenant.tenant_id):
            report = self.build_report(tenant, month)
            for extension, text in tenant_files(report).items():
                key = tenant_report_key(month, tenant.tenant_id, extension)
                self._put(key, extension, text, generated_at)
                digest.update(key.encode() + hashlib.sha256(text.encode()).digest())
                result.keys.append(key)
            result.reports.append(report)
            if on_tenant is not None:
                on_tenant(tenant)
        for tier in sorted({report.tier for report in result.reports}):
            in_tier = [report for report in result.reports if report.tier == tier]
            summary = build_tier_summary(
                tier, month, in_tier, self._tier_total(tier, month) if all_tenants else None
            )
            for extension, text in tier_files(summary).items():
                key = tier_summary_key(month, tier, extension)
                self._put(key, extension, text, generated_at)
                digest.update(key.encode() + hashlib.sha256(text.encode()).digest())
                result.keys.append(key)
            result.tiers.append(summary)
        result.event = BillingReportGenerated(
            event_id=str(uuid.uuid5(REPORT_EVENT_NAMESPACE, digest.hexdigest())),
            event_time=generated_at,
            month=month,
            bucket=self._targets.bucket,
            prefix=report_prefix(month),
            tenants=len(result.reports),
            tiers={summary.tier: Decimal(summary.total_usd.exact) for summary in result.tiers},
            total_usd=result.total_usd,
        )
        self._publish(result.event)
        meter = self._store.meter
        result.read_requests, result.items_read = meter.requests, meter.items
        result.items_scanned = meter.scanned
        result.estimated_read_units = self._store.estimated_read_units
        result.seconds = time.monotonic() - started
        logger.info(
            "monthly reports written",
            extra={
                "month": month,
                "issued": result.issued,
                "tenants": len(result.reports),
                "objects": len(result.keys),
                "event_id": result.event.event_id,
                "read_requests": result.read_requests,
                "items_read": result.items_read,
                "estimated_read_units": result.estimated_read_units,
                "seconds": round(result.seconds, 3),
            },
        )
        return result

    def build_report(self, tenant: Tenant, month: str) -> TenantReport:
        """Read and reconcile one tenant's month; raise ReconciliationError on a mismatch."""
        entries = self._store.ledger_entries(tenant.tenant_id, month)
        totals = self._store.totals_items(tenant.tenant_id, month)
        return build_tenant_report(
            tenant.tenant_id, tenant.name, tenant.tier, month, entries, totals
        )

    def _tier_total(self, tier: str, month: str) -> Decimal:
        total = Decimal(0)
        for shard in range(TIER_SHARDS):
            item = self._store.total_item(tier_partition(tier, shard), month)
            total += Decimal((item or {}).get("cost_usd", 0))
        return total

    def _put(self, key: str, extension: str, text: str, generated_at: datetime) -> None:
        self._s3.put_object(
            Bucket=self._targets.bucket,
            Key=key,
            Body=text.encode(),
            ContentType=CONTENT_TYPES[extension],
            Metadata={"generated-at": generated_at.isoformat().replace("+00:00", "Z")},
        )

    def _publish(self, event: BillingReportGenerated) -> None:
        if self._events is None or self._targets.event_bus is None:
            return
        response = self._events.put_events(
            Entries=[notification_entry(event, self._targets.event_bus)]
        )
        if response.get("FailedEntryCount"):
            codes = [entry.get("ErrorCode") for entry in response.get("Entries", [])]
            raise RuntimeError(
                f"PutEvents rejected the Billing Report Generated event of {event.month}: "
                f"{codes}. The reports are written; rerun to send the event again."
            )
