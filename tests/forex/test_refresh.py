"""The scheduled refresh: the job puts the provider's rates in the shared cache (memory or
Redis), readers use the cache, the job runs on one worker at a time, and a provider that
stops answering leaves the last rates until they are too old to price on."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from paymesh.forex.errors import RatesStale, RatesUnavailable
from paymesh.forex.providers import StaticRates
from paymesh.forex.rates import RateBook
from paymesh.kernel.cache import Cache, MemoryCache, RedisCache
from paymesh.kernel.jobs import Scheduler
from paymesh.platform import Platform
from tests.conftest import IN_CI, http_client
from tests.forex.factories import rate_book

REDIS_URL = os.environ.get("PAYMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        yield MemoryCache()
        return
    shared = RedisCache(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:")
    if not await shared.ping():
        await shared.close()
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is required in CI")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    yield shared
    await shared.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class TestRateBook:
    async def test_readers_use_what_the_refresh_stored(self, cache: Cache) -> None:
        clock = Clock()
        provider = StaticRates({"USD": "1.10"})
        writer = RateBook(provider, cache, max_age_seconds=60, clock=clock)
        # Another process: its own provider (never asked while the cache holds rates).
        other_provider = StaticRates({"USD": "9.99"})
        reader = RateBook(other_provider, cache, max_age_seconds=60, clock=clock)

        await writer.refresh()
        provider.per_eur["USD"] = Decimal("1.20")
        before = await reader.fresh()
        await writer.refresh()
        after = await reader.fresh()

        assert before.rate_of("USD") == Decimal("1.10")
        assert after.rate_of("USD") == Decimal("1.20")
        assert other_provider.calls == 0

    async def test_a_failing_provider_keeps_the_last_rates_until_they_age(
        self, cache: Cache
    ) -> None:
        clock = Clock()
        provider = StaticRates({"USD": "1.10"})
        book = RateBook(provider, cache, max_age_seconds=60, clock=clock)
        await book.refresh()
        provider.failing = True

        clock.now += 59
        assert (await book.fresh()).rate_of("USD") == Decimal("1.10")
        clock.now += 2
        with pytest.raises(RatesStale):
            await book.fresh()
        assert (await book.latest()).rate_of("USD") == Decimal("1.10")  # still published

    async def test_nothing_held_and_no_provider_is_unavailable(self, cache: Cache) -> None:
        provider = StaticRates({"USD": "1.10"})
        provider.failing = True
        book = RateBook(provider, cache, max_age_seconds=60)

        with pytest.raises(RatesUnavailable):
            await book.fresh()


class TestRefreshJob:
    async def test_the_scheduler_runs_it_on_one_worker_at_a_time(
        self, make_platform: Callable[..., Any], settings: Any
    ) -> None:
        from tests.forex.conftest import with_forex

        tuned = with_forex(settings, provider="static", static_rates={"USD": "1.10"})
        platform: Platform = await make_platform(
            ["forex"], run_workers=False, settings_override=tuned
        )
        runtime = platform.runtimes["forex"]
        provider = rate_book(platform).provider
        assert isinstance(provider, StaticRates)
        provider.per_eur["USD"] = Decimal("1.25")
        jobs = [runtime.scheduler.jobs["refresh_rates"]]
        first = Scheduler(runtime.database, runtime.tables, jobs, worker="first")
        second = Scheduler(runtime.database, runtime.tables, jobs, worker="second")
        await first._register()

        ran = [await first.run_due(), await second.run_due()]

        assert ran == [["refresh_rates"], []]  # due once; the second worker waits its turn
        async with http_client(platform) as http:
            body = (await http.get("/v1/forex/rates/EURUSD")).json()
        assert (body["rate"], body["source"]) == ("1.25", "static")
