"""Usage normalization from the Bedrock Converse and OpenAI-compatible shapes."""

from __future__ import annotations

from typing import Any

import pytest

from agentpool.usage import MAX_TOKENS, TokenUsage, from_converse, from_openai


def test_converse_keeps_each_class_apart() -> None:
    usage = from_converse(
        {
            "inputTokens": 10,
            "outputTokens": 20,
            "cacheReadInputTokens": 30,
            "cacheWriteInputTokens": 40,
            "totalTokens": 100,
        }
    )
    assert usage.input_tokens == 10
    assert usage.output_tokens == 20
    assert usage.cache_read_tokens == 30
    assert usage.cache_write_5m_tokens == 40
    assert usage.cache_write_1h_tokens == 0
    assert usage.total_input_tokens == 80


def test_converse_splits_cache_writes_by_ttl() -> None:
    usage = from_converse(
        {
            "inputTokens": 1,
            "outputTokens": 1,
            "cacheWriteInputTokens": 300,
            "cacheDetails": [{"ttl": "5m", "inputTokens": 100}, {"ttl": "1h", "inputTokens": 200}],
        }
    )
    assert usage.cache_write_5m_tokens == 100
    assert usage.cache_write_1h_tokens == 200


def test_converse_missing_fields_count_zero() -> None:
    assert from_converse({}) == TokenUsage()


def test_openai_subtracts_cached_from_prompt() -> None:
    usage = from_openai(
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 60},
            "completion_tokens_details": {"reasoning_tokens": 30},
        }
    )
    assert usage.input_tokens == 40
    assert usage.cache_read_tokens == 60
    assert usage.output_tokens == 50
    assert usage.reasoning_tokens == 30
    assert usage.total_input_tokens == 100


def test_openai_null_details_count_zero() -> None:
    usage = from_openai(
        {
            "prompt_tokens": 5,
            "completion_tokens": 7,
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
        }
    )
    assert usage == TokenUsage(input_tokens=5, output_tokens=7)


def test_usage_sum_adds_every_class() -> None:
    first = TokenUsage(input_tokens=1, output_tokens=2, cache_read_tokens=3, reasoning_tokens=1)
    second = TokenUsage(input_tokens=10, output_tokens=20, cache_write_1h_tokens=4)
    total = first + second
    assert total.input_tokens == 11
    assert total.output_tokens == 22
    assert total.cache_read_tokens == 3
    assert total.cache_write_1h_tokens == 4
    assert total.reasoning_tokens == 1


@pytest.mark.parametrize(
    "usage",
    [
        pytest.param({"inputTokens": -1}, id="negative"),
        pytest.param({"inputTokens": "12"}, id="string"),
        pytest.param({"inputTokens": 1.5}, id="float"),
        pytest.param({"inputTokens": True}, id="bool"),
        pytest.param({"inputTokens": MAX_TOKENS + 1}, id="above-max"),
        pytest.param({"cacheWriteInputTokens": 5, "cacheDetails": [{"ttl": "1d"}]}, id="bad-ttl"),
        pytest.param(
            {"cacheWriteInputTokens": 5, "cacheDetails": [{"ttl": "5m", "inputTokens": 4}]},
            id="details-mismatch",
        ),
        pytest.param({"cacheDetails": {"ttl": "5m"}}, id="details-not-list"),
        pytest.param({"cacheDetails": ["5m"]}, id="detail-not-object"),
        pytest.param([1, 2], id="not-object"),
    ],
)
def test_converse_rejects_bad_usage(usage: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every shape error is a plain ValueError
        from_converse(usage)


@pytest.mark.parametrize(
    "usage",
    [
        pytest.param(
            {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 6}},
            id="cached-above-prompt",
        ),
        pytest.param(
            {"completion_tokens": 5, "completion_tokens_details": {"reasoning_tokens": 6}},
            id="reasoning-above-output",
        ),
        pytest.param({"prompt_tokens": -3}, id="negative"),
        pytest.param({"prompt_tokens": 3, "prompt_tokens_details": [1]}, id="details-not-object"),
        pytest.param("prompt_tokens=3", id="not-object"),
    ],
)
def test_openai_rejects_bad_usage(usage: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - every shape error is a plain ValueError
        from_openai(usage)
