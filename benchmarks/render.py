"""Render docs/benchmarks.md from the results of one `make bench` run."""

from __future__ import annotations

from typing import Any

CALLS_TARGET = 3.0
CPU_TARGET_MS = 1.0
SPEEDUP_TARGET = 10.0
WRITES_TARGET = 1.5
COLD_START_TARGET = 1.3
METERING_SHARE_TARGET = 0.02


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 else f"${value:.4f}"


def _request_rows(result: dict[str, Any]) -> list[str]:
    calls = result["aws_calls_per_request"]
    cpu = result["handler_cpu_minus_agent_ms_p50"]
    return [
        _row(
            "1 Request path",
            "AWS calls per request, tenant credentials cached",
            f"{calls:.2f}",
            f"≤ {CALLS_TARGET:g}",
            _met(calls <= CALLS_TARGET),
        ),
        _row(
            "1 Request path",
            "handler CPU without the agent call, p50 (p95)",
            f"{cpu:.2f} ms ({result['handler_cpu_minus_agent_ms_p95']:.2f} ms)",
            f"< {CPU_TARGET_MS:g} ms at p50",
            _met(cpu < CPU_TARGET_MS),
        ),
        _row(
            "1 Request path",
            "API-to-response minus agent, p50 (p95)",
            f"{result['api_minus_agent_ms_p50']:.1f} ms "
            f"({result['api_minus_agent_ms_p95']:.1f} ms)",
            "none: reported",
            "n/a",
        ),
        _row(
            "1 Request path",
            "handler wall time minus agent, p50 (p95)",
            f"{result['handler_minus_agent_ms_p50']:.1f} ms "
            f"({result['handler_minus_agent_ms_p95']:.1f} ms)",
            "none: reported",
            "n/a",
        ),
    ]


def _aggregation_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    for size, summary in result["batch_sizes"].items():
        ledger, baseline = summary["ledger"], summary["baseline"]
        final = size == "100"
        rows.append(
            _row(
                "2 Aggregation",
                f"batch {size}: events/s, ledger vs baseline (ratio in the same run)",
                f"{ledger['events_per_second']:.1f} vs {baseline['events_per_second']:.1f} "
                f"({summary['speedup']:.2f}x)",
                f"≥ {SPEEDUP_TARGET:g}x at batch 100" if final else "none: reported",
                _met(summary["speedup"] >= SPEEDUP_TARGET) if final else "n/a",
            )
        )
        rows.append(
            _row(
                "2 Aggregation",
                f"batch {size}: DynamoDB write requests per event, ledger vs baseline",
                f"{ledger['write_requests_per_event']:.2f} vs "
                f"{baseline['write_requests_per_event']:.2f}",
                f"≤ {WRITES_TARGET:g} at batch 100" if final else "none: reported",
                _met(ledger["write_requests_per_event"] <= WRITES_TARGET) if final else "n/a",
            )
        )
    return rows


def _cold_start_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    boto3_ms = result["import_ms"]["boto3"]
    for name, ratio in result["ratio_to_boto3"].items():
        rows.append(
            _row(
                "3 Cold start",
                f"{name} import and init vs `import boto3` ({boto3_ms:.0f} ms)",
                f"{result['import_ms'][name]:.0f} ms ({ratio:.2f}x)",
                f"≤ {COLD_START_TARGET:g}x",
                _met(ratio <= COLD_START_TARGET),
            )
        )
    return rows


def _reports_rows(result: dict[str, Any]) -> list[str]:
    if result["status"] != "measured":
        return [
            _row(
                "4 Reports",
                "one month, 1,000 tenants x 31 days x 3 models: time and DynamoDB reads",
                "pending: reports not built yet"
                if result["status"] == "pending"
                else f"not measured: {result['reason']}",
                "none set: reported",
                result["status"],
            )
        ]
    return [
        _row(
            "4 Reports",
            "one month, 1,000 tenants x 31 days x 3 models: time and DynamoDB reads",
            f"{result['report_seconds']:.1f} s and {result['dynamodb_read_requests']} read "
            f"requests for {result['tenants']} tenants (reads scaled to "
            f"{result['target_tenants']}: {result['dynamodb_read_requests_scaled']:.0f})",
            "none set: reported",
            "n/a",
        )
    ]


def _cost_rows(result: dict[str, Any]) -> list[str]:
    totals = result["usd_per_million_invocations"]
    share = result["metering_share_of_basic_model_cost"]
    models = result["model_cost_per_invocation_usd"]
    return [
        _row(
            "5 Platform cost (estimate)",
            "serving, USD per million invocations",
            _usd(totals["serving_total"]),
            "none: reported",
            "n/a",
        ),
        _row(
            "5 Platform cost (estimate)",
            "metering, USD per million invocations (share of a basic invocation's model cost)",
            f"{_usd(totals['metering_total'])} ({share:.1%})",
            f"< {METERING_SHARE_TARGET:.0%} of {_usd(models['basic'] * 1e6)} per million",
            _met(share < METERING_SHARE_TARGET),
        ),
    ]


def _table(results: dict[str, Any]) -> list[str]:
    lines = [
        _row("row", "figure", "measured", "target", "status"),
        _row("---", "---", "---", "---", "---"),
    ]
    lines += _request_rows(results["request_path"])
    lines += _aggregation_rows(results["aggregation"])
    lines += _cold_start_rows(results["cold_start"])
    lines += _reports_rows(results["reports"])
    lines += _cost_rows(results["cost"])
    return lines


def _request_section(result: dict[str, Any]) -> list[str]:
    calls = ", ".join(
        f"{name} {count:.2f}" for name, count in result["aws_calls_by_operation"].items()
    )
    warm_up = ", ".join(
        f"{name} {count:.2f}" for name, count in result["warm_up_calls_by_operation"].items()
    )
    other_calls = result["aws_calls_per_request"] - 1
    per_call_ms = result["sdk_cpu_ms_p50"] / max(other_calls, 1.0)
    statuses = ", ".join(
        f"{status}: {count}"
        for run in result["per_run"]
        for status, count in run["statuses"].items()
    )
    return [
        "## 1. Request path overhead",
        "",
        f"{result['tenants']} tenants (4 premium, the rest basic) x {result['users_per_tenant']} "
        "users with real Cognito ID tokens send `POST /invocations` to the local stack, one "
        "request "
        "at a time, tenants and users picked with Zipf weights 1/rank, half of the requests "
        f"continuing the user's last session. {result['runs']} runs of "
        f"{result['requests_per_run']} requests follow a warm-up of {result['warm_up_requests']} "
        f"requests (one per user). Response statuses of the measured runs: {statuses}. "
        "The agent is benchmarks/agent_stub.py, which answers at once with a fixed AgentResponse, "
        "behind the local AgentCore data plane stand-in.",
        "",
        "Measured inside the invoke function's worker process by benchmarks/shim/sitecustomize.py, "
        "which the benchmark puts on that process's PYTHONPATH:",
        "",
        "- AWS calls: a botocore `before-call` hook on every botocore session of the process, so "
        "calls through the tenant-scoped sessions of the Token Vending Machine count too.",
        "- Handler CPU: `time.process_time()` around the whole `lambda_handler` (Powertools "
        "decorators, event parsing, validation, registry and session calls, metering, the JSON "
        "response), minus `time.process_time()` around `AgentRuntime.invoke` (the "
        "InvokeAgentRuntime request and its wait). Waiting on sockets uses no CPU time, so network "
        "waits are excluded. It includes botocore's CPU for the other AWS calls (serialize, sign, "
        "send, parse): "
        f"{result['sdk_cpu_ms_p50']:.2f} ms at p50, leaving "
        f"{result['handler_cpu_outside_sdk_ms_p50']:.2f} ms at p50 outside botocore.",
        "- Wall times: `time.perf_counter()` in the client (API-to-response) and around the "
        "handler, "
        "each minus the wall time of `AgentRuntime.invoke` in the same request "
        f"({result['agent_wall_ms_p50']:.1f} ms at p50 with the stub agent).",
        "",
        f"AWS calls per request with cached credentials (median run): {calls}. "
        f"Warm-up requests, whose credentials are not cached yet: {warm_up}. "
        f"The platform's AWS calls in the handler took {result['sdk_wall_ms_p50']:.1f} ms of wall "
        "time at p50, all of it against the moto server.",
        "",
        "What bounds the missed targets:",
        "",
        "- AWS calls: each request reads the tenant registry (GetItem), creates or reads its "
        "session (PutItem or GetItem), invokes the runtime and publishes its metering events "
        "(PutEvents); admission control, where present, adds its rate and quota writes. Reaching "
        "3 calls would need one of them cached or moved off the request path, for example the "
        "registry item cached for a few seconds per instance or the metering events sent by the "
        "agent runtime; each is a design change, not a tuning step.",
        f"- Handler CPU: botocore's CPU for the {other_calls:.1f} other AWS calls is "
        f"{result['sdk_cpu_ms_p50']:.1f} ms at p50, about {per_call_ms:.1f} ms per call on this "
        f"machine, and the handler's own code (Powertools logging, pydantic validation, building "
        f"the events) takes {result['handler_cpu_outside_sdk_ms_p50']:.1f} ms, which this "
        "benchmark does not break down further. The calls alone exceed the target.",
        "- Wall times are moto's: its server answers each call in milliseconds to tens of "
        "milliseconds on this busy machine, while the aggregator's SQS poller shares it. They say "
        "nothing of DynamoDB's latency.",
        "",
    ]


def _aggregation_section(result: dict[str, Any]) -> list[str]:
    lines = [
        "## 2. Aggregation",
        "",
        "Both paths parse SQS message bodies (EventBridge envelopes) with `parse_envelope` and "
        "price "
        "them with `rate_event`. The ledger path then calls `Ledger.record` per batch. The naive "
        "baseline writes, per event, one conditional PutItem of an idempotency record and one "
        "UpdateItem of the tenant's month total. Both run against the same moto server in the same "
        "process, each measurement on fresh tables with the template's keys, and the two paths "
        "take "
        "turns. Counts come from botocore hooks on the client (`before-parameter-build` per call, "
        "`before-send` per HTTP attempt). The event mix per invocation is one Invocation "
        "Completed, "
        "one Model Usage and, for 30 % of invocations, one Tool Invoked, over 20 tenants.",
        "",
        _row(
            "batch",
            "ledger events/s",
            "baseline events/s",
            "ratio",
            "ledger write requests/event",
            "transaction items/event",
            "client CPU ms/event (ledger vs baseline)",
        ),
        _row("---", "---", "---", "---", "---", "---", "---"),
    ]
    for size, summary in result["batch_sizes"].items():
        ledger, baseline = summary["ledger"], summary["baseline"]
        lines.append(
            _row(
                size,
                f"{ledger['events_per_second']:.1f}",
                f"{baseline['events_per_second']:.1f}",
                f"{summary['speedup']:.2f}x",
                f"{ledger['write_requests_per_event']:.3f}",
                f"{ledger['transact_items_per_event']:.2f}",
                f"{ledger['client_cpu_ms_per_event']:.2f} vs "
                f"{baseline['client_cpu_ms_per_event']:.2f}",
            )
        )
    final = result["batch_sizes"]["100"]
    ledger, baseline = final["ledger"], final["baseline"]
    break_even = _break_even_transaction_ms(ledger, baseline)
    fewer_writes = baseline["write_requests_per_event"] / max(
        ledger["write_requests_per_event"], 1e-9
    )
    lines += [
        "",
        "What bounds the events/s target: moto. moto 5.2's `transact_write_items` deep-copies the "
        "target table once per transaction item before it applies the transaction (its rollback), "
        "so a 100-item transaction costs 100 table copies, while its PutItem and UpdateItem do "
        "not. On moto the ledger path is therefore slower than the baseline, although it sends "
        f"{fewer_writes:.0f}x "
        "fewer write requests and uses less client CPU per event. An estimate for DynamoDB, not a "
        "measurement: with the measured client CPU and 10 ms per baseline request, the ledger path "
        "stays at 10x the baseline's events/s while one ledger transaction at batch 100 takes at "
        f"most {break_even:.0f} ms.",
        "",
        "Write requests count API calls. DynamoDB bills a transactional write of an item up to "
        "1 KB "
        "as two write units, so the ledger's write units per event are twice its transaction items "
        "per event (see row 5).",
        "",
    ]
    return lines


def _break_even_transaction_ms(ledger: dict[str, Any], baseline: dict[str, Any]) -> float:
    """Return the transaction latency at which the ledger is 10x the baseline (estimate)."""
    baseline_ms = baseline["client_cpu_ms_per_event"] + baseline["write_requests_per_event"] * 10
    budget_ms = baseline_ms / SPEEDUP_TARGET - ledger["client_cpu_ms_per_event"]
    return max(0.0, budget_ms / max(ledger["write_requests_per_event"], 1e-9))


def _cold_start_section(result: dict[str, Any]) -> list[str]:
    low, high = min(result["ratio_to_boto3"].values()), max(result["ratio_to_boto3"].values())
    return [
        "## 3. Cold start",
        "",
        f"Each of {result['samples']} rounds starts one fresh interpreter per handler and one for "
        "`import boto3`, in turn. The interpreter times, with `time.perf_counter()`, only the "
        "import "
        "of the function's `app` module: its init (settings from the template's environment, "
        "Powertools Logger, Metrics and Tracer, boto3 clients and resources) runs at import. "
        "Interpreter start-up is outside both timings. The ratio is taken per round and the median "
        "reported.",
        "",
        "What bounds the target: every handler imports boto3 itself, so 1.3x leaves 30 % of "
        "boto3's "
        "import time for pydantic, pydantic-settings, Powertools and the layer, and for creating "
        "the first boto3 clients, which loads each service's JSON model from disk. Measured "
        f"together these take {low - 1:.1f} to {high - 1:.1f} times boto3's import. Lazy clients "
        "and fewer imports at module level would lower it.",
        "",
    ]


def _reports_section(result: dict[str, Any]) -> list[str]:
    if result["status"] != "measured":
        return [
            "## 4. Reports",
            "",
            f"{result['status'].capitalize()}: {result['reason']}. "
            "benchmarks/reports.py holds the data generator (one "
            "Model Usage ledger entry per tenant, day and model, and the totals the aggregator "
            "keeps "
            "for them) and the harness. It runs `agentpool.billing.run.ReportRun.run` for the "
            "month "
            "once that module exists, and reports its time and DynamoDB read requests.",
            "",
        ]
    return [
        "## 4. Reports",
        "",
        f"Measured on {result['tenants']} of the {result['target_tenants']:,} tenants, because "
        "moto's Query reads every item of the table or index for each query, so a full run "
        "takes longer than the suite's budget. Its Query requests read one tenant each, so they "
        "are scaled by the tenant count; its GetItem requests read tier totals and are not. Its "
        "time on moto says nothing of DynamoDB. "
        f"{result['ledger_entries']:,} ledger entries of {result['tenants']:,} tenants, written in "
        f"{result['generate_seconds']:.0f} s. The report run took {result['report_seconds']:.1f} s "
        f"with these DynamoDB requests: {result['dynamodb_requests']}.",
        "",
    ]


def _cost_section(result: dict[str, Any]) -> list[str]:
    totals = result["usd_per_million_invocations"]
    lines = [
        "## 5. Platform cost (estimates)",
        "",
        "USD per million invocations, from the counts measured above and AWS list prices; free "
        "tiers and data transfer left out. Every figure here is an estimate.",
        "",
        _row("part", "item", "USD per million invocations"),
        _row("---", "---", "---"),
    ]
    for part in ("serving", "metering"):
        for name, value in totals[part].items():
            lines.append(_row(part, name, _usd(value)))
        lines.append(_row(part, "**total**", f"**{_usd(totals[part + '_total'])}**"))
    models = result["model_cost_per_invocation_usd"]
    lines += [
        "",
        f"Model cost of a typical invocation, from the token totals of `agentpool demo` and the "
        f"price catalog: basic {_usd(models['basic'] * 1e6)} and premium "
        f"{_usd(models['premium'] * 1e6)} per million invocations. Metering is "
        f"{result['metering_share_of_basic_model_cost']:.1%} of the basic model cost, against a "
        f"target below 2 % ({_usd(result['break_even']['metering_budget_usd_per_million'])} per "
        "million).",
        "",
        f"Counts used: {result['metering_events_per_invocation']:.2f} metering events per "
        "invocation "
        "(PutEvents entries counted in the invoke function), aggregator batches of "
        f"{result['aggregator_batch_size']} (template.yaml), "
        f"{result['dynamodb_write_units_per_event']:.2f} DynamoDB write units per event (twice the "
        f"transaction items per event measured at batch {result['ledger_batch_measured']}).",
        "",
        "What bounds the metering target: a basic invocation's model cost is about five "
        "thousandths of a cent, so 2 % of it is about a dollar per million invocations. "
        "EventBridge alone bills one dollar per million events, and each invocation publishes "
        "about two. The ledger's transactional writes cost more still, because every event updates "
        "its tenant, user, tier and breakdown totals at two write units per item. Meeting the "
        "target would need fewer, larger events (for example one event per invocation carrying its "
        "usage), totals kept per batch in fewer items, or metering that skips EventBridge.",
        "",
        "Assumptions:",
        "",
    ]
    lines += [f"- {text}." for text in result["assumptions"].values()]
    lines += [
        "",
        f"List prices, read on {result['prices']['read_on']} ({result['prices']['region']}):",
        "",
    ]
    for name, price in result["prices"].items():
        if isinstance(price, dict):
            value = price.get("usd") or price.get("units")
            lines.append(f"- `{name}`: {value}. Source: {price['source']}.")
    lines += ["", result["prices"]["note"], ""]
    return lines


def render(context: dict[str, Any], results: dict[str, Any]) -> str:
    machine = context["machine"]
    before = ", ".join(f"{value:.2f}" for value in context["load_before"])
    after = ", ".join(f"{value:.2f}" for value in context["load_after"])
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (benchmarks/run.py); edit the code, not this page.",
        "",
        f"- Date: {context['date']}",
        f"- Machine: {machine['cpu_model']}, {machine['cores']} cores, Python {machine['python']}, "
        f"{machine['platform']}",
        f"- Load average (1, 5, 15 min): {before} before, {after} after. Other test suites shared "
        "the machine, so every figure is a median over repeated runs and every comparison a ratio "
        "measured in the same run.",
        f"- Command: `{context['command']}` with {context['arguments']}; "
        f"took {context['seconds']:.0f} s.",
        "- Raw results: out/bench/results.json (not committed).",
        "",
        "Everything runs on 127.0.0.1 against the local stack (moto's server and the stand-ins), "
        "so wall times show the local stack, not AWS. Counts of calls and CPU times carry over.",
        "",
        "## Summary",
        "",
        *_table(results),
        "",
        *_request_section(results["request_path"]),
        *_aggregation_section(results["aggregation"]),
        *_cold_start_section(results["cold_start"]),
        *_reports_section(results["reports"]),
        *_cost_section(results["cost"]),
    ]
    return "\n".join(lines).rstrip() + "\n"
