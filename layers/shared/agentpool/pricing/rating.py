"""Rate metering events: turn each event into a ledger line with exact `Decimal` amounts."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from agentpool.events import (
    InvocationCompleted,
    MemoryUsage,
    MeteringEvent,
    ModelUsage,
    RequestThrottled,
    RuntimeUsage,
    ToolInvoked,
)
from agentpool.pricing.catalog import (
    MILLION,
    SECONDS_PER_HOUR,
    THOUSAND,
    PriceCatalog,
    TokenPrices,
    UnpricedError,
)
from agentpool.tiers import Tool
from agentpool.usage import TokenUsage

ZERO = Decimal(0)
# Ledger amounts are rounded half-even to 12 decimal places (a millionth of a microdollar).
# Token, Gateway, Memory and web search prices have at most 6 decimals per unit, so their
# amounts are exact at this scale. Only runtime amounts, divided by 3,600 seconds, can be rounded.
AMOUNT_QUANTUM = Decimal("1e-12")


def quantize_amount(amount: Decimal) -> Decimal:
    return amount.quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class RatedEvent:
    """One event with its quantities, unit prices and amount, ready for the ledger.

    `unpriced_reason` is set when the catalog has no price for something the event used.
    Such an event is recorded and counted, with amount 0 and `priced` False, never dropped.
    """

    event: MeteringEvent
    item: str
    amount_usd: Decimal
    catalog_version: str
    quantities: dict[str, Decimal] = field(default_factory=dict)
    unit_prices: dict[str, Decimal] = field(default_factory=dict)
    unpriced_reason: str | None = None
    # Set on a re-rating adjustment: the id of the ledger entry whose amount it corrects.
    # `amount_usd` is then the difference between the new and the previously billed amount.
    rerate_of: str | None = None

    @property
    def priced(self) -> bool:
        return self.unpriced_reason is None


def token_cost(usage: TokenUsage, prices: TokenPrices) -> tuple[Decimal, dict[str, Decimal]]:
    """Price each token class once at its own per-million rate.

    Raises UnpricedError when a class with tokens has no price, because pricing cache
    reads at the input rate (or at zero) would bill the tenant wrongly.
    """
    classes = {
        "input": (usage.input_tokens, prices.input),
        "output": (usage.output_tokens, prices.output),
        "cache_read": (usage.cache_read_tokens, prices.cache_read),
        "cache_write_5m": (usage.cache_write_5m_tokens, prices.cache_write_5m),
        "cache_write_1h": (usage.cache_write_1h_tokens, prices.cache_write_1h),
    }
    total = ZERO
    unit_prices: dict[str, Decimal] = {}
    for name, (tokens, price) in classes.items():
        if tokens == 0:
            continue
        if price is None:
            raise UnpricedError(f"no {name} price for {tokens} {name} tokens")
        unit_prices[name] = price
        total += Decimal(tokens) * price / MILLION
    return quantize_amount(total), unit_prices


def rate_event(event: MeteringEvent, catalog: PriceCatalog) -> RatedEvent:
    """Rate `event` with the prices effective at its own event time."""
    if isinstance(event, ModelUsage):
        return _rate_model_usage(event, catalog)
    if isinstance(event, ToolInvoked):
        return _rate_tool(event, catalog)
    if isinstance(event, RuntimeUsage):
        return _rate_runtime(event, catalog)
    if isinstance(event, MemoryUsage):
        return _rate_memory(event, catalog)
    if isinstance(event, InvocationCompleted):
        return RatedEvent(event, "invocation", ZERO, catalog.version)
    if isinstance(event, RequestThrottled):
        # A rejected request did no work, so it is counted and never billed.
        return RatedEvent(event, "throttle", ZERO, catalog.version)
    raise TypeError(f"no rating rule for {type(event).__name__}")


def _token_quantities(usage: TokenUsage) -> dict[str, Decimal]:
    return {name: Decimal(value) for name, value in usage.model_dump().items() if value}


def _rate_model_usage(event: ModelUsage, catalog: PriceCatalog) -> RatedEvent:
    quantities = _token_quantities(event.usage)
    try:
        price = catalog.model_price(event.model_id, event.event_time)
        amount, unit_prices = token_cost(event.usage, price.usd_per_million)
    except UnpricedError as error:
        return RatedEvent(event, event.model_id, ZERO, catalog.version, quantities, {}, str(error))
    return RatedEvent(event, event.model_id, amount, catalog.version, quantities, unit_prices)


def _rate_tool(event: ToolInvoked, catalog: PriceCatalog) -> RatedEvent:
    """Price one Gateway InvokeTool call, and for web search the one query that it runs.

    An event is unpriced when either price is missing, because billing the Gateway part alone
    would price the query at zero.
    """
    quantities = {"invocations": Decimal(1)}
    if event.decision == "denied":
        # NOTE: a call that the policy denies is charged nothing here. Whether AgentCore
        # bills a denied InvokeTool call is not stated on its pricing page.
        return RatedEvent(event, event.tool, ZERO, catalog.version, quantities)
    runs_query = event.tool == Tool.WEB_SEARCH
    if runs_query:
        # NOTE: the Gateway meters the decision before the web search function runs, so a
        # call whose InvokeWebSearch request fails is still billed one query.
        quantities["queries"] = Decimal(1)
    try:
        per_thousand = catalog.gateway_price(event.event_time).usd_per_thousand_invocations
        unit_prices = {"per_thousand": per_thousand}
        if runs_query:
            unit_prices["queries_per_thousand"] = catalog.web_search_price(
                event.event_time
            ).usd_per_thousand_queries
    except UnpricedError as error:
        return RatedEvent(event, event.tool, ZERO, catalog.version, quantities, {}, str(error))
    # One invocation, and for web search one query, each priced per thousand.
    amount = quantize_amount(sum(unit_prices.values(), ZERO) / THOUSAND)
    return RatedEvent(event, event.tool, amount, catalog.version, quantities, unit_prices)


def _rate_runtime(event: RuntimeUsage, catalog: PriceCatalog) -> RatedEvent:
    quantities = {
        "vcpu_seconds": event.vcpu_seconds,
        "memory_gb_seconds": event.memory_gb_seconds,
    }
    try:
        price = catalog.runtime_price(event.event_time)
    except UnpricedError as error:
        return RatedEvent(
            event, "agentcore.runtime", ZERO, catalog.version, quantities, {}, str(error)
        )
    amount = quantize_amount(
        (
            event.vcpu_seconds * price.usd_per_vcpu_hour
            + event.memory_gb_seconds * price.usd_per_gb_hour
        )
        / SECONDS_PER_HOUR
    )
    unit_prices = {"vcpu_hour": price.usd_per_vcpu_hour, "gb_hour": price.usd_per_gb_hour}
    return RatedEvent(event, "agentcore.runtime", amount, catalog.version, quantities, unit_prices)


def _rate_memory(event: MemoryUsage, catalog: PriceCatalog) -> RatedEvent:
    quantities = {"events": Decimal(event.events)}
    try:
        price = catalog.memory_price(event.event_time).usd_per_thousand_events
    except UnpricedError as error:
        return RatedEvent(
            event, "agentcore.memory", ZERO, catalog.version, quantities, {}, str(error)
        )
    amount = quantize_amount(Decimal(event.events) * price / THOUSAND)
    return RatedEvent(
        event, "agentcore.memory", amount, catalog.version, quantities, {"per_thousand": price}
    )
