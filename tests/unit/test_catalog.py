"""Price catalog validation and effective-dated price selection."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from agentpool.pricing.catalog import (
    DEFAULT_CATALOG_PATH,
    PriceCatalog,
    UnpricedError,
    default_catalog,
)
from agentpool.tiers import TIERS

MODEL = "test.model"
JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)


def dated(effective_from: str, **prices: Any) -> dict[str, Any]:
    return {
        "effective_from": effective_from,
        "source": "test price",
        "source_date": "2026-01-01",
        **prices,
    }


def catalog_data() -> dict[str, Any]:
    return {
        "catalog_version": "test",
        "currency": "USD",
        "models": {
            MODEL: [
                dated("2026-01-01T00:00:00Z", usd_per_million={"input": "3.00", "output": "15"}),
                dated("2026-02-01T00:00:00Z", usd_per_million={"input": "2.00", "output": "15"}),
            ]
        },
        "runtime": [
            dated("2026-01-01T00:00:00Z", usd_per_vcpu_hour="0.0895", usd_per_gb_hour="0.00945")
        ],
        "gateway": [dated("2026-01-01T00:00:00Z", usd_per_thousand_invocations="0.005")],
        "memory": [dated("2026-01-01T00:00:00Z", usd_per_thousand_events="0.25")],
        "web_search": [dated("2026-11-10T00:00:00Z", usd_per_thousand_queries="7.00")],
    }


def test_shipped_catalog_loads() -> None:
    catalog = default_catalog()
    assert catalog.version
    assert catalog.model_ids


def test_shipped_catalog_prices_every_tier_model() -> None:
    catalog = default_catalog()
    for tier in TIERS.values():
        assert tier.model_id in catalog.model_ids


def test_shipped_catalog_prices_are_strings() -> None:
    raw = DEFAULT_CATALOG_PATH.read_text(encoding="utf-8")
    # Reading numbers as floats here would hide a price written as a JSON number.
    data = json.loads(raw, parse_float=lambda text: pytest.fail(f"float price {text}"))
    assert data["currency"] == "USD"


def test_shipped_catalog_web_search_price() -> None:
    price = default_catalog().web_search_price(datetime(2026, 11, 10, tzinfo=UTC))
    assert price.usd_per_thousand_queries == Decimal("7.00")
    assert price.source_date == "2026-11-10"


def test_web_search_before_price_unpriced() -> None:
    catalog = PriceCatalog(catalog_data())
    with pytest.raises(UnpricedError, match=r"agentcore\.web_search has no price effective"):
        catalog.web_search_price(datetime(2026, 11, 9, 23, 59, 59, tzinfo=UTC))


def test_catalog_requires_web_search_prices() -> None:
    data = catalog_data()
    del data["web_search"]
    with pytest.raises(ValidationError, match="web_search"):
        PriceCatalog(data)


def test_selection_start_is_inclusive() -> None:
    catalog = PriceCatalog(catalog_data())
    assert catalog.model_price(MODEL, FEB).usd_per_million.input == Decimal("2.00")


def test_selection_before_start_uses_previous() -> None:
    catalog = PriceCatalog(catalog_data())
    before = FEB - timedelta(microseconds=1)
    assert catalog.model_price(MODEL, before).usd_per_million.input == Decimal("3.00")


def test_selection_converts_offset_to_utc() -> None:
    catalog = PriceCatalog(catalog_data())
    # 01:00 on 1 February at UTC+02:00 is 23:00 on 31 January in UTC.
    when = datetime(2026, 2, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert catalog.model_price(MODEL, when).usd_per_million.input == Decimal("3.00")


def test_selection_before_first_entry_is_unpriced() -> None:
    catalog = PriceCatalog(catalog_data())
    with pytest.raises(UnpricedError, match="no price effective"):
        catalog.model_price(MODEL, JAN - timedelta(seconds=1))


def test_unknown_model_is_unpriced() -> None:
    catalog = PriceCatalog(catalog_data())
    with pytest.raises(UnpricedError, match="not in price catalog"):
        catalog.model_price("unknown.model", FEB)


def test_entries_sorted_by_effective_from() -> None:
    data = catalog_data()
    data["models"][MODEL].reverse()
    catalog = PriceCatalog(data)
    assert catalog.model_price(MODEL, FEB).usd_per_million.input == Decimal("2.00")
    assert catalog.model_price(MODEL, JAN).usd_per_million.input == Decimal("3.00")


def test_prices_are_decimal() -> None:
    price = PriceCatalog(catalog_data()).runtime_price(JAN)
    assert type(price.usd_per_vcpu_hour) is Decimal
    assert price.usd_per_vcpu_hour == Decimal("0.0895")


def test_catalog_rejects_float_price() -> None:
    data = catalog_data()
    data["models"][MODEL][0]["usd_per_million"]["input"] = 3.0
    with pytest.raises(ValidationError, match="must be a string"):
        PriceCatalog(data)


def test_catalog_rejects_integer_price() -> None:
    data = catalog_data()
    data["gateway"][0]["usd_per_thousand_invocations"] = 5
    with pytest.raises(ValidationError, match="must be a string"):
        PriceCatalog(data)


@pytest.mark.parametrize("price", ["abc", "", "NaN", "Infinity", "-0.01"])
def test_catalog_rejects_invalid_price(price: str) -> None:
    data = catalog_data()
    data["gateway"][0]["usd_per_thousand_invocations"] = price
    with pytest.raises(ValidationError):
        PriceCatalog(data)


def test_catalog_rejects_missing_source() -> None:
    data = catalog_data()
    del data["runtime"][0]["source"]
    with pytest.raises(ValidationError, match="source"):
        PriceCatalog(data)


def test_catalog_rejects_empty_source() -> None:
    data = catalog_data()
    data["runtime"][0]["source"] = ""
    with pytest.raises(ValidationError, match="source"):
        PriceCatalog(data)


def test_catalog_rejects_bad_source_date() -> None:
    data = catalog_data()
    data["runtime"][0]["source_date"] = "1 Jan 2026"
    with pytest.raises(ValidationError, match="source_date"):
        PriceCatalog(data)


def test_catalog_rejects_duplicate_effective_from() -> None:
    data = catalog_data()
    entries = data["models"][MODEL]
    entries.append(copy.deepcopy(entries[0]))
    with pytest.raises(ValueError, match="same effective_from"):
        PriceCatalog(data)


def test_catalog_rejects_naive_effective_from() -> None:
    data = catalog_data()
    data["memory"][0]["effective_from"] = "2026-01-01T00:00:00"
    with pytest.raises(ValidationError, match="effective_from"):
        PriceCatalog(data)


def test_catalog_rejects_empty_timeline() -> None:
    data = catalog_data()
    data["memory"] = []
    with pytest.raises(ValueError, match="no price entries"):
        PriceCatalog(data)


def test_catalog_rejects_other_currency() -> None:
    data = catalog_data()
    data["currency"] = "EUR"
    with pytest.raises(ValidationError, match="currency"):
        PriceCatalog(data)


def test_catalog_rejects_unknown_field() -> None:
    data = catalog_data()
    data["models"][MODEL][0]["usd_per_million"]["cache_reads"] = "0.3"
    with pytest.raises(ValidationError, match="cache_reads"):
        PriceCatalog(data)
