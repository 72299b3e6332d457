"""Token Vending Machine: tenant-scoped AWS credentials through STS AssumeRole with session tags.

The tenant-access role's policies scope every data action to `${aws:PrincipalTag/TenantId}`
(and `UserId` where data is per user), so a bug in the calling code cannot reach another
tenant's data with these credentials.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config

SESSION_DURATION_SECONDS = 900
# Cached credentials are replaced this long before they expire, so that a request that starts
# with them can finish before they do.
REFRESH_MARGIN = timedelta(seconds=120)
MAX_CACHED_SESSIONS = 512

# Session tags that the tenant-access role's policies and trust policy depend on.
SESSION_TAG_KEYS = ("TenantId", "Tier", "UserId")


@dataclass(frozen=True)
class TenantScope:
    tenant_id: str
    tier: str
    user_id: str


@dataclass
class _CachedSession:
    session: boto3.session.Session
    expires_at: datetime


class TokenVendingMachine:
    """Vend boto3 sessions whose credentials carry the TenantId, Tier and UserId session tags.

    Sessions are cached per (tenant, tier, user) until `REFRESH_MARGIN` before they expire.
    The cache key includes the user, so two users of one tenant never share credentials.
    """

    def __init__(
        self,
        role_arn: str,
        sts_client: Any | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        region_name: str | None = None,
    ) -> None:
        self._role_arn = role_arn
        self._sts = sts_client or boto3.client("sts", config=Config(retries={"mode": "standard"}))
        self._clock = clock
        self._region_name = region_name
        self._cache: dict[TenantScope, _CachedSession] = {}
        self._lock = threading.Lock()
        self.assume_role_calls = 0

    def session_for(self, scope: TenantScope) -> boto3.session.Session:
        """Return a boto3 session with credentials tagged for `scope`."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(scope)
            if cached and cached.expires_at - REFRESH_MARGIN > now:
                return cached.session
        session, expires_at = self._assume(scope)
        with self._lock:
            if len(self._cache) >= MAX_CACHED_SESSIONS:
                self._evict_expired(now)
            self._cache[scope] = _CachedSession(session, expires_at)
        return session

    def _assume(self, scope: TenantScope) -> tuple[boto3.session.Session, datetime]:
        tags = {"TenantId": scope.tenant_id, "Tier": scope.tier, "UserId": scope.user_id}
        response = self._sts.assume_role(
            RoleArn=self._role_arn,
            # The session name shows in CloudTrail. User ids are Cognito subs (UUIDs), which
            # fit the 64-character limit together with the prefix.
            RoleSessionName=f"tenant-{scope.user_id}"[:64],
            DurationSeconds=SESSION_DURATION_SECONDS,
            Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
            TransitiveTagKeys=list(SESSION_TAG_KEYS),
        )
        self.assume_role_calls += 1
        credentials = response["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=self._region_name,
        )
        expiration = credentials["Expiration"]
        if isinstance(expiration, str):
            expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        return session, expiration.astimezone(UTC)

    def _evict_expired(self, now: datetime) -> None:
        expired = [key for key, value in self._cache.items() if value.expires_at <= now]
        for key in expired:
            del self._cache[key]
        if len(self._cache) >= MAX_CACHED_SESSIONS:
            # Every entry is still valid: drop the one that expires first.
            oldest = min(self._cache, key=lambda key: self._cache[key].expires_at)
            del self._cache[oldest]
