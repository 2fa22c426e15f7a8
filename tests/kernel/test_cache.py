"""The cache behaves the same in memory and on the real Redis server."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from paymesh.kernel.cache import Cache, MemoryCache, RedisCache

REDIS_URL = os.environ.get("PAYMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    redis_cache = RedisCache(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:")
    if not await redis_cache.ping():
        await redis_cache.close()
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is required in CI")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    yield redis_cache
    await redis_cache.close()


class TestCache:
    async def test_set_then_get_returns_the_value(self, cache: Cache) -> None:
        await cache.set("k", {"amount": 100, "currency": "USD"}, ttl_seconds=10)
        assert await cache.get("k") == {"amount": 100, "currency": "USD"}

    async def test_missing_key_is_none(self, cache: Cache) -> None:
        assert await cache.get("absent") is None

    async def test_value_expires(self, cache: Cache) -> None:
        await cache.set("short", 1, ttl_seconds=0.05)
        await asyncio.sleep(0.15)
        assert await cache.get("short") is None

    async def test_add_sets_only_when_absent(self, cache: Cache) -> None:
        assert await cache.add("lock", "first", ttl_seconds=10) is True
        assert await cache.add("lock", "second", ttl_seconds=10) is False
        assert await cache.get("lock") == "first"

    async def test_delete_removes(self, cache: Cache) -> None:
        await cache.set("gone", 1, ttl_seconds=10)
        await cache.delete("gone")
        assert await cache.get("gone") is None


class TestMemoryCacheBound:
    async def test_oldest_entries_are_evicted_at_the_bound(self) -> None:
        cache = MemoryCache(max_entries=3)
        for index in range(4):
            await cache.set(f"k{index}", index, ttl_seconds=60)
        assert await cache.get("k0") is None
        assert await cache.get("k3") == 3


class TestUnreachableRedis:
    async def test_ping_is_false_when_redis_is_down(self) -> None:
        cache = RedisCache("redis://127.0.0.1:1/0")
        try:
            assert await cache.ping() is False
        finally:
            await cache.close()
