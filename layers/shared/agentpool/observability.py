"""Powertools Logger, Metrics and Tracer for a function, built from its environment.

Powertools reads `POWERTOOLS_SERVICE_NAME`, `POWERTOOLS_LOG_LEVEL` and
`POWERTOOLS_METRICS_NAMESPACE` itself. This module adds defaults for the two names, so the
same code runs in tests and in `sam local` without them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit

DEFAULT_SERVICE = "agentpool"
DEFAULT_NAMESPACE = "agentpool"
# Parent of the standard-library loggers of the layer's modules, such as agentpool.ledger.
PACKAGE_LOGGER = "agentpool"


@dataclass(frozen=True)
class Observability:
    """The logger, EMF metrics and X-Ray tracer of one function."""

    logger: Logger
    metrics: Metrics
    tracer: Tracer


def observability_from_env(environ: Mapping[str, str] = os.environ) -> Observability:
    """Build the function's Logger, Metrics and Tracer from `environ`."""
    service = environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE
    namespace = environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
    logger = Logger(service=service)
    # Layer modules log through `logging.getLogger(__name__)`. Giving their parent logger the
    # Powertools handler writes their records as the same JSON, with the Lambda context keys.
    logging.getLogger(PACKAGE_LOGGER)
    copy_config_to_registered_loggers(source_logger=logger, include={PACKAGE_LOGGER})
    return Observability(
        logger=logger,
        # An empty service stops Powertools from adding its `service` dimension, so each
        # metric carries only the dimensions that `publish_tier_metrics` sets.
        metrics=Metrics(namespace=namespace, service=""),
        tracer=Tracer(service=service),
    )


def publish_tier_metrics(
    metrics: Metrics, tier: str, counts: Mapping[str, int], cost_usd: Decimal
) -> None:
    """Print one EMF document for `tier`, whose only dimension is Tier.

    `counts` maps metric names to counts. The cost becomes a float here, because EMF values
    are doubles. This metric is only for dashboards: amounts in the ledger stay `Decimal`.
    """
    metrics.add_dimension(name="Tier", value=tier)
    for name, count in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=count)
    metrics.add_metric(name="CostUSD", unit=MetricUnit.NoUnit, value=float(cost_usd))
    metrics.flush_metrics()
