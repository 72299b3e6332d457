"""Powertools Logger, Metrics and Tracer for a function, and the names of every metric.

Powertools reads `POWERTOOLS_SERVICE_NAME`, `POWERTOOLS_LOG_LEVEL` and
`POWERTOOLS_METRICS_NAMESPACE` itself. This module adds defaults for the two names, so the
same code runs in tests and in `sam local` without them.

Every metric is published as an EMF document whose only dimension is `Tier`. Tenant ids are
never a dimension: a metric per tenant would cost a CloudWatch metric per tenant and tier,
and per-tenant figures belong in the ledger. The alarms and dashboards in template.yaml watch
the names in `Metric`, and a unit test checks them against the EMF that the handlers print.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

from agentpool.events import InvocationCompleted, ModelUsage, ToolInvoked
from agentpool.pricing.rating import RatedEvent

DEFAULT_SERVICE = "agentpool"
DEFAULT_NAMESPACE = "agentpool"
# Parent of the standard-library loggers of the layer's modules, such as agentpool.ledger.
PACKAGE_LOGGER = "agentpool"
TIER_DIMENSION = "Tier"


class Metric:
    """Names of the metrics that agentpool publishes, each with the dimension Tier only."""

    # From the aggregator, once per newly recorded Invocation Completed event.
    INVOCATIONS = "Invocations"
    INVOCATION_ERRORS = "InvocationErrors"  # invocations whose status is failed
    LATENCY = "InvocationLatency"  # milliseconds, one value per invocation
    # From the aggregator, per newly recorded Model Usage and Tool Invoked event.
    INPUT_TOKENS = "InputTokens"
    OUTPUT_TOKENS = "OutputTokens"
    MODEL_COST = "ModelCostUSD"  # priced model usage only
    TOOL_CALLS = "ToolCalls"  # allowed tool calls
    TOOL_DENIALS = "ToolDenials"
    # From the aggregator, over every newly recorded event.
    COST = "CostUSD"  # everything priced: model, tools and runtime
    EVENTS_PRICED = "EventsPriced"
    UNPRICED_EVENTS = "UnpricedEvents"
    # From the request path, once per request rejected by a rate limit or quota (HTTP 429).
    THROTTLES = "Throttles"


# Counters published on every aggregator flush for a tier, zero included, so that the error
# rate alarm's metric math always has an `Invocations` data point to divide by.
AGGREGATOR_COUNTS = (
    Metric.INVOCATIONS,
    Metric.INVOCATION_ERRORS,
    Metric.INPUT_TOKENS,
    Metric.OUTPUT_TOKENS,
    Metric.TOOL_CALLS,
    Metric.TOOL_DENIALS,
    Metric.EVENTS_PRICED,
    Metric.UNPRICED_EVENTS,
)


@dataclass(frozen=True)
class Observability:
    """The logger, EMF metrics and X-Ray tracer of one function."""

    logger: Logger
    metrics: Metrics
    tracer: Tracer


def function_logger(environ: Mapping[str, str] = os.environ) -> Logger:
    """Return the function's Powertools Logger, which also writes the layer modules' records.

    Layer modules log through `logging.getLogger(__name__)`. Their parent logger gets the
    Powertools handler, so their records are written as the same JSON, with the Lambda context
    keys. Without it, their INFO records are dropped.
    """
    logger = Logger(service=environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE)
    logging.getLogger(PACKAGE_LOGGER)
    copy_config_to_registered_loggers(source_logger=logger, include={PACKAGE_LOGGER})
    return logger


def observability_from_env(environ: Mapping[str, str] = os.environ) -> Observability:
    """Build the function's Logger, Metrics and Tracer from `environ`."""
    service = environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE
    namespace = environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
    logger = function_logger(environ)
    return Observability(
        logger=logger,
        # An empty service stops Powertools from adding its `service` dimension, so each
        # metric carries only the dimensions that `publish_tier_metrics` sets.
        metrics=Metrics(namespace=namespace, service=""),
        tracer=Tracer(service=service),
    )


@dataclass
class TierMetrics:
    """Metric values of one tier, summed over the events of one aggregator batch."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGGREGATOR_COUNTS, 0))
    latencies_ms: list[int] = field(default_factory=list)
    cost_usd: Decimal = Decimal(0)
    model_cost_usd: Decimal = Decimal(0)

    def add(self, rated: RatedEvent) -> None:
        """Add one newly recorded event."""
        event = rated.event
        if rated.priced:
            self.counts[Metric.EVENTS_PRICED] += 1
            self.cost_usd += rated.amount_usd
        else:
            self.counts[Metric.UNPRICED_EVENTS] += 1
        if isinstance(event, InvocationCompleted):
            self.counts[Metric.INVOCATIONS] += 1
            if event.status == "failed":
                self.counts[Metric.INVOCATION_ERRORS] += 1
            self.latencies_ms.append(event.latency_ms)
        elif isinstance(event, ModelUsage):
            self.counts[Metric.INPUT_TOKENS] += event.usage.input_tokens
            self.counts[Metric.OUTPUT_TOKENS] += event.usage.output_tokens
            if rated.priced:
                self.model_cost_usd += rated.amount_usd
        elif isinstance(event, ToolInvoked):
            name = Metric.TOOL_DENIALS if event.decision == "denied" else Metric.TOOL_CALLS
            self.counts[name] += 1


def metrics_by_tier(recorded: Iterable[RatedEvent]) -> dict[str, TierMetrics]:
    """Sum the metric values of newly recorded events per tier."""
    tiers: dict[str, TierMetrics] = defaultdict(TierMetrics)
    for rated in recorded:
        tiers[rated.event.tier].add(rated)
    return dict(tiers)


def publish_tier_metrics(metrics: Metrics, tier: str, values: TierMetrics) -> None:
    """Print the EMF documents of `tier`, whose only dimension is Tier.

    Costs become floats here, because EMF values are doubles. These metrics are only for
    alarms and dashboards: amounts in the ledger and in reports stay `Decimal`.
    """
    metrics.add_dimension(name=TIER_DIMENSION, value=tier)
    for name, count in values.counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    metrics.add_metric(name=Metric.COST, unit=MetricUnit.NoUnit, value=float(values.cost_usd))
    metrics.add_metric(
        name=Metric.MODEL_COST, unit=MetricUnit.NoUnit, value=float(values.model_cost_usd)
    )
    # EMF allows 100 values of a metric per document. Powertools prints the document and
    # starts a new one with the same dimensions when a metric reaches 100 values.
    for latency in values.latencies_ms:
        metrics.add_metric(name=Metric.LATENCY, unit=MetricUnit.Milliseconds, value=latency)
    metrics.flush_metrics()


def publish_throttle(metrics: Metrics, tier: str) -> None:
    """Print one EMF document that counts one throttled request of `tier`."""
    metrics.add_dimension(name=TIER_DIMENSION, value=tier)
    metrics.add_metric(name=Metric.THROTTLES, unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
