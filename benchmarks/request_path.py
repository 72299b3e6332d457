"""Request path overhead: POST /invocations through the local stack with a zero-latency agent.

Traffic: 20 tenants (the 4 largest premium, the rest basic) with 5 users each. Each request
picks a tenant with Zipf weights 1/rank and a user of it with weights 1/rank, and continues
the user's last session half of the time. Requests are sent one at a time, so one warm worker
serves them all, and no tenant is sent more than its tier's request rate. A warm-up pass sends
one request per user first, so the measured runs use cached tenant credentials, as a warm
Lambda instance does; the AssumeRole calls of the warm-up are reported apart.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentpool.tiers import TIERS
from agentpool_dev import operations
from benchmarks.common import median, percentile
from benchmarks.stack import BenchStack

TENANTS = 20
PREMIUM_TENANTS = 4
USERS_PER_TENANT = 5
SEED = 20260101
PROMPT = "When is the clinic open on Saturdays?"


@dataclass
class BenchUser:
    tenant_id: str
    tier: str
    token: str
    session_id: str | None = None


@dataclass
class Sample:
    api_ms: float
    status: int
    record: dict[str, Any] = field(default_factory=dict)


def onboard(target: operations.Target) -> list[list[BenchUser]]:
    """Create the tenants and users, and return the users of each tenant by tenant rank."""
    tenants: list[list[BenchUser]] = []
    for rank in range(TENANTS):
        tier = "premium" if rank < PREMIUM_TENANTS else "basic"
        tenant_id = f"bench-{rank:02d}"
        operations.create_tenant(target, tenant_id, f"Benchmark tenant {rank}", tier)
        users = []
        for index in range(USERS_PER_TENANT):
            email = f"user{index}@{tenant_id}.example"
            password = operations.generate_password()
            operations.create_user(target, tenant_id, email, password)
            users.append(BenchUser(tenant_id, tier, operations.id_token(target, email, password)))
        tenants.append(users)
    return tenants


def send(api_url: str, user: BenchUser) -> tuple[int, float, dict[str, Any]]:
    body: dict[str, Any] = {"prompt": PROMPT}
    if user.session_id is not None:
        body["sessionId"] = user.session_id
    request = urllib.request.Request(  # noqa: S310 - the local stack's API on 127.0.0.1
        api_url.rstrip("/") + "/invocations",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": user.token},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            payload = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        payload, status = error.read(), error.code
    elapsed_ms = (time.perf_counter() - started) * 1000
    return status, elapsed_ms, json.loads(payload or b"{}")


class Traffic:
    """Zipf-weighted requests that keep each tenant under its tier's request rate."""

    def __init__(self, tenants: list[list[BenchUser]], api_url: str) -> None:
        self.tenants = tenants
        self.api_url = api_url
        self.random = random.Random(SEED)  # noqa: S311 - reproducible traffic, not secrets
        self.tenant_weights = [1 / rank for rank in range(1, len(tenants) + 1)]
        self.user_weights = [1 / rank for rank in range(1, USERS_PER_TENANT + 1)]
        self.last_sent: dict[str, float] = {}

    def request(self, user: BenchUser) -> Sample:
        spacing = 1.1 / TIERS[user.tier].requests_per_second
        wait = self.last_sent.get(user.tenant_id, 0.0) + spacing - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last_sent[user.tenant_id] = time.monotonic()
        if self.random.random() >= 0.5:
            user.session_id = None
        status, api_ms, body = send(self.api_url, user)
        if status == 200:
            user.session_id = body["sessionId"]
        return Sample(api_ms=api_ms, status=status, record={"request_id": body.get("requestId")})

    def next_user(self) -> BenchUser:
        (users,) = self.random.choices(self.tenants, weights=self.tenant_weights)
        (user,) = self.random.choices(users, weights=self.user_weights)
        return user


def read_records(stack: BenchStack) -> dict[str, dict[str, Any]]:
    records = {}
    for line in stack.records_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        records[record["api_request_id"]] = record
    return records


def summarize_run(samples: list[Sample], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Percentiles of one run. Times without the agent subtract the InvokeAgentRuntime call."""
    ok = [sample for sample in samples if sample.status == 200]
    probed = [(sample, records[sample.record["request_id"]]) for sample in ok]
    api_minus_agent = [s.api_ms - r["agent_wall_ms"] for s, r in probed]
    handler_minus_agent = [r["wall_ms"] - r["agent_wall_ms"] for _, r in probed]
    cpu_minus_agent = [r["cpu_ms"] - r["agent_cpu_ms"] for _, r in probed]
    cpu_outside_sdk = [r["cpu_ms"] - r["agent_cpu_ms"] - r["sdk_cpu_ms"] for _, r in probed]
    calls: Counter[str] = Counter()
    for _, record in probed:
        calls.update(record["calls"])
    return {
        "requests": len(samples),
        "succeeded": len(ok),
        "statuses": dict(Counter(str(sample.status) for sample in samples)),
        "api_ms_p50": percentile([s.api_ms for s in ok], 0.5),
        "api_ms_p95": percentile([s.api_ms for s in ok], 0.95),
        "api_minus_agent_ms_p50": percentile(api_minus_agent, 0.5),
        "api_minus_agent_ms_p95": percentile(api_minus_agent, 0.95),
        "handler_minus_agent_ms_p50": percentile(handler_minus_agent, 0.5),
        "handler_minus_agent_ms_p95": percentile(handler_minus_agent, 0.95),
        "handler_cpu_minus_agent_ms_p50": percentile(cpu_minus_agent, 0.5),
        "handler_cpu_minus_agent_ms_p95": percentile(cpu_minus_agent, 0.95),
        "handler_cpu_outside_sdk_ms_p50": percentile(cpu_outside_sdk, 0.5),
        "sdk_cpu_ms_p50": percentile([r["sdk_cpu_ms"] for _, r in probed], 0.5),
        "sdk_wall_ms_p50": percentile([r["sdk_wall_ms"] for _, r in probed], 0.5),
        "agent_wall_ms_p50": percentile([r["agent_wall_ms"] for _, r in probed], 0.5),
        "aws_calls_per_request": sum(calls.values()) / len(probed),
        "metering_events_per_request": sum(r["events_published"] for _, r in probed) / len(probed),
        "aws_calls_by_operation": {
            name: count / len(probed) for name, count in sorted(calls.items())
        },
    }


def run(stack: BenchStack, runs: int = 3, requests_per_run: int = 150) -> dict[str, Any]:
    assert stack.state is not None  # noqa: S101 - the caller starts the stack
    target = operations.Target(
        "bench", stack.state.api_url, stack.state.resources, stack.aws_session(), stack.moto_url
    )
    tenants = onboard(target)
    traffic = Traffic(tenants, stack.state.api_url)

    # User by user across tenants, so that no tenant's request rate makes the warm-up wait.
    warm_up = [
        traffic.request(users[index]) for index in range(USERS_PER_TENANT) for users in tenants
    ]
    per_run: list[dict[str, Any]] = []
    all_samples: list[list[Sample]] = []
    for _ in range(runs):
        all_samples.append([traffic.request(traffic.next_user()) for _ in range(requests_per_run)])
    records = read_records(stack)
    warm_up_calls: Counter[str] = Counter()
    for sample in warm_up:
        if sample.status == 200:
            warm_up_calls.update(records[sample.record["request_id"]]["calls"])
    for samples in all_samples:
        per_run.append(summarize_run(samples, records))

    keys = [key for key, value in per_run[0].items() if isinstance(value, float)]
    result: dict[str, Any] = {key: median([run[key] for run in per_run]) for key in keys}
    result.update(
        runs=runs,
        requests_per_run=requests_per_run,
        per_run=per_run,
        aws_calls_by_operation=per_run[len(per_run) // 2]["aws_calls_by_operation"],
        warm_up_requests=len(warm_up),
        warm_up_statuses=dict(Counter(str(sample.status) for sample in warm_up)),
        warm_up_calls_per_request=sum(warm_up_calls.values()) / max(1, len(warm_up)),
        warm_up_calls_by_operation={
            name: count / max(1, len(warm_up)) for name, count in sorted(warm_up_calls.items())
        },
        tenants=TENANTS,
        users_per_tenant=USERS_PER_TENANT,
    )
    return result
