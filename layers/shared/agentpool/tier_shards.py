"""Shards of the per-tier totals: which item of a tier's totals an event adds to.

Every event of a tier would otherwise add to one item per period and hit DynamoDB's
per-partition write rate, so each tier's totals are spread over `TIER_SHARDS` partitions by a
hash of the event id. The billing periods module also marks issued months on these items.
"""

from __future__ import annotations

import hashlib

TIER_SHARDS = 8


def tier_partition(tier: str, shard: int) -> str:
    """Partition key of one shard of a tier's totals. Tenant ids never contain '#'."""
    return f"tier#{tier}#{shard}"


def tier_shard_of(event_id: str) -> int:
    digest = hashlib.sha256(event_id.encode()).digest()
    return digest[0] % TIER_SHARDS
