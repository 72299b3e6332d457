"""The monthly report of one tenant, built from its ledger entries and checked against its totals.

Rounding rule: ledger amounts and every sum in a report are exact `Decimal` values. A report
line is rounded half-even to the cent only for display (`*_display` fields and the HTML), and
each total is the rounded exact sum, never the sum of rounded lines. So the displayed lines of
a section may differ from its displayed total by up to half a cent per line.

Adjustments are ledger entries billed in the report month that correct an earlier month. Such
an entry carries `adjustment_of_month` (YYYY-MM of the usage it corrects) and may carry
`rerate_of` (the event id of the corrected entry) and `adjustment_reason`. The report lists
them apart from the month's own usage, and the month's total includes them.

This module is pure: it reads plain dicts as DynamoDB returns them through boto3's
TypeDeserializer, and never calls AWS.
"""

from __future__ import annotations

import calendar
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")
ROUNDING_RULE = (
    "Ledger amounts and totals are exact. Lines are rounded half-even to the cent for "
    "display only, and each total is its exact sum rounded once."
)
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
# Breakdown kinds, as the totals table names them in `month#YYYY-MM#<kind>#<name>` keys.
BREAKDOWN_KINDS = ("model", "user", "tool", "runtime")
# Counters copied from the tenant's month item in the totals table.
COUNTERS = (
    "events",
    "invocations",
    "failed_invocations",
    "model_calls",
    "input_tokens",
    "output_tokens",
    "tool_calls",
    "tool_denials",
    "unpriced_events",
)
_KIND_OF_DETAIL_TYPE = {
    "Model Usage": "model",
    "Tool Invoked": "tool",
    "Runtime Usage": "runtime",
}
# The totals table keys all AgentCore Runtime usage under this one name.
RUNTIME_NAME = "agentcore"


class ReconciliationError(Exception):
    """The ledger entries of a month do not add up to the totals table's amounts."""


def display_usd(amount: Decimal) -> str:
    """Round `amount` half-even to the cent, for display only."""
    return str(amount.quantize(CENT, rounding=ROUND_HALF_EVEN))


def exact_usd(amount: Decimal) -> str:
    """Format an exact amount without exponent or trailing zeros, e.g. 0.00017115."""
    text = f"{amount.normalize():f}"
    return text if text != "-0" else "0"


def month_days(month: str) -> list[str]:
    """Return every day of `month` (YYYY-MM) as YYYY-MM-DD."""
    year, number = (int(part) for part in month.split("-"))
    last = calendar.monthrange(year, number)[1]
    return [date(year, number, day).isoformat() for day in range(1, last + 1)]


class Money(BaseModel):
    """An exact amount in USD, with its display value rounded to the cent."""

    model_config = ConfigDict(frozen=True)

    exact: str
    display: str

    @classmethod
    def of(cls, amount: Decimal) -> Money:
        return cls(exact=exact_usd(amount), display=display_usd(amount))


class DailyCost(BaseModel):
    model_config = ConfigDict(frozen=True)

    day: str
    cost_usd: Money


class BreakdownLine(BaseModel):
    """Usage and cost of one model, user, tool or runtime in the month."""

    model_config = ConfigDict(frozen=True)

    name: str
    events: int
    cost_usd: Money
    quantities: dict[str, str]


class AdjustmentLine(BaseModel):
    """A ledger entry billed in this month that corrects an earlier month."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    event_time: str
    adjustment_of_month: str
    item: str
    user_id: str
    amount_usd: Money
    rerate_of: str | None = None
    reason: str | None = None


class Reconciliation(BaseModel):
    """Comparison of the ledger's sums with the totals table, per key."""

    model_config = ConfigDict(frozen=True)

    status: Literal["matched"]
    ledger_entries: int
    ledger_total_usd: str
    totals_table_usd: str
    keys_compared: int


class TenantReport(BaseModel):
    """One tenant's billing report for one month."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    tenant_id: str
    tenant_name: str
    tier: str
    month: str = Field(pattern=MONTH_PATTERN)
    currency: Literal["USD"] = "USD"
    rounding: str = ROUNDING_RULE
    catalog_versions: list[str]
    usage_usd: Money
    adjustments_usd: Money
    total_usd: Money
    counters: dict[str, int]
    daily: list[DailyCost]
    breakdown: dict[str, list[BreakdownLine]]
    adjustments: list[AdjustmentLine]
    reconciliation: Reconciliation


class TierSummaryLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str
    tenant_name: str
    total_usd: Money
    adjustments_usd: Money


class TierSummary(BaseModel):
    """The month's total of every reported tenant of one tier."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    tier: str
    month: str = Field(pattern=MONTH_PATTERN)
    currency: Literal["USD"] = "USD"
    rounding: str = ROUNDING_RULE
    tenants: list[TierSummaryLine]
    total_usd: Money
    # The sum of the tier's shards in the totals table, when every tenant was reported.
    totals_table_usd: str | None


def _breakdown_key(entry: Mapping[str, Any]) -> tuple[str, str] | None:
    kind = _KIND_OF_DETAIL_TYPE.get(str(entry.get("detail_type")))
    if kind is None:
        return None
    return kind, RUNTIME_NAME if kind == "runtime" else str(entry["item"])


def is_adjustment(entry: Mapping[str, Any]) -> bool:
    return bool(entry.get("adjustment_of_month"))


class _Line:
    def __init__(self) -> None:
        self.events = 0
        self.cost = Decimal(0)
        self.quantities: dict[str, Decimal] = defaultdict(Decimal)

    def add(self, entry: Mapping[str, Any]) -> None:
        # A re-rating corrects the amount of an event that is already counted.
        if not entry.get("rerate_of"):
            self.events += 1
        self.cost += Decimal(entry["amount_usd"])
        for name, value in (entry.get("quantities") or {}).items():
            self.quantities[name] += Decimal(value)

    def to_model(self, name: str) -> BreakdownLine:
        return BreakdownLine(
            name=name,
            events=self.events,
            cost_usd=Money.of(self.cost),
            quantities={key: exact_usd(value) for key, value in sorted(self.quantities.items())},
        )


def ledger_sums(entries: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    """Sum amounts per totals-table sort key suffix: '' (the month) and '#<kind>#<name>'."""
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for entry in entries:
        amount = Decimal(entry["amount_usd"])
        sums[""] += amount
        sums[f"#user#{entry['user_id']}"] += amount
        key = _breakdown_key(entry)
        if key is not None:
            sums[f"#{key[0]}#{key[1]}"] += amount
    return sums


def reconcile(
    tenant_id: str,
    month: str,
    entries: Sequence[Mapping[str, Any]],
    totals_items: Sequence[Mapping[str, Any]],
) -> Reconciliation:
    """Compare the ledger's sums with the totals table, per key; raise on any cent difference.

    Every key that either side has is compared, so a total without ledger entries (or the
    reverse) fails as well. A difference below a cent is logged, because billed amounts
    still agree but a writer is out of step.
    """
    ledger = ledger_sums(entries)
    prefix = f"month#{month}"
    totals: dict[str, Decimal] = {}
    for item in totals_items:
        suffix = str(item["sk"]).removeprefix(prefix)
        # "" is the month item and "#model#<id>" a breakdown; other sort keys are not money.
        parts = suffix.split("#")
        if suffix == "" or (len(parts) == 3 and parts[1] in BREAKDOWN_KINDS):
            totals[suffix] = Decimal(item.get("cost_usd", 0))
    differences = []
    for key in sorted(set(ledger) | set(totals)):
        in_ledger, in_totals = ledger.get(key, Decimal(0)), totals.get(key, Decimal(0))
        if display_usd(in_ledger) != display_usd(in_totals):
            differences.append(f"{prefix}{key}: ledger {in_ledger} != totals {in_totals}")
        elif in_ledger != in_totals:
            logger.warning(
                "ledger and totals differ below a cent",
                extra={"tenant_id": tenant_id, "key": prefix + key},
            )
    if differences:
        raise ReconciliationError(
            f"Report for tenant {tenant_id}, {month} not written: the ledger does not match the "
            f"totals table ({'; '.join(differences)}). Check the aggregator and the dead-letter "
            "queue, then rerun the report."
        )
    return Reconciliation(
        status="matched",
        ledger_entries=len(entries),
        ledger_total_usd=exact_usd(ledger.get("", Decimal(0))),
        totals_table_usd=exact_usd(totals.get("", Decimal(0))),
        keys_compared=len(set(ledger) | set(totals)),
    )


def build_tenant_report(
    tenant_id: str,
    tenant_name: str,
    tier: str,
    month: str,
    entries: Sequence[Mapping[str, Any]],
    totals_items: Sequence[Mapping[str, Any]],
) -> TenantReport:
    """Build and reconcile one tenant's report from the ledger entries billed in `month`.

    `entries` are the tenant's ledger entries whose `month` is `month`; `totals_items` are
    its totals items whose sort key starts with `month#<month>`. Raises ReconciliationError
    when they disagree.
    """
    entries = sorted(entries, key=lambda entry: (str(entry["event_time"]), entry["event_id"]))
    reconciliation = reconcile(tenant_id, month, entries, totals_items)
    usage = [entry for entry in entries if not is_adjustment(entry)]
    adjustments = [entry for entry in entries if is_adjustment(entry)]

    daily: dict[str, Decimal] = dict.fromkeys(month_days(month), Decimal(0))
    lines: dict[str, dict[str, _Line]] = {kind: defaultdict(_Line) for kind in BREAKDOWN_KINDS}
    for entry in usage:
        daily[str(entry["event_time"])[:10]] += Decimal(entry["amount_usd"])
        lines["user"][str(entry["user_id"])].add(entry)
        key = _breakdown_key(entry)
        if key is not None:
            lines[key[0]][key[1]].add(entry)

    month_item = next((i for i in totals_items if i["sk"] == f"month#{month}"), {})
    usage_total = sum((Decimal(e["amount_usd"]) for e in usage), Decimal(0))
    adjustment_total = sum((Decimal(e["amount_usd"]) for e in adjustments), Decimal(0))
    return TenantReport(
        tenant_id=tenant_id,
        tenant_name=tenant_name,
        tier=tier,
        month=month,
        catalog_versions=sorted({str(e["catalog_version"]) for e in entries}),
        usage_usd=Money.of(usage_total),
        adjustments_usd=Money.of(adjustment_total),
        total_usd=Money.of(usage_total + adjustment_total),
        counters={name: int(month_item.get(name, 0)) for name in COUNTERS},
        daily=[DailyCost(day=day, cost_usd=Money.of(cost)) for day, cost in daily.items()],
        breakdown={
            kind: [line.to_model(name) for name, line in sorted(by_name.items())]
            for kind, by_name in lines.items()
        },
        adjustments=[_adjustment_line(entry) for entry in adjustments],
        reconciliation=reconciliation,
    )


def _adjustment_line(entry: Mapping[str, Any]) -> AdjustmentLine:
    return AdjustmentLine(
        event_id=str(entry["event_id"]),
        event_time=str(entry["event_time"]),
        adjustment_of_month=str(entry["adjustment_of_month"]),
        item=str(entry["item"]),
        user_id=str(entry["user_id"]),
        amount_usd=Money.of(Decimal(entry["amount_usd"])),
        rerate_of=entry.get("rerate_of"),
        reason=entry.get("adjustment_reason"),
    )


def build_tier_summary(
    tier: str, month: str, reports: list[TenantReport], totals_table_usd: Decimal | None
) -> TierSummary:
    """Sum the reports of one tier; when `totals_table_usd` is given, it must match."""
    total = sum((Decimal(report.total_usd.exact) for report in reports), Decimal(0))
    if totals_table_usd is not None and display_usd(total) != display_usd(totals_table_usd):
        raise ReconciliationError(
            f"Tier summary for {tier}, {month} not written: its tenants add up to {total} USD "
            f"but the tier totals are {totals_table_usd} USD. A tenant with usage may be missing "
            "from the tenant registry."
        )
    return TierSummary(
        tier=tier,
        month=month,
        tenants=[
            TierSummaryLine(
                tenant_id=report.tenant_id,
                tenant_name=report.tenant_name,
                total_usd=report.total_usd,
                adjustments_usd=report.adjustments_usd,
            )
            for report in sorted(reports, key=lambda report: report.tenant_id)
        ],
        total_usd=Money.of(total),
        totals_table_usd=None if totals_table_usd is None else exact_usd(totals_table_usd),
    )
