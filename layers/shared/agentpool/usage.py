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

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator


class TokenUsage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0
    cache_read_tokens: NonNegativeInt = 0
    cache_write_5m_tokens: NonNegativeInt = 0
    cache_write_1h_tokens: NonNegativeInt = 0
    reasoning_tokens: NonNegativeInt = Field(default=0, description="Part of output_tokens.")

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
    details are taken as the default 5-minute TTL.
    """
    cache_write_total = _count(usage, "cacheWriteInputTokens")
    by_ttl = {"5m": 0, "1h": 0}
    details = usage.get("cacheDetails") or []
    for detail in details:
        ttl = detail.get("ttl")
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
    """
    prompt = _count(usage, "prompt_tokens")
    completion = _count(usage, "completion_tokens")
    cached = _count(usage.get("prompt_tokens_details") or {}, "cached_tokens")
    reasoning = _count(usage.get("completion_tokens_details") or {}, "reasoning_tokens")
    if cached > prompt:
        raise ValueError(f"cached_tokens {cached} exceed prompt_tokens {prompt}")
    return TokenUsage(
        input_tokens=prompt - cached,
        output_tokens=completion,
        cache_read_tokens=cached,
        reasoning_tokens=reasoning,
    )
