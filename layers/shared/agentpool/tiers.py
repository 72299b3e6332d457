"""Tier configuration: the one place that defines each tier's model, tools, limits and budget.

Every other module, the local stack, the docs and the tests read these values from here.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Tool(StrEnum):
    """Tools that the agent can call through the AgentCore Gateway."""

    DOCUMENT_SEARCH = "document_search"
    WEB_SEARCH = "web_search"


class TierConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    model_id: str
    tools: tuple[Tool, ...]
    requests_per_second: int = Field(gt=0)
    burst: int = Field(gt=0)
    requests_per_day: int = Field(gt=0)
    monthly_budget_usd: Decimal = Field(gt=0)


TIERS: dict[str, TierConfig] = {
    tier.name: tier
    for tier in (
        TierConfig(
            name="basic",
            model_id="mistral.ministral-3-8b-instruct",
            tools=(Tool.DOCUMENT_SEARCH,),
            requests_per_second=2,
            burst=5,
            requests_per_day=50,
            monthly_budget_usd=Decimal("25.00"),
        ),
        TierConfig(
            name="premium",
            model_id="openai.gpt-oss-120b-1:0",
            tools=(Tool.DOCUMENT_SEARCH, Tool.WEB_SEARCH),
            requests_per_second=10,
            burst=20,
            requests_per_day=500,
            monthly_budget_usd=Decimal("500.00"),
        ),
    )
}


def get_tier(name: str) -> TierConfig:
    """Return the tier named `name`, raising KeyError for an unknown tier."""
    return TIERS[name]
