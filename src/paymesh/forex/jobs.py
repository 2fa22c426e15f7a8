"""Forex background work: refreshing the rates into the shared cache.

The kernel's scheduler runs it on one worker at a time (a lease row per job), however many
processes serve forex; every process reads the result from the cache (memory in the
embedded shape, Redis in the distributed one)."""

from __future__ import annotations

from paymesh.forex.rates import RateBook
from paymesh.kernel.jobs import PeriodicJob
from paymesh.kernel.runtime import ServiceRuntime


def periodic_jobs(runtime: ServiceRuntime) -> list[PeriodicJob]:
    rates: RateBook = runtime.state["rates"]

    async def refresh_rates() -> str:
        # A failure raises: the scheduler logs it and records it on the lease row, and the
        # last rates stay held until they are too old to price on (`rates_stale`).
        table = await rates.refresh()
        return table.day.isoformat()

    return [
        PeriodicJob(
            "refresh_rates",
            runtime.settings.forex.refresh_interval_seconds,
            refresh_rates,
            timeout_seconds=60.0,
        )
    ]
