"""Token usage normalized into disjoint token classes, from every usage shape the product accepts.

Each token is counted in exactly one class, so pricing can charge each class at its own rate
without counting cached or reasoning tokens twice:

- `input_tokens`: input read at the full input rate (no cache involved).
- `cache_read_tokens`: input read from the prompt cache.
- `cache_write_5m_tokens`, `cache_write_1h_tokens`: input written to the prompt cache, by TTL.
- `output_tokens`: generated tokens, reasoning included.
- `reasoning_tokens`: the part of `output_tokens` spent on reasoning; informational, never priced.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Upper bound of one token class in one usage record. Real model calls are many orders of
# magnitude below it. The bound keeps every amount and total well inside the 38 significant
# digits that a DynamoDB number can hold, so a corrupt count is rejected at validation instead
# of failing the ledger write of a whole batch.
MAX_TOKENS = 10**12
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]


class TokenUsage(BaseModel):
    """Token counts of one or more model calls, each token in exactly one class."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_read_tokens: TokenCount = 0
    cache_write_5m_tokens: TokenCount = 0
    cache_write_1h_tokens: TokenCount = 0
    reasoning_tokens: TokenCount = Field(default=0, description="Part of output_tokens.")

    @model_validator(mode="after")
    def _reasoning_within_output(self) -> TokenUsage:
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens cannot exceed output_tokens, which include them")
        return self

    @property
    def total_input_tokens(self) -> int:
        return (
            self.input_tokens
            + self.cache_read_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
        )

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            **{name: getattr(self, name) + getattr(other, name) for name in TokenUsage.model_fields}
        )


def _require_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage field {key} must be a non-negative integer, got {value!r}")
    return value


def from_converse(usage: dict[str, Any]) -> TokenUsage:
    """Normalize a Bedrock Converse `usage` object.

    The same object arrives in ConverseStream's final `metadata` event. Converse reports
    `inputTokens` without cache reads and writes, which come in their own fields. When
    `cacheDetails` splits the writes by TTL, each TTL gets its own class; writes without
    details are taken as the default 5-minute TTL. Raises ValueError on any other shape.
    """
    usage = _require_object(usage, "Converse usage")
    cache_write_total = _count(usage, "cacheWriteInputTokens")
    by_ttl = {"5m": 0, "1h": 0}
    details = usage.get("cacheDetails") or []
    if not isinstance(details, list):
        raise ValueError(f"cacheDetails must be a list, got {type(details).__name__}")
    for detail in details:
        ttl = _require_object(detail, "cacheDetails entry").get("ttl")
        if ttl not in by_ttl:
            raise ValueError(f"unknown cache TTL {ttl!r} in cacheDetails")
        by_ttl[ttl] += _count(detail, "inputTokens")
    if details and sum(by_ttl.values()) != cache_write_total:
        raise ValueError(
            f"cacheDetails add up to {sum(by_ttl.values())} tokens, "
            f"but cacheWriteInputTokens is {cache_write_total}"
        )
    if not details:
        by_ttl["5m"] = cache_write_total
    return TokenUsage(
        input_tokens=_count(usage, "inputTokens"),
        output_tokens=_count(usage, "outputTokens"),
        cache_read_tokens=_count(usage, "cacheReadInputTokens"),
        cache_write_5m_tokens=by_ttl["5m"],
        cache_write_1h_tokens=by_ttl["1h"],
    )


def from_openai(usage: dict[str, Any]) -> TokenUsage:
    """Normalize the OpenAI-compatible `usage` object (chat completions).

    `prompt_tokens` already includes `prompt_tokens_details.cached_tokens`, and
    `completion_tokens` already includes `completion_tokens_details.reasoning_tokens`, so the
    cached part is subtracted from input and reasoning is kept only as information.
    Raises ValueError on any other shape.
    """
    usage = _require_object(usage, "OpenAI usage")
    prompt = _count(usage, "prompt_tokens")
    completion = _count(usage, "completion_tokens")
    prompt_details = _require_object(
        usage.get("prompt_tokens_details") or {}, "prompt_tokens_details"
    )
    completion_details = _require_object(
        usage.get("completion_tokens_details") or {}, "completion_tokens_details"
    )
    cached = _count(prompt_details, "cached_tokens")
    reasoning = _count(completion_details, "reasoning_tokens")
    if cached > prompt:
        raise ValueError(f"cached_tokens {cached} exceed prompt_tokens {prompt}")
    return TokenUsage(
        input_tokens=prompt - cached,
        output_tokens=completion,
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
    )
