"""Monthly reports: time and DynamoDB reads of one month of 1,000 tenants x 31 days x 3 models.

The generator writes one ModelUsage ledger entry per tenant, day and model, and the totals
that the aggregator would keep for them, with BatchWriteItem into moto in this process
(`mock_aws`): the ledger's transactions, and any moto server, are too slow for 93,000 events
within the suite's time budget. Generation stops at GENERATE_BUDGET_SECONDS and
benchmarks/run.py stops the whole run at REPORTS_TIMEOUT_SECONDS, and the row then says so.
The harness runs the report code through its public entry point,
`agentpool.billing.run.ReportRun.run`, and counts its DynamoDB requests with a botocore
`before-parameter-build` hook. While that module does not exist, the row is pending and no
data is generated.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from moto import mock_aws

from agentpool import usage as usage_shapes
from agentpool.events import ModelUsage
from agentpool.ledger import ledger_item, totals_for
from agentpool.pricing.catalog import default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.registry import Tenant, TenantRegistry
from benchmarks.aggregation import create_tables
from benchmarks.common import FAKE_CREDENTIALS

REPORT_MODULE = "agentpool.billing.run"
TARGET_TENANTS = 1000
# moto's Query reads every item of a table or index to find a partition's items, so a report
# run over 93,000 entries takes longer than the suite's budget. The run measures a tenth of
# the tenants and scales its per-tenant Query requests by the tenant count.
TENANTS = 100
DAYS = 31
MONTH = "2026-03"
# The two models of the price catalog and one that it does not price.
MODELS = (
    "mistral.ministral-3-8b-instruct",
    "openai.gpt-oss-120b-1:0",
    "bench.unpriced-model-v1",
)
BATCH_WRITE_ITEMS = 25
GENERATE_BUDGET_SECONDS = 240


class GenerationTimeoutError(Exception):
    """Generating the month's data took longer than GENERATE_BUDGET_SECONDS."""


READ_OPERATIONS = {"Query", "GetItem", "BatchGetItem", "Scan"}

_serializer = TypeSerializer()


def report_module() -> Any | None:
    try:
        return importlib.import_module(REPORT_MODULE)
    except ImportError:
        return None


def _batch_write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), BATCH_WRITE_ITEMS):
        requests = [
            {"PutRequest": {"Item": _serializer.serialize(item)["M"]}}
            for item in items[start : start + BATCH_WRITE_ITEMS]
        ]
        pending = {table: requests}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def generate(client: Any, tenants_table: Any, ledger_table: str, totals_table: str) -> list[Any]:
    """Write the month's ledger entries, totals and tenants, and return the tenants."""
    catalog = default_catalog()
    registry = TenantRegistry(tenants_table)
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    deadline = time.monotonic() + GENERATE_BUDGET_SECONDS
    # Tier totals are shared by all tenants of a tier, so they are written once at the end.
    shared_totals: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    tenants = []
    for index in range(TENANTS):
        if time.monotonic() > deadline:
            raise GenerationTimeoutError(f"{index} of {TENANTS} tenants written")
        tier = "premium" if index % 10 == 0 else "basic"
        tenant = Tenant(
            tenant_id=f"report-{index:04d}",
            name=f"Report tenant {index}",
            tier=tier,
            status="active",
        )
        registry.create(tenant)
        tenants.append(tenant)
        entries: list[dict[str, Any]] = []
        totals: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for day in range(DAYS):
            for model_index, model_id in enumerate(MODELS):
                event = ModelUsage(
                    event_id=str(uuid.uuid4()),
                    event_time=start + timedelta(days=day, minutes=model_index),
                    tenant_id=tenant.tenant_id,
                    tier=tier,
                    user_id=f"user-{day % 5}",
                    request_id=str(uuid.uuid4()),
                    model_id=model_id,
                    usage=usage_shapes.from_converse(
                        {"inputTokens": 500 + day, "outputTokens": 200 + model_index}
                    ),
                )
                rated = rate_event(event, catalog)
                entries.append(ledger_item(rated))
                for key, counters in totals_for(rated).items():
                    totals[key].update(counters)
        _batch_write(client, ledger_table, entries)
        own = {key: counters for key, counters in totals.items() if key[0] == tenant.tenant_id}
        for key, counters in totals.items():
            if key not in own:
                shared_totals[key].update(counters)
        _write_totals(client, totals_table, own)
    _write_totals(client, totals_table, shared_totals)
    return tenants


def _write_totals(client: Any, table: str, totals: dict[tuple[str, str], Counter[str]]) -> None:
    items = [{"pk": pk, "sk": sk, **dict(counters)} for (pk, sk), counters in totals.items()]
    _batch_write(client, table, items)


def run() -> dict[str, Any]:
    module = report_module()
    if module is None:
        return {"status": "pending", "reason": f"{REPORT_MODULE} is not in the repository yet"}
    with mock_aws():
        session = boto3.session.Session(
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        return _measure(module, session)


def _measure(module: Any, session: Any) -> dict[str, Any]:
    client = session.client("dynamodb")
    ledger_table, totals_table = create_tables(client, "reports")
    tenants_table = "bench-TenantsTable-reports"
    client.create_table(
        TableName=tenants_table,
        KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "tenant_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    session.client("s3").create_bucket(Bucket="bench-reports")
    generating = time.perf_counter()
    try:
        tenants = generate(
            client, session.resource("dynamodb").Table(tenants_table), ledger_table, totals_table
        )
    except GenerationTimeoutError as error:
        return {"status": "not measured", "reason": f"data generation timed out: {error}"}
    generate_seconds = time.perf_counter() - generating

    requests: Counter[str] = Counter()
    report_client = session.client("dynamodb")
    report_client.meta.events.register(
        "before-parameter-build.dynamodb", lambda model, **_: requests.update([model.name])
    )
    targets = module.ReportTargets(
        ledger_table=ledger_table, totals_table=totals_table, bucket="bench-reports", event_bus=None
    )
    report_run = module.ReportRun(report_client, session.client("s3"), None, targets)
    started = time.perf_counter()
    report_run.run(MONTH, tenants)
    seconds = time.perf_counter() - started
    reads = sum(count for name, count in requests.items() if name in READ_OPERATIONS)
    return {
        "status": "measured",
        "tenants": TENANTS,
        "target_tenants": TARGET_TENANTS,
        # Queries read one tenant each and scale with the tenant count; tier total reads do not.
        "dynamodb_read_requests_scaled": reads
        + requests["Query"] * (TARGET_TENANTS - TENANTS) / TENANTS,
        "ledger_entries": TENANTS * DAYS * len(MODELS),
        "generate_seconds": generate_seconds,
        "report_seconds": seconds,
        "dynamodb_requests": dict(requests),
        "dynamodb_read_requests": reads,
    }


if __name__ == "__main__":
    print(json.dumps(run(), default=str))
