"""POST /invocations: run one prompt for the verified caller and meter what it used."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentpool import usage as usage_shapes
from agentpool.admission import Admission, AdmissionControl
from agentpool.agent_contract import AgentRequest, AgentResponse
from agentpool.agent_runtime import AgentRuntime
from agentpool.budget import (
    BudgetExceededError,
    BudgetGuard,
    Reservation,
    WorstCase,
    held_amounts,
    tool_calls_cost,
)
from agentpool.errors import (
    AgentpoolError,
    ForbiddenError,
    InvalidRequestError,
    ThrottledError,
    UpstreamError,
    first_problem,
)
from agentpool.events import (
    InvocationCompleted,
    MemoryUsage,
    MeteringEvent,
    ModelUsage,
    RequestThrottled,
    stable_event_id,
)
from agentpool.identity import CallerIdentity
from agentpool.pricing.catalog import PriceCatalog, default_catalog
from agentpool.pricing.rating import rate_event
from agentpool.publisher import MeteringPublisher, PublishError
from agentpool.registry import Tenant, TenantRegistry
from agentpool.sessions import Session, SessionStore
from agentpool.tiers import TIERS, TierConfig, Tool
from agentpool.tvm import TenantScope, TokenVendingMachine

logger = logging.getLogger(__name__)

MAX_PROMPT_BYTES = 32 * 1024


class InvocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    prompt: str = Field(min_length=1)
    session_id: str | None = Field(default=None, alias="sessionId")

    @field_validator("prompt")
    @classmethod
    def _prompt_size(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("prompt must not be blank")
        if len(prompt.encode("utf-8")) > MAX_PROMPT_BYTES:
            raise ValueError(f"prompt exceeds {MAX_PROMPT_BYTES} bytes")
        return prompt

    @field_validator("session_id")
    @classmethod
    def _session_format(cls, session_id: str | None) -> str | None:
        if session_id is not None:
            try:
                uuid.UUID(session_id)
            except ValueError as error:
                raise ValueError("sessionId must be a session id returned by the API") from error
        return session_id


def parse_request(body: str | None) -> InvocationRequest:
    """Parse the JSON body; raise InvalidRequestError naming the first problem."""
    if not body:
        raise InvalidRequestError("The request body must be a JSON object with a prompt.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        # RecursionError: nesting deep enough to exhaust the parser's stack, e.g. [[[...]]].
        raise InvalidRequestError("The request body is not valid JSON.") from error
    if not isinstance(data, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        return InvocationRequest.model_validate(data)
    except ValidationError as error:
        raise InvalidRequestError(first_problem(error)) from error


@dataclass
class OpenReservation:
    """A hard-capped request's reservation, until the request settles it."""

    reservation: Reservation
    settled: bool = False


@dataclass(frozen=True)
class InvocationResult:
    request_id: str
    session_id: str
    tier: str
    model_id: str
    output: str
    usage: dict[str, int]

    def to_body(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "sessionId": self.session_id,
            "tier": self.tier,
            "model": self.model_id,
            "output": self.output,
            "usage": self.usage,
        }


class InvocationService:
    def __init__(
        self,
        registry: TenantRegistry,
        vending_machine: TokenVendingMachine,
        sessions_table: str,
        runtime: AgentRuntime,
        publisher: MeteringPublisher,
        admission: AdmissionControl,
        totals_table: str | None = None,
        catalog: PriceCatalog | None = None,
        worst_case: WorstCase | None = None,
        dynamodb_client: Any | None = None,
    ) -> None:
        """`totals_table` contains hard-capped tenants' reservations, which `dynamodb_client`
        (the function's own credentials) writes. Without both, hard-capped tenants get 500.
        """
        self._registry = registry
        self._admission = admission
        self._vending_machine = vending_machine
        self._sessions_table = sessions_table
        self._runtime = runtime
        self._publisher = publisher
        self._totals_table = totals_table
        self._catalog = catalog
        self._worst_case = worst_case or WorstCase()
        self._dynamodb_client = dynamodb_client

    def invoke(
        self,
        caller: CallerIdentity,
        request: InvocationRequest,
        request_id: str,
        id_token: str,
    ) -> InvocationResult:
        tenant = self._registry.get(caller.tenant_id)
        if tenant is None or tenant.status != "active":
            raise ForbiddenError("The tenant is not registered or not active.")
        # The registry's tier is authoritative: a token whose tier claim disagrees never gets
        # more than the tenant's current tier.
        tier = TIERS.get(tenant.tier)
        if tier is None:
            # The registry rejects unknown tiers, so only a tier removed from tiers.py gets here.
            logger.error("tenant tier not configured", extra={"tenant_id": tenant.tenant_id})
            raise ForbiddenError("The tenant's tier is not available; contact the platform team.")
        scope = TenantScope(tenant.tenant_id, tier.name, caller.user_id)
        # Before any session or agent work, so that a rejected request costs nothing.
        admission = self._admission.admit(tenant.tenant_id, tier)
        if not admission.admitted:
            self._reject(scope, request_id, admission)
        # Before any session or agent work, so that a request over the budget costs nothing.
        reservation = self._reserve_budget(tenant, tier, request, request_id)
        try:
            tenant_session = self._vending_machine.session_for(scope)
            return self._run(
                caller, request, request_id, id_token, scope, tier, tenant_session, reservation
            )
        finally:
            if reservation is not None and not reservation.settled:
                # The request failed before its metering: it used no model, tool or memory.
                self._settle_budget(reservation, [])

    def _run(
        self,
        caller: CallerIdentity,
        request: InvocationRequest,
        request_id: str,
        id_token: str,
        scope: TenantScope,
        tier: TierConfig,
        tenant_session: Any,
        reservation: OpenReservation | None = None,
    ) -> InvocationResult:
        """Run the admitted request on the agent, meter it and return the agent's output."""
        sessions = SessionStore(tenant_session.resource("dynamodb").Table(self._sessions_table))
        session = self._session_for(sessions, caller, request.session_id)

        agent_request = AgentRequest(
            prompt=request.prompt,
            request_id=request_id,
            tenant_id=scope.tenant_id,
            tier=tier.name,
            user_id=caller.user_id,
            session_id=session.session_id,
            model_id=tier.model_id,
            tools=tier.tools,
            gateway_token=id_token,
        )
        started = time.monotonic()
        response: AgentResponse | None = None
        try:
            response = self._runtime.invoke(agent_request, session.runtime_session_id)
        finally:
            latency_ms = int((time.monotonic() - started) * 1000)
            self._meter(
                scope, request_id, session, tier.model_id, response, latency_ms, reservation
            )
        if response.error is not None or response.output is None:
            logger.warning(
                "agent reported an error",
                extra={
                    "request_id": request_id,
                    "error_code": response.error and response.error.code,
                },
            )
            raise UpstreamError("The agent failed; quote the request id when you report it.")
        usage = usage_shapes.from_converse(response.usage)
        return InvocationResult(
            request_id=request_id,
            session_id=session.session_id,
            tier=tier.name,
            model_id=tier.model_id,
            output=response.output,
            usage={
                "inputTokens": usage.total_input_tokens,
                "outputTokens": usage.output_tokens,
            },
        )

    def _reserve_budget(
        self,
        tenant: Tenant,
        tier: TierConfig,
        request: InvocationRequest,
        request_id: str,
    ) -> OpenReservation | None:
        """Reserve the request's worst-case cost when the tenant has a hard cap.

        Raises BudgetExceededError (429) when it does not fit.
        """
        if not tenant.hard_cap:
            return None
        catalog = self._catalog or default_catalog()
        worst_case_usd = self._worst_case.cost(request.prompt, catalog, tier, datetime.now(UTC))
        budget_usd = tenant.monthly_budget_usd or tier.monthly_budget_usd
        guard = self._budget_guard(tenant.tenant_id)
        try:
            reservation = guard.reserve(tenant.tenant_id, request_id, worst_case_usd, budget_usd)
        except BudgetExceededError:
            logger.info(
                "request over budget",
                extra={"request_id": request_id, "tenant_id": tenant.tenant_id},
            )
            raise
        return OpenReservation(reservation)

    def _budget_guard(self, tenant_id: str) -> BudgetGuard:
        if self._totals_table is None or self._dynamodb_client is None:
            logger.error("hard cap set but no totals table", extra={"tenant_id": tenant_id})
            raise AgentpoolError("The tenant's budget cannot be checked; retry later.")
        return BudgetGuard(self._dynamodb_client, self._totals_table)

    def _settle_budget(
        self,
        open_reservation: OpenReservation,
        events: list[MeteringEvent],
        tool_calls: Sequence[Tool] = (),
    ) -> None:
        """Replace the reservation by a hold of the actual cost of `events`, before they are
        published, so the ledger always finds the hold it removes them from.

        `tool_calls` are the tools of the agent's allowed Gateway calls. Their events come
        from the Gateway's interceptor, so their cost is held until the hold expires.
        """
        reservation = open_reservation.reservation
        open_reservation.settled = True
        catalog = self._catalog or default_catalog()
        held_usd = held_amounts(rate_event(event, catalog) for event in events)
        tools_usd = tool_calls_cost(catalog, tool_calls, datetime.now(UTC))
        try:
            self._budget_guard(reservation.tenant_id).settle(
                reservation, held_usd, unmatched_usd=tools_usd
            )
        except ClientError as error:
            # The reservation stays open and blocks its worst case until it expires
            # (budget.RESERVATION_TIMEOUT), so it is logged with the ids to look it up.
            logger.error(
                "budget reservation not settled",
                extra={
                    "request_id": reservation.request_id,
                    "tenant_id": reservation.tenant_id,
                    "month": reservation.month,
                    "error_code": error.response.get("Error", {}).get("Code"),
                },
            )

    def _reject(self, scope: TenantScope, request_id: str, admission: Admission) -> None:
        """Publish the throttle event of a rejected request and raise ThrottledError."""
        assert admission.limit is not None  # noqa: S101 - set on every rejection
        event = RequestThrottled(
            event_id=stable_event_id(request_id, "throttle"),
            event_time=datetime.now(UTC),
            tenant_id=scope.tenant_id,
            tier=scope.tier,
            user_id=scope.user_id,
            request_id=request_id,
            limit=admission.limit,
            retry_after_seconds=admission.retry_after_seconds,
        )
        try:
            self._publisher.publish([event])
        except PublishError as error:
            logger.error(
                "throttle event not published",
                extra={"request_id": request_id, "event_ids": error.event_ids},
            )
        logger.info(
            "request throttled",
            extra={
                "request_id": request_id,
                "tenant_id": scope.tenant_id,
                "limit": admission.limit,
            },
        )
        if admission.limit == "daily_quota":
            message = "The tenant's daily request quota is used up; retry after the UTC day ends."
        else:
            message = "The tenant's request rate limit is exceeded; retry after Retry-After."
        raise ThrottledError(message, admission.retry_after_seconds)

    def _session_for(
        self, sessions: SessionStore, caller: CallerIdentity, session_id: str | None
    ) -> Session:
        if session_id is None:
            return sessions.create(caller.tenant_id, caller.user_id)
        session = sessions.get(caller.tenant_id, session_id)
        if session is None or session.user_id != caller.user_id:
            # The same error for "missing" and "someone else's", so ids cannot be probed.
            raise ForbiddenError("The session does not exist or belongs to another user.")
        return session

    def _meter(
        self,
        scope: TenantScope,
        request_id: str,
        session: Session,
        model_id: str,
        response: AgentResponse | None,
        latency_ms: int,
        reservation: OpenReservation | None = None,
    ) -> None:
        """Publish the invocation, model usage and memory usage events, even when the agent failed.

        A hard-capped request settles its reservation first. Tool calls are metered by the
        Gateway's interceptor, which decides every call, including calls made without the
        agent, so they are not published here.
        """
        now = datetime.now(UTC)
        common: dict[str, Any] = {
            "event_time": now,
            "tenant_id": scope.tenant_id,
            "tier": scope.tier,
            "user_id": scope.user_id,
            "request_id": request_id,
        }
        failed = response is None or response.error is not None or response.output is None
        events: list[MeteringEvent] = [
            InvocationCompleted(
                event_id=stable_event_id(request_id, "invocation"),
                status="failed" if failed else "succeeded",
                latency_ms=latency_ms,
                session_id=session.session_id,
                runtime_session_id=session.runtime_session_id,
                **common,
            )
        ]
        if response is not None and response.usage:
            events.append(
                ModelUsage(
                    event_id=stable_event_id(request_id, "model-usage"),
                    model_id=response.model_id or model_id,
                    usage=usage_shapes.from_converse(response.usage),
                    model_calls=response.model_calls,
                    **common,
                )
            )
        # NOTE: when the agent ran but its response was lost, its Memory events go unbilled.
        if response is not None and response.memory_events > 0:
            events.append(
                MemoryUsage(
                    event_id=stable_event_id(request_id, "memory-usage"),
                    events=response.memory_events,
                    **common,
                )
            )
        if reservation is not None:
            if response is None:
                # The agent's tool calls are unknown, so each may have been the costliest.
                tools = self._worst_case.costliest_tools(TIERS[scope.tier])
            else:
                tools = [call.tool for call in response.tool_calls if call.decision == "allowed"]
            self._settle_budget(reservation, events, tools)
        try:
            self._publisher.publish(events)
        except PublishError as error:
            # NOTE: the response is still returned; the unpublished ids are logged for a backfill.
            logger.error(
                "metering events not published",
                extra={"request_id": request_id, "event_ids": error.event_ids},
            )


def build_service(settings: Any) -> InvocationService:
    """Wire the service from the function's settings (tables, bus, role, runtime and endpoint)."""
    dynamodb = boto3.resource("dynamodb")
    return InvocationService(
        registry=TenantRegistry(dynamodb.Table(settings.tenants_table)),
        vending_machine=TokenVendingMachine(settings.tenant_access_role_arn),
        sessions_table=settings.sessions_table,
        runtime=AgentRuntime(settings.agent_runtime_arn, settings.agent_runtime_qualifier),
        publisher=MeteringPublisher(settings.event_bus_name),
        admission=AdmissionControl(dynamodb.Table(settings.limits_table)),
        totals_table=settings.totals_table,
        catalog=default_catalog(),
        # A plain client: the resource's own client would serialize the typed values again.
        dynamodb_client=boto3.client("dynamodb"),
    )
