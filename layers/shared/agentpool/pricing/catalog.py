"""The price catalog: effective-dated USD prices, validated when loaded.

Entries for one item are effective from their `effective_from` (inclusive, UTC) until the next
entry's. A price is chosen by the event's own time, never by the time it is processed.
Every price is a `Decimal` parsed from a string, so no float ever enters a stored amount.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    field_validator,
)

DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.json")
MILLION = Decimal(1_000_000)
THOUSAND = Decimal(1_000)
SECONDS_PER_HOUR = Decimal(3_600)


class UnpricedError(LookupError):
    """No price covers this item at this time. The event is recorded as unpriced, not as $0."""


def _decimal_from_string(value: Any) -> Decimal:
    # Prices must be written as strings: a JSON number would pass through float first.
    if not isinstance(value, str):
        raise ValueError(f'price {value!r} must be a string such as "0.15", not a number')
    try:
        return Decimal(value)
    except InvalidOperation:
        # pydantic reports only ValueError and AssertionError as validation errors.
        raise ValueError(f"price {value!r} is not a decimal number") from None


Price = Annotated[Decimal, BeforeValidator(_decimal_from_string), Field(ge=0)]


class _Dated(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_from: AwareDatetime
    source: StrictStr = Field(min_length=1)
    source_date: StrictStr = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")

    @field_validator("effective_from")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class TokenPrices(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Price
    output: Price
    cache_read: Price | None = None
    cache_write_5m: Price | None = None
    cache_write_1h: Price | None = None


class ModelPrice(_Dated):
    usd_per_million: TokenPrices


class RuntimePrice(_Dated):
    usd_per_vcpu_hour: Price
    usd_per_gb_hour: Price


class GatewayPrice(_Dated):
    usd_per_thousand_invocations: Price


class MemoryPrice(_Dated):
    usd_per_thousand_events: Price


class WebSearchPrice(_Dated):
    usd_per_thousand_queries: Price


DatedT = TypeVar("DatedT", bound=_Dated)


class _Timeline(Generic[DatedT]):
    """Entries of one item sorted by `effective_from`."""

    def __init__(self, name: str, entries: list[DatedT]) -> None:
        if not entries:
            raise ValueError(f"{name} has no price entries")
        starts = [entry.effective_from for entry in entries]
        if len(set(starts)) != len(starts):
            raise ValueError(f"{name} has two entries with the same effective_from")
        self.name = name
        self.entries = sorted(entries, key=lambda entry: entry.effective_from)

    def at(self, when: datetime) -> DatedT:
        when = when.astimezone(UTC)
        chosen = None
        for entry in self.entries:
            if entry.effective_from <= when:
                chosen = entry
        if chosen is None:
            raise UnpricedError(f"{self.name} has no price effective at {when.isoformat()}")
        return chosen


class _CatalogFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    catalog_version: StrictStr = Field(min_length=1)
    currency: StrictStr = Field(pattern="^USD$")
    models: dict[str, list[ModelPrice]]
    runtime: list[RuntimePrice]
    gateway: list[GatewayPrice]
    memory: list[MemoryPrice]
    web_search: list[WebSearchPrice]


class PriceCatalog:
    """Effective-dated prices for models, AgentCore Runtime, Gateway, Memory and Web Search."""

    def __init__(self, data: dict[str, Any]) -> None:
        parsed = _CatalogFile.model_validate(data)
        self.version = parsed.catalog_version
        self._models = {
            model_id: _Timeline(model_id, entries) for model_id, entries in parsed.models.items()
        }
        self._runtime = _Timeline("agentcore.runtime", parsed.runtime)
        self._gateway = _Timeline("agentcore.gateway", parsed.gateway)
        self._memory = _Timeline("agentcore.memory", parsed.memory)
        self._web_search = _Timeline("agentcore.web_search", parsed.web_search)

    @classmethod
    def from_file(cls, path: Path = DEFAULT_CATALOG_PATH) -> PriceCatalog:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def model_price(self, model_id: str, when: datetime) -> ModelPrice:
        timeline = self._models.get(model_id)
        if timeline is None:
            raise UnpricedError(f"model {model_id} is not in price catalog {self.version}")
        return timeline.at(when)

    def runtime_price(self, when: datetime) -> RuntimePrice:
        return self._runtime.at(when)

    def gateway_price(self, when: datetime) -> GatewayPrice:
        return self._gateway.at(when)

    def memory_price(self, when: datetime) -> MemoryPrice:
        return self._memory.at(when)

    def web_search_price(self, when: datetime) -> WebSearchPrice:
        return self._web_search.at(when)

    @property
    def model_ids(self) -> list[str]:
        return sorted(self._models)


@lru_cache(maxsize=1)
def default_catalog() -> PriceCatalog:
    """Load the catalog shipped with the package once per process."""
    return PriceCatalog.from_file()
