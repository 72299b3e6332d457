"""Alarms and dashboards in template.yaml watch metrics that the code really emits.

Each alarm's namespace, metric, dimension, statistic, period and threshold is checked against
the names in agentpool.observability and against the EMF documents that a real aggregator
run prints, so renaming a metric cannot leave an alarm watching nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from moto import mock_aws

from agentpool.observability import TIER_DIMENSION, Metric, publish_throttle
from agentpool.tiers import TIERS
from agentpool_dev.template import Template
from tests.unit.pricing_support import LEDGER_TABLE, TOTALS_TABLE, LedgerStack, set_fake_credentials
from tests.unit.test_aggregator import FakeContext, emf_documents, load_app, sample_batch

TEMPLATE = Template()
NAMESPACE = TEMPLATE.document["Globals"]["Function"]["Environment"]["Variables"][
    "POWERTOOLS_METRICS_NAMESPACE"
]
METRIC_NAMES = {
    value for name, value in vars(Metric).items() if name.isupper() and isinstance(value, str)
}
ALARMS = TEMPLATE.of_type("AWS::CloudWatch::Alarm")
# Per tier: alarm suffix -> (metric, statistic, period in seconds, threshold parameter suffix).
TIER_ALARMS = {
    "LatencyP99Alarm": (Metric.LATENCY, "p99", 300, "LatencyP99Ms"),
    "ThrottlesAlarm": (Metric.THROTTLES, "Sum", 300, "ThrottlesPer5Min"),
    "CostPerHourAlarm": (Metric.COST, "Sum", 3600, "CostPerHourUsd"),
    "UnpricedEventsAlarm": (Metric.UNPRICED_EVENTS, "Sum", 3600, "UnpricedEventsPerHour"),
}


def tier_alarm_metrics() -> list[tuple[str, str, dict[str, Any]]]:
    """Return (alarm id, tier, metric) for each metric of each alarm on the agentpool namespace."""
    found = []
    for logical_id, alarm in ALARMS.items():
        props = alarm["Properties"]
        queries = props.get("Metrics", [])
        metrics = [query["MetricStat"]["Metric"] for query in queries if "MetricStat" in query]
        if "MetricName" in props:
            metrics.append(props)
        for metric in metrics:
            if metric["Namespace"] == NAMESPACE:
                tier = metric["Dimensions"][0]["Value"]
                found.append((logical_id, tier, metric))
    return found


@pytest.fixture
def aggregator_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[list[dict[str, Any]]]:
    set_fake_credentials(monkeypatch)
    monkeypatch.setenv("LEDGER_TABLE", LEDGER_TABLE)
    monkeypatch.setenv("TOTALS_TABLE", TOTALS_TABLE)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "aggregator-alarms")
    package_logger = logging.getLogger("agentpool")
    saved = (package_logger.handlers, package_logger.propagate, package_logger.level)
    with mock_aws():
        LedgerStack()
        app: ModuleType = load_app()
        capsys.readouterr()
        app.lambda_handler(sample_batch(), FakeContext())
        yield emf_documents(capsys.readouterr().out)
    package_logger.handlers, package_logger.propagate, package_logger.level = saved


def emitted(documents: list[dict[str, Any]]) -> dict[str, set[tuple[str, ...]]]:
    """Map each metric name in EMF documents to its namespace and dimension sets."""
    names: dict[str, set[tuple[str, ...]]] = {}
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                for dimensions in directive["Dimensions"]:
                    names.setdefault(metric["Name"], set()).add(
                        (directive["Namespace"], *dimensions)
                    )
    return names


# ------------------------------------------------------------------ template checks


def test_every_tier_has_each_alarm() -> None:
    for tier in TIERS:
        prefix = tier.capitalize()
        for suffix in (*TIER_ALARMS, "ErrorRateAlarm"):
            assert f"{prefix}{suffix}" in ALARMS, f"{prefix}{suffix} missing"


def test_alarm_metrics_are_known_names() -> None:
    for logical_id, _, metric in tier_alarm_metrics():
        assert metric["MetricName"] in METRIC_NAMES, logical_id


def test_alarm_dimension_is_tier_only() -> None:
    for logical_id, tier, metric in tier_alarm_metrics():
        assert metric["Dimensions"] == [{"Name": TIER_DIMENSION, "Value": tier}], logical_id
        assert tier in TIERS, logical_id
        assert logical_id.startswith(tier.capitalize()), logical_id


@pytest.mark.parametrize("tier", sorted(TIERS))
@pytest.mark.parametrize("suffix", sorted(TIER_ALARMS))
def test_tier_alarm_settings(tier: str, suffix: str) -> None:
    metric, statistic, period, parameter = TIER_ALARMS[suffix]
    props = ALARMS[f"{tier.capitalize()}{suffix}"]["Properties"]
    assert props["Namespace"] == NAMESPACE
    assert props["MetricName"] == metric
    if statistic.startswith("p"):
        assert props["ExtendedStatistic"] == statistic
        assert "Statistic" not in props
    else:
        assert props["Statistic"] == statistic
    assert props["Period"] == period
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["Threshold"] == {"Ref": f"{tier.capitalize()}{parameter}"}
    assert f"{tier.capitalize()}{parameter}" in TEMPLATE.document["Parameters"]
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_error_rate_alarm_math(tier: str) -> None:
    props = ALARMS[f"{tier.capitalize()}ErrorRateAlarm"]["Properties"]
    queries = {query["Id"]: query for query in props["Metrics"]}
    assert queries["invocations"]["MetricStat"]["Metric"]["MetricName"] == Metric.INVOCATIONS
    assert queries["errors"]["MetricStat"]["Metric"]["MetricName"] == Metric.INVOCATION_ERRORS
    assert queries["invocations"]["MetricStat"]["Stat"] == "Sum"
    assert queries["errors"]["MetricStat"]["Period"] == 300
    assert [q["Id"] for q in props["Metrics"] if q.get("ReturnData")] == ["error_rate"]
    assert "100 * errors / invocations" in queries["error_rate"]["Expression"]
    assert props["Threshold"] == {"Ref": f"{tier.capitalize()}ErrorRatePercent"}


def test_dead_letter_queue_alarm() -> None:
    props = ALARMS["MeteringDeadLetterQueueAlarm"]["Properties"]
    assert props["Namespace"] == "AWS/SQS"
    assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert props["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["MeteringDeadLetterQueue", "QueueName"]
    }
    assert props["Threshold"] == 0


def test_aggregator_errors_alarm() -> None:
    props = ALARMS["AggregatorErrorsAlarm"]["Properties"]
    assert props["Namespace"] == "AWS/Lambda"
    assert props["MetricName"] == "Errors"
    assert props["Dimensions"][0]["Value"] == {"Ref": "AggregatorFunction"}
    assert props["Statistic"] == "Sum"


def test_alarm_topic_encrypted() -> None:
    topic = TEMPLATE.resources["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_dashboard_metrics_are_known_names(tier: str) -> None:
    body = TEMPLATE.resources[f"{tier.capitalize()}Dashboard"]["Properties"]["DashboardBody"]
    text = re.sub(r"\$\{[^}]+\}", "0", body["Fn::Sub"])
    widgets = json.loads(text)["widgets"]
    names = {
        row[1]
        for widget in widgets
        for row in widget["properties"].get("metrics", [])
        if isinstance(row[1], str) and row[1] not in (".", "...")
    }
    assert names <= METRIC_NAMES
    assert f'"Tier", "{tier}"' in body["Fn::Sub"]


# --------------------------------------------------------------------- EMF checks


def test_aggregator_emits_alarm_metrics(aggregator_output: list[dict[str, Any]]) -> None:
    names = emitted(aggregator_output)
    for logical_id, _, metric in tier_alarm_metrics():
        if metric["MetricName"] == Metric.THROTTLES:
            continue  # emitted on the request path; checked below
        assert metric["MetricName"] in names, f"{logical_id}: nothing emits it"
        assert (NAMESPACE, TIER_DIMENSION) in names[metric["MetricName"]], logical_id


def test_aggregator_emits_no_tenant_dimension(aggregator_output: list[dict[str, Any]]) -> None:
    for dimension_sets in emitted(aggregator_output).values():
        assert dimension_sets == {(NAMESPACE, TIER_DIMENSION)}


def test_latency_values_per_invocation(aggregator_output: list[dict[str, Any]]) -> None:
    [document] = [d for d in aggregator_output if Metric.LATENCY in d]
    assert document[TIER_DIMENSION] == "premium"
    assert document[Metric.INVOCATIONS] == [1]
    assert document[Metric.LATENCY] == [pytest.approx(document[Metric.LATENCY][0])]


def test_throttle_helper_emits_alarm_metric(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = Metrics(namespace=NAMESPACE, service="")
    publish_throttle(metrics, "basic")
    names = emitted(emf_documents(capsys.readouterr().out))
    assert names[Metric.THROTTLES] == {(NAMESPACE, TIER_DIMENSION)}
