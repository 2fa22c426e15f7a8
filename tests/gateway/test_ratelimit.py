"""The gateway's rate limiter: one storage call per request (burst window, minute window and
the minute window's stats together), the moving window's semantics in memory and in
Redis, and the one list of tier names."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pydantic
import pytest
import redis.asyncio
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from paymesh.gateway import ratelimit
from paymesh.gateway.ratelimit import (
    ALLOWED,
    BURST_REFUSED,
    REFUSED,
    TIER_PER_MINUTE,
    MemoryWindows,
    RateLimiter,
    storage_for,
    tier_limit,
)
from paymesh.identity.schemas import RateLimitTier as IdentityTier
from paymesh.kernel.auth import DEFAULT_TIER, RateLimitTier
from paymesh.kernel.config import TrustedIssuerSettings
from tests.conftest import IN_CI

# Not test_distributed.py's database 9: that module flushes its own, and may run alongside.
REDIS_URL = os.environ.get("PAYMESH_TEST_RATELIMIT_REDIS_URL", "redis://127.0.0.1:6379/8")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit.time, "time", fake)
    return fake


@pytest.fixture
async def redis_limiter() -> AsyncIterator[RateLimiter]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except redis.RedisError as error:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is needed: {error}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    finally:
        await client.aclose()
    yield RateLimiter(storage_for(REDIS_URL), burst_per_second=2)


def counting(limiter: RateLimiter) -> list[int]:
    """Wraps the limiter's storage call; the list grows by one per call."""
    calls: list[int] = []
    acquire = limiter.windows.acquire

    async def counted(*arguments: object) -> object:
        calls.append(1)
        return await acquire(*arguments)  # type: ignore[arg-type]

    limiter.windows.acquire = counted  # type: ignore[method-assign,assignment]
    return calls


async def exercise(limiter: RateLimiter, clock: Clock | None, key: str) -> None:
    """3 a minute, 2 a second: the shared script for the memory and the Redis shapes."""
    calls = counting(limiter)
    first = await limiter.check(key, 3)
    second = await limiter.check(key, 3)
    burst = await limiter.check(key, 3)  # the same second: the burst window refuses
    assert first is not None and second is not None and burst is not None
    assert (first.allowed, first.remaining, first.limit) == (True, 2, 3)
    assert (second.allowed, second.remaining) == (True, 1)
    assert (burst.allowed, burst.reset_seconds) == (False, 1)
    assert 59 <= first.reset_seconds <= 60
    assert calls == [1, 1, 1]  # one storage call per request

    if clock is None:
        return
    clock.now += 1.5  # past the burst window
    third = await limiter.check(key, 3)
    refused = await limiter.check(key, 3)
    assert third is not None and refused is not None
    assert (third.allowed, third.remaining) == (True, 0)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.reset_seconds == 59  # the first entry leaves the window then
    clock.now += 59.0
    again = await limiter.check(key, 3)
    assert again is not None and again.allowed


class TestMemory:
    async def test_burst_then_minute_window_with_headers(self, clock: Clock) -> None:
        await exercise(RateLimiter(MemoryStorage(), burst_per_second=2), clock, "client:a")

    async def test_unlimited_is_not_counted(self) -> None:
        limiter = RateLimiter(MemoryStorage(), burst_per_second=2)
        calls = counting(limiter)

        assert await limiter.check("client:a", None) is None
        assert calls == []

    async def test_refused_requests_take_no_room_in_the_window(self) -> None:
        windows = MemoryWindows()
        burst, minute = ("b", 100, 1), ("m", 2, 60)

        outcomes = [(await windows.acquire(burst, minute, 10.0 + i))[0] for i in range(4)]

        assert outcomes == [ALLOWED, ALLOWED, REFUSED, REFUSED]
        assert len(windows.events["m"][1]) == 2
        assert (await windows.acquire(("b", 1, 1), minute, 13.5))[0] == BURST_REFUSED

    async def test_idle_keys_are_swept(self) -> None:
        windows = MemoryWindows()
        await windows.acquire(("b", 5, 1), ("m", 5, 60), 100.0)
        assert set(windows.events) == {"b", "m"}

        await windows.acquire(("b2", 5, 1), ("m2", 5, 60), 100.0 + windows.SWEEP_SECONDS + 1)

        assert set(windows.events) == {"b2", "m2"}


class TestRedis:
    async def test_burst_then_minute_window_with_headers(self, redis_limiter: RateLimiter) -> None:
        await exercise(redis_limiter, None, f"client:{secrets.token_hex(4)}")

    async def test_the_lists_are_those_of_limits_moving_window(
        self, redis_limiter: RateLimiter
    ) -> None:
        key = f"client:{secrets.token_hex(4)}"
        await redis_limiter.check(key, 3)

        assert isinstance(redis_limiter.storage, RedisStorage)
        stats = await MovingWindowRateLimiter(redis_limiter.storage).get_window_stats(
            RateLimitItemPerMinute(3), key
        )
        assert stats.remaining == 2


class TestTiers:
    def test_one_definition_of_the_tier_names(self) -> None:
        assert IdentityTier is RateLimitTier
        assert set(TIER_PER_MINUTE) == set(RateLimitTier)
        assert DEFAULT_TIER in RateLimitTier

    def test_tier_limits(self) -> None:
        assert tier_limit("gold") == 5_000
        assert tier_limit("unlimited") is None
        assert tier_limit("platinum") == TIER_PER_MINUTE[DEFAULT_TIER]
        assert tier_limit(None) == TIER_PER_MINUTE[DEFAULT_TIER]

    def test_a_trusted_issuer_takes_only_a_known_tier(self) -> None:
        issuer = TrustedIssuerSettings(issuer="https://idp.example", tier="gold")  # type: ignore[arg-type]
        assert issuer.tier is RateLimitTier.GOLD
        assert TrustedIssuerSettings(issuer="https://idp.example").tier is DEFAULT_TIER

        with pytest.raises(pydantic.ValidationError):
            TrustedIssuerSettings(issuer="https://idp.example", tier="platinum")  # type: ignore[arg-type]


def test_the_refusals_metric_names_only_known_tiers() -> None:
    """A token's `tier` claim is free text: the 429 counter's label is the tier it is
    limited as, so no token can add label values."""
    from paymesh.gateway.ratelimit import tier_name

    assert tier_name("gold") == "gold"
    assert tier_name("bronze") == "bronze"
    assert tier_name("x" * 500) == "bronze"
    assert tier_name("\x00") == "bronze"
    assert tier_name(None) == "bronze"
