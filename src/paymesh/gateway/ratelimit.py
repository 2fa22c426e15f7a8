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
from collections import deque
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage

from paymesh.kernel.auth import DEFAULT_TIER, RateLimitTier

log = structlog.get_logger("paymesh.gateway")

TIER_PER_MINUTE: dict[RateLimitTier, int | None] = {
    RateLimitTier.UNLIMITED: None,
    RateLimitTier.GOLD: 5_000,
    RateLimitTier.SILVER: 2_000,
    RateLimitTier.BRONZE: 1_000,
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


_BY_NAME: dict[str | None, int | None] = {str(tier): n for tier, n in TIER_PER_MINUTE.items()}


def tier_name(tier: str | None) -> str:
    """The tier a caller is limited as: its own when known, else `bronze` (as `tier_limit`
    treats it), so a metric's `tier` label takes a handful of values whatever a token says."""
    return tier if tier in _BY_NAME and tier is not None else str(DEFAULT_TIER)


def tier_limit(tier: str | None) -> int | None:
    """Requests per minute of `tier` (None: unlimited); an unknown tier is `bronze`'s."""
    return _BY_NAME.get(tier, TIER_PER_MINUTE[DEFAULT_TIER])


def storage_for(redis_url: str | None) -> Storage:
    if not redis_url:
        return MemoryStorage()
    scheme, _, rest = redis_url.partition("://")
    uri = f"async+{scheme}://{rest}"  # redis:// or rediss://
    return RedisStorage(uri, implementation="redispy", key_prefix="paymesh:ratelimit")


Window = tuple[str, int, int]
"""A moving window to count one request in: its storage key, limit and length (s)."""
Outcome = tuple[int, int, float]
"""What one request's count found: BURST_REFUSED, ALLOWED or REFUSED (by the minute
window), then the minute window's count after it and the time of its oldest entry."""
BURST_REFUSED, ALLOWED, REFUSED = 0, 1, 2


class MemoryWindows:
    """The moving window of `limits` kept in this process, one call per request: a deque
    of timestamps per key, oldest first, trimmed from the left as entries age out (O(1)
    per request, where `limits`' MemoryStorage inserts at the front of a list and hands
    an expiry walk to a thread on every hit). Keys idle past their window are swept once
    a minute."""

    SWEEP_SECONDS = 60.0

    def __init__(self) -> None:
        self.events: dict[str, tuple[int, deque[float]]] = {}
        self._next_sweep = 0.0

    async def acquire(self, burst: Window, minute: Window, now: float) -> Outcome:
        if now >= self._next_sweep:
            self._sweep(now)
        if not self._take(burst, now):
            return BURST_REFUSED, 0, now
        allowed = self._take(minute, now)
        events = self.events[minute[0]][1]
        return (ALLOWED if allowed else REFUSED), len(events), events[0] if events else now

    def _take(self, window: Window, now: float) -> bool:
        key, limit, expiry = window
        found = self.events.get(key)
        if found is None:
            found = self.events[key] = (expiry, deque())
        events = found[1]
        cutoff = now - expiry
        while events and events[0] <= cutoff:
            events.popleft()
        if len(events) >= limit:
            return False
        events.append(now)
        return True

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_SECONDS
        for key, (expiry, events) in list(self.events.items()):
            if not events or events[-1] <= now - expiry:
                del self.events[key]


# The same lists as limits' moving window on Redis (newest first, trimmed to the limit,
# expiring with the window), both windows and the minute window's stats in one round trip.
_ACQUIRE_WINDOWS = """
local now = tonumber(ARGV[1])
local function take(key, limit, expiry)
    local entry = redis.call('lindex', key, limit - 1)
    if entry and tonumber(entry) > now - expiry then
        return false
    end
    redis.call('lpush', key, ARGV[1])
    redis.call('ltrim', key, 0, limit - 1)
    redis.call('expire', key, expiry)
    return true
end
if not take(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3])) then
    return {0, 0, ARGV[1]}
end
local limit, expiry = tonumber(ARGV[4]), tonumber(ARGV[5])
local allowed = take(KEYS[2], limit, expiry)
local low, high, found = 0, redis.call('llen', KEYS[2]) - 1, -1
while low <= high do
    local middle = math.floor((low + high) / 2)
    if tonumber(redis.call('lindex', KEYS[2], middle)) > now - expiry then
        found, low = middle, middle + 1
    else
        high = middle - 1
    end
end
local oldest = ARGV[1]
if found >= 0 then
    oldest = redis.call('lindex', KEYS[2], found)
end
return {allowed and 1 or 2, found + 1, oldest}
"""


class RedisWindows:
    """Both windows in Redis, shared by every gateway process: one script per request,
    on the connection and under the key prefix of `limits`' RedisStorage."""

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage
        bridge: Any = storage.bridge
        self._prefixed = bridge.prefixed_key
        self._script = bridge.get_connection().register_script(_ACQUIRE_WINDOWS)

    async def acquire(self, burst: Window, minute: Window, now: float) -> Outcome:
        found = await self._script(
            keys=[self._prefixed(burst[0]), self._prefixed(minute[0])],
            args=[repr(now), burst[1], burst[2], minute[1], minute[2]],
        )
        return int(found[0]), int(found[1]), float(found[2])


class RateLimiter:
    def __init__(self, storage: Storage, *, burst_per_second: int) -> None:
        self.storage = storage
        self.windows: MemoryWindows | RedisWindows = (
            RedisWindows(storage) if isinstance(storage, RedisStorage) else MemoryWindows()
        )
        self.burst = RateLimitItemPerSecond(burst_per_second)
        self._per_minute: dict[int, RateLimitItem] = {}

    def _minute(self, amount: int) -> RateLimitItem:
        item = self._per_minute.get(amount)
        if item is None:
            item = self._per_minute[amount] = RateLimitItemPerMinute(amount)
        return item

    async def check(self, key: str, per_minute: int | None) -> Allowance | None:
        """Count one request of `key` against its per-minute limit (None: unlimited, no
        counting) and the burst window: one storage call; the answer says whether it may
        pass and what the RateLimit-* headers say."""
        if per_minute is None:
            return None
        minute, burst = self._minute(per_minute), self.burst
        now = time.time()
        outcome, count, oldest = await self.windows.acquire(
            (burst.key_for(key), burst.amount, burst.get_expiry()),
            (minute.key_for(key), per_minute, minute.get_expiry()),
            now,
        )
        if outcome == BURST_REFUSED:
            return Allowance(False, per_minute, 0, 1)
        reset = max(0, math.ceil(oldest + minute.get_expiry() - now))
        return Allowance(outcome == ALLOWED, per_minute, max(0, per_minute - count), reset)

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
