"""Platform cost per million invocations, from measured counts and AWS list prices.

Every figure here is an estimate: it multiplies counts that the other benchmarks measured on
the local stack by list prices from benchmarks/prices.json, under the assumptions named in
ASSUMPTIONS. Free tiers and data transfer are left out.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentpool_dev.template import Template
from benchmarks.common import REPO_ROOT

PRICES_PATH = Path(__file__).with_name("prices.json")
CATALOG_PATH = REPO_ROOT / "layers" / "shared" / "agentpool" / "pricing" / "catalog.json"
MILLION = Decimal(1_000_000)
# Token totals of `agentpool demo` by tier (invocations, input tokens, output tokens), as
# tests/integration/test_demo.py checks them against the Bedrock stand-in.
DEMO_TOKENS = {"basic": (4, 701, 595), "premium": (2, 774, 420)}
DEMO_MODELS = {
    "basic": "mistral.ministral-3-8b-instruct",
    "premium": "openai.gpt-oss-120b-1:0",
}
ASSUMPTIONS = {
    "agent_seconds": Decimal(5),
    "agent_active_vcpu_seconds": Decimal("0.5"),
    "agent_memory_gb": Decimal(2),
    "dynamodb_transaction_ms": Decimal(25),
    "sqs_requests_per_message": Decimal(1),
}
ASSUMPTION_TEXT = {
    "agent_seconds": "an invocation keeps the agent busy 5 s (the invoke function waits as long)",
    "agent_active_vcpu_seconds": "the agent uses 0.5 vCPU-seconds of CPU in those 5 s",
    "agent_memory_gb": "the agent's runtime session holds 2 GB of memory for those 5 s",
    "dynamodb_transaction_ms": "a ledger TransactWriteItems takes 25 ms in DynamoDB",
    "sqs_requests_per_message": (
        "EventBridge's SendMessage per event; receives and deletes come per batch of the "
        "event source mapping, and empty receives of an idle queue are left out"
    ),
}


def _price(prices: dict[str, Any], name: str) -> Decimal:
    return Decimal(prices[name]["usd"])


def model_cost(tier: str) -> Decimal:
    """Model cost of one demo invocation of `tier`, from the demo's tokens and the catalog."""
    catalog = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    prices = catalog["models"][DEMO_MODELS[tier]][-1]["usd_per_million"]
    invocations, input_tokens, output_tokens = DEMO_TOKENS[tier]
    total = (
        Decimal(input_tokens) * Decimal(prices["input"])
        + Decimal(output_tokens) * Decimal(prices["output"])
    ) / MILLION
    return total / invocations


def run(request_path: dict[str, Any], aggregation: dict[str, Any]) -> dict[str, Any]:
    prices = json.loads(PRICES_PATH.read_text(encoding="utf-8"))
    template = Template()
    invoke_memory_gb = Decimal(template.function_setting("InvokeFunction", "MemorySize")) / 1024
    aggregator_memory_gb = (
        Decimal(template.function_setting("AggregatorFunction", "MemorySize")) / 1024
    )
    (_, sqs_source) = next(iter(template.sqs_event_sources()))
    batch_size = int(sqs_source.get("BatchSize", 10))
    measured_batch = str(min((1, 10, 100), key=lambda size: abs(size - batch_size)))
    ledger = aggregation["batch_sizes"][measured_batch]["ledger"]

    events_per_invocation = Decimal(str(request_path["metering_events_per_request"]))
    overhead_seconds = Decimal(str(request_path["handler_minus_agent_ms_p50"])) / 1000
    agent_seconds = ASSUMPTIONS["agent_seconds"]
    gb_second = _price(prices, "lambda_arm64_per_gb_second")

    serving = {
        "API Gateway REST request": _price(prices, "api_gateway_rest_per_million"),
        "invoke Lambda requests": _price(prices, "lambda_requests_per_million"),
        "invoke Lambda duration, platform overhead": overhead_seconds
        * invoke_memory_gb
        * gb_second
        * MILLION,
        "invoke Lambda duration, waiting on the agent": agent_seconds
        * invoke_memory_gb
        * gb_second
        * MILLION,
        "AgentCore Runtime CPU": ASSUMPTIONS["agent_active_vcpu_seconds"]
        / 3600
        * _price(prices, "agentcore_runtime_per_vcpu_hour")
        * MILLION,
        "AgentCore Runtime memory": agent_seconds
        / 3600
        * ASSUMPTIONS["agent_memory_gb"]
        * _price(prices, "agentcore_runtime_per_gb_hour")
        * MILLION,
    }

    transactions_per_event = Decimal(str(ledger["write_requests_per_event"]))
    aggregator_seconds_per_event = (
        Decimal(str(ledger["client_cpu_ms_per_event"]))
        + transactions_per_event * ASSUMPTIONS["dynamodb_transaction_ms"]
    ) / 1000
    sqs_requests_per_event = ASSUMPTIONS["sqs_requests_per_message"] + Decimal(2) / batch_size
    write_units_per_event = Decimal(str(ledger["transact_items_per_event"])) * Decimal(
        prices["dynamodb_transactional_write_units_per_item"]["units"]
    )
    per_event = {
        "EventBridge custom events": _price(prices, "eventbridge_custom_events_per_million"),
        "SQS requests": sqs_requests_per_event
        * _price(prices, "sqs_standard_requests_per_million"),
        "aggregator Lambda requests": _price(prices, "lambda_requests_per_million") / batch_size,
        "aggregator Lambda duration": aggregator_seconds_per_event
        * aggregator_memory_gb
        * gb_second
        * MILLION,
        "ledger and totals writes": write_units_per_event
        * _price(prices, "dynamodb_on_demand_write_request_units_per_million"),
    }
    metering = {name: value * events_per_invocation for name, value in per_event.items()}

    basic, premium = model_cost("basic"), model_cost("premium")
    metering_total = sum(metering.values(), Decimal(0))
    serving_total = sum(serving.values(), Decimal(0))
    return {
        "usd_per_million_invocations": {
            "serving": {name: float(value) for name, value in serving.items()},
            "metering": {name: float(value) for name, value in metering.items()},
            "serving_total": float(serving_total),
            "metering_total": float(metering_total),
        },
        "model_cost_per_invocation_usd": {"basic": float(basic), "premium": float(premium)},
        "metering_share_of_basic_model_cost": float(metering_total / MILLION / basic),
        "metering_events_per_invocation": float(events_per_invocation),
        "aggregator_batch_size": batch_size,
        "ledger_batch_measured": int(measured_batch),
        "dynamodb_write_units_per_event": float(write_units_per_event),
        "assumptions": ASSUMPTION_TEXT,
        "prices": prices,
        "break_even": {
            "metering_budget_usd_per_million": float(basic * MILLION * Decimal("0.02")),
        },
    }
