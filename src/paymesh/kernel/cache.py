"""A small key-value cache with expiry: in memory (embedded) or Redis (distributed).

`PAYMESH_REDIS_URL` selects Redis; otherwise each process keeps its own memory cache.
Values are JSON documents. Used for data that is cheap to recompute and safe to lose;
anything that must survive lives in the database.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from paymesh.kernel.jsonutil import dumps, loads


class Cache(Protocol):
    async def get(self, key: str) -> Any | None: ...

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def add(self, key: str, value: Any, ttl_seconds: float) -> bool:
        """Set only if absent; True when this call set it (a lock or first-seen marker)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, bytes]] = {}

    def _live(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        return value

    async def get(self, key: str) -> Any | None:
        value = self._live(key)
        return None if value is None else loads(value)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        if len(self._entries) >= self.max_entries:
            self._evict()
        self._entries[key] = (time.monotonic() + ttl_seconds, dumps(value))

    async def add(self, key: str, value: Any, ttl_seconds: float) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl_seconds)
        return True

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._entries.clear()

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [key for key, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # oldest inserted first


class RedisCache:
    def __init__(self, url: str, prefix: str = "paymesh:") -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url)
        self.prefix = prefix

    async def get(self, key: str) -> Any | None:
        value = await self._redis.get(self.prefix + key)
        return None if value is None else loads(value)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        await self._redis.set(self.prefix + key, dumps(value), px=max(1, int(ttl_seconds * 1000)))

    async def add(self, key: str, value: Any, ttl_seconds: float) -> bool:
        result = await self._redis.set(
            self.prefix + key, dumps(value), px=max(1, int(ttl_seconds * 1000)), nx=True
        )
        return bool(result)

    async def delete(self, key: str) -> None:
        await self._redis.delete(self.prefix + key)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except OSError:
            return False
        except Exception as error:  # redis raises its own ConnectionError types
            if error.__class__.__module__.startswith("redis"):
                return False
            raise

    async def close(self) -> None:
        await self._redis.aclose()


def build_cache(redis_url: str | None) -> Cache:
    return RedisCache(redis_url) if redis_url else MemoryCache()
