"""Rate limits at the edge, with the `limits` library's moving window.

Subscription tiers per client application, as in WSO2 API Manager: a client's tier is an
attribute of its identity client record (the `tier` claim of its tokens; an external
issuer's clients take that issuer's configured tier). Public paths are limited per client
address (`anonymous`). Every tier but `unlimited` also has a per-second burst window, and
a route may add its own per-minute limit. Counters live in memory (embedded) or in Redis
(distributed: every gateway process shares them).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from paymesh.kernel.auth import DEFAULT_TIER

log = structlog.get_logger("paymesh.gateway")

TIER_PER_MINUTE: dict[str, int | None] = {
    "unlimited": None,
    "gold": 5_000,
    "silver": 2_000,
    "bronze": 1_000,
}


@dataclass(frozen=True, slots=True)
class Allowance:
    """What one request's check found: the headers of RFC draft `RateLimit-*`."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_seconds).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(max(self.reset_seconds, 1)).encode()))
        return headers


def tier_limit(tier: str | None) -> int | None:
    """Requests per minute of `tier` (None: unlimited); an unknown tier is `bronze`'s."""
    if tier in TIER_PER_MINUTE:
        return TIER_PER_MINUTE[tier]
    return TIER_PER_MINUTE[DEFAULT_TIER]


def storage_for(redis_url: str | None) -> Storage:
    if not redis_url:
        return MemoryStorage()
    scheme, _, rest = redis_url.partition("://")
    uri = f"async+{scheme}://{rest}"  # redis:// or rediss://
    return RedisStorage(uri, implementation="redispy", key_prefix="paymesh:ratelimit")


class RateLimiter:
    def __init__(self, storage: Storage, *, burst_per_second: int) -> None:
        self.storage = storage
        self.window = MovingWindowRateLimiter(storage)
        self.burst = RateLimitItemPerSecond(burst_per_second)
        self._per_minute: dict[int, RateLimitItem] = {}

    def _minute(self, amount: int) -> RateLimitItem:
        item = self._per_minute.get(amount)
        if item is None:
            item = self._per_minute[amount] = RateLimitItemPerMinute(amount)
        return item

    async def check(self, key: str, per_minute: int | None) -> Allowance | None:
        """Count one request of `key` against its per-minute limit (None: unlimited, no
        counting) and the burst window; the answer says whether it may pass."""
        if per_minute is None:
            return None
        minute = self._minute(per_minute)
        if not await self.window.hit(self.burst, key):
            return Allowance(False, per_minute, 0, 1)
        allowed = await self.window.hit(minute, key)
        stats = await self.window.get_window_stats(minute, key)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Allowance(allowed, per_minute, max(0, stats.remaining), reset)

    async def check_all(
        self, checks: list[tuple[str, int | None]]
    ) -> tuple[Allowance | None, Allowance | None]:
        """Several limits for one request (its caller's tier, then its route's): the first
        refusal, or the tightest allowance to report in the headers."""
        reported: Allowance | None = None
        for key, per_minute in checks:
            allowance = await self.check(key, per_minute)
            if allowance is None:
                continue
            if not allowance.allowed:
                return allowance, allowance
            if reported is None or allowance.remaining < reported.remaining:
                reported = allowance
        return None, reported

    async def ping(self) -> bool:
        try:
            return bool(await self.storage.check())
        except Exception:
            log.warning("rate_limit_storage_unreachable")
            return False
